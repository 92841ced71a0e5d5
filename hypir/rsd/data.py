"""Data for RSD: clean images (scikit-learn's bundled 8x8 digits upsampled, or a folder of images),
the :class:`Observations` a phase-I trainer gets instead of them, and the MRI task's synthetic coil
maps and complex images. The corruptions themselves are the task objects of :mod:`hypir.rsd.tasks`
(blur, inpainting, super-resolution, multi-coil MRI; :func:`hypir.rsd.tasks.corrupt`).

Images are in ``[-1, 1]``, ``[N, C, S, S]``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

HELDOUT_DIGITS = 297  # of scikit-learn's 1797: the last ones after a fixed shuffle


def digits(size: int = 32, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled handwritten digits (1797 grey 8x8 images, no download) upsampled
    bilinearly to ``size``, in [-1, 1]: ``(images [N, 1, size, size], labels [N])``. ``split``:
    ``train`` (1500), ``heldout`` (297) or ``all``, from one fixed shuffle."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("source: 'digits' needs scikit-learn installed (pip install scikit-learn)") from None
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"split: expected 'train', 'heldout' or 'all', got {split!r}")
    d = load_digits()
    x = torch.from_numpy(d.images).float()[:, None] / 16.0
    labels = torch.from_numpy(d.target).long()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, labels = x[order], labels[order]
    if split == "train":
        x, labels = x[:-HELDOUT_DIGITS], labels[:-HELDOUT_DIGITS]
    elif split == "heldout":
        x, labels = x[-HELDOUT_DIGITS:], labels[-HELDOUT_DIGITS:]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) if size != 8 else x
    return (x.clamp(0, 1) * 2 - 1).contiguous(), labels


def folder_images(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Every image of a folder, centre-cropped square and area-resized to ``size``: ``[N, 3, S, S]`` in [-1, 1]."""
    from ..data.io import list_inputs, read_image

    files = list_inputs([Path(path)])
    if not files:
        raise ValueError(f"source: no images in {str(path)!r}")
    out = []
    for f in files:
        img, _ = read_image(f)
        _, h, w = img.shape
        side = min(h, w)
        img = img[:, (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        out.append(F.interpolate(img[None], size=(size, size), mode="area")[0])
    return torch.stack(out) * 2 - 1


@dataclass
class Observations:
    """What a phase-I trainer sees: corrupted images ``y [N, C, S, S]`` and, for inpainting, the
    masks ``[N, 1, S, S]`` (None otherwise); for MRI the k-space ``y [N, Nc, S, S]`` (complex),
    column masks ``[N, S]`` and the coil maps ``[Nc, S, S]``. The clean images are not kept."""

    y: torch.Tensor
    mask: torch.Tensor | None
    task: str
    sigma_n: float
    maps: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.y.shape[0]


def coil_maps(coils: int, size: int) -> torch.Tensor:
    """Smooth synthetic coil sensitivities ``[coils, size, size]`` (complex64): Gaussian bumps centred
    on a circle around the image, each with its own linear phase ramp, normalised so that
    ``sum_c |S_c|^2 = 1`` everywhere (``A^H A`` is then a masked projection per coil sum)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    maps = []
    for c in range(coils):
        angle = 2 * torch.pi * c / coils
        cy, cx = 1.2 * torch.sin(torch.tensor(angle)), 1.2 * torch.cos(torch.tensor(angle))
        mag = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 1.5)
        phase = torch.pi / 4 * (torch.cos(torch.tensor(angle)) * yy + torch.sin(torch.tensor(angle)) * xx)
        maps.append(torch.polar(mag, phase))
    maps = torch.stack(maps)
    return (maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()).to(torch.complex64)


def complex_images(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Grey images ``[N, 1, S, S]`` in [-1, 1] -> complex ``[N, S, S]``: magnitude ``(x + 1) / 2``
    and a smooth random phase (a random plane plus a quadratic bowl, up to about +-pi/2)."""
    n, _, size, _ = x.shape
    g = torch.Generator().manual_seed(seed)
    coef = (torch.rand(n, 4, generator=g) * 2 - 1) * torch.tensor([0.6, 0.6, 0.4, 0.4])
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    phase = (coef[:, 0, None, None] * yy + coef[:, 1, None, None] * xx + coef[:, 2, None, None] * yy * yy
             + coef[:, 3, None, None] * xx * xx) * torch.pi / 2
    return torch.polar((x[:, 0] + 1) / 2, phase)
