"""Image files in and out of the restorer.

:func:`read_image` turns any common file into the RGB tensor the model takes plus what is needed
to write the result back in kind: EXIF orientation applied; grayscale (8 or 16 bit) restored as
RGB and written back as grayscale; an alpha channel kept aside, resized (not restored) and
re-attached; 16-bit inputs read at full precision and written as 16-bit PNGs where PNG can hold
them (grayscale); palette images expanded.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..files import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
_LUMA = (0.299, 0.587, 0.114)


@dataclass
class ImageMeta:
    """How an input looked: ``grey`` (write back as grayscale), ``alpha`` ``[1, H, W]`` in
    [0, 1] or None, ``bits`` 8 or 16."""

    grey: bool = False
    alpha: torch.Tensor | None = None
    bits: int = 8


def read_image(path: str | os.PathLike) -> tuple[torch.Tensor, ImageMeta]:
    """``(rgb [3, H, W] float32 in [0, 1], meta)``; raises ``ValueError`` for unreadable files."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the image ({e})") from None
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if mode != "I" or arr.max() > 255 else 255.0
        grey = torch.from_numpy((arr / peak).clip(0, 1).astype(np.float32))
        return grey[None].expand(3, -1, -1).contiguous(), ImageMeta(grey=True, bits=16 if peak > 255 else 8)
    if mode == "F":
        grey = torch.from_numpy(np.asarray(im, dtype=np.float32).clip(0, 1))
        return grey[None].expand(3, -1, -1).contiguous(), ImageMeta(grey=True)
    if mode in ("1", "L", "LA"):
        arr = np.asarray(im.convert("LA"), dtype=np.float32) / 255.0
        t = torch.from_numpy(arr).permute(2, 0, 1)
        alpha = t[1:2].clone() if mode == "LA" else None
        return t[:1].expand(3, -1, -1).contiguous(), ImageMeta(grey=True, alpha=alpha)
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "RGB" and "transparency" in im.info)
    arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    t = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    return t[:3].contiguous(), ImageMeta(alpha=t[3:4].clone() if has_alpha else None)


def write_image(path: str | os.PathLike, rgb: torch.Tensor, meta: ImageMeta | None = None,
                quantize: str = "round") -> Path:
    """Write ``rgb [3, H, W]`` in [0, 1] as PNG in the kind ``meta`` describes (grayscale as
    BT.601 luma, alpha resized to the output size, 16-bit grayscale as 16-bit). 8-bit values by
    ``quantize``: "round" (nearest) or "floor" (as the released HYPIR writes them). Atomic."""
    if quantize not in ("round", "floor"):
        raise ValueError(f"quantize: expected 'round' or 'floor', got {quantize!r}")
    from PIL import Image

    if not isinstance(rgb, torch.Tensor) or rgb.dim() != 3 or rgb.shape[0] != 3 or rgb.numel() == 0:
        shape = tuple(rgb.shape) if isinstance(rgb, torch.Tensor) else type(rgb).__name__
        raise ValueError(f"rgb: expected a non-empty [3, H, W] tensor, got {shape}")
    meta = meta or ImageMeta()
    path = Path(path)
    rgb = rgb.detach().float().cpu().clamp(0, 1)
    H, W = rgb.shape[-2:]
    if meta.grey:
        img = sum(w * rgb[i] for i, w in enumerate(_LUMA))[None]
    else:
        img = rgb
    if meta.alpha is not None:
        a = meta.alpha.float()[None]
        if tuple(a.shape[-2:]) != (H, W):
            shrink = H < a.shape[-2] or W < a.shape[-1]
            a = F.interpolate(a, size=(H, W), mode="bicubic", align_corners=False, antialias=shrink)
        img = torch.cat([img, a[0].clamp(0, 1)])
    arr = img.permute(1, 2, 0).numpy()
    if meta.grey and meta.bits == 16 and meta.alpha is None:
        pil = Image.fromarray((arr[:, :, 0] * 65535.0).round().astype(np.uint16))
    else:
        arr8 = ((arr * 255.0).round() if quantize == "round" else np.floor(arr * 255.0)).astype(np.uint8)
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr8.shape[2]]
        pil = Image.fromarray(arr8[:, :, 0] if mode == "L" else arr8, mode)
    with atomic_write(path) as tmp:
        pil.save(tmp, format="PNG")
    return path


def list_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files named and the image files (by suffix, sorted) inside folders named; a name that
    does not exist raises ``FileNotFoundError``."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"input: no such file or folder {str(p)!r}")
    return files


def image_grid(images: torch.Tensor, columns: int | None = None, pad: int = 1) -> torch.Tensor:
    """``images [N, C, H, W]`` in [-1, 1] (C = 1 or 3) -> one ``[3, rows*(H+pad)+pad, ...]`` grid in
    [0, 1] for :func:`write_image`; ``columns`` defaults to ``ceil(sqrt(N))``."""
    if not (isinstance(images, torch.Tensor) and images.dim() == 4 and images.shape[0] > 0 and images.shape[1] in (1, 3)
            and not images.is_complex()):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images: expected a non-empty real [N, 1 or 3, H, W] tensor, got {shape}")
    n, _, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    x = ((images.detach().float().cpu() + 1) / 2).clamp(0, 1).expand(-1, 3, -1, -1)
    grid = torch.ones(3, rows * (h + pad) + pad, columns * (w + pad) + pad)
    for i in range(n):
        r, c = divmod(i, columns)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = x[i]
    return grid
