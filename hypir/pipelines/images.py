"""The restorer's image in and out: a PIL image or a float tensor to ``[1, 3, H, W]`` float32 in
``[0, 1]`` and back, and the 8-bit quantisation (nearest, or the released HYPIR's floor)."""
from __future__ import annotations

import torch


def to_tensor(image) -> tuple[torch.Tensor, str]:
    """``(image [1, 3, H, W] float32, kind)``; kind ("pil", "chw", "bchw") says how to give it back."""
    if isinstance(image, torch.Tensor):
        if image.dim() == 3:
            image, kind = image[None], "chw"
        elif image.dim() == 4 and image.shape[0] == 1:
            kind = "bchw"
        else:
            raise ValueError(f"image: expected a tensor [3, H, W] or [1, 3, H, W], got {tuple(image.shape)}")
        if image.shape[1] != 3 or not image.is_floating_point():
            raise ValueError(f"image: expected 3 float channels in [0, 1], got {tuple(image.shape)} {image.dtype}")
        if image.shape[-2] == 0 or image.shape[-1] == 0:
            raise ValueError(f"image: empty image {tuple(image.shape)}")
        return image.float(), kind
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        import numpy as np

        arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous(), "pil"
    raise ValueError(f"image: expected a PIL image or a float tensor, got {type(image).__name__}")


def to_uint8(x: torch.Tensor, quantize: str = "round") -> torch.Tensor:
    """``x`` in [0, 1] -> uint8 by ``"round"`` (nearest) or ``"floor"`` (the released HYPIR's
    ``(x * 255).clamp(0, 255).to(torch.uint8)``)."""
    if quantize not in ("round", "floor"):
        raise ValueError(f"quantize: expected 'round' or 'floor', got {quantize!r}")
    y = x * 255.0
    return (y.round() if quantize == "round" else y).clamp(0, 255).to(torch.uint8)


def from_tensor(out: torch.Tensor, kind: str, image, quantize: str = "round"):
    """``out [1, 3, H, W]`` in [0, 1] back in the form of ``image`` (:func:`to_tensor`'s ``kind``)."""
    if kind == "pil":
        from PIL import Image

        arr = to_uint8(out[0].permute(1, 2, 0).cpu(), quantize).numpy()
        return Image.fromarray(arr, "RGB")
    out = out.to(image.device)
    return out[0] if kind == "chw" else out
