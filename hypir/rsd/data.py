"""Data for RSD phase I: clean images (scikit-learn's bundled 8x8 digits upsampled, or a folder of
images) turned once into a fixed set of corrupted observations; trainers only ever get the latter.

Tasks (the paper's three natural-image tasks, each optionally with noise ``sigma_n``):

* ``blur`` -- ``y = A x + sigma_n e``, ``A`` a 9x9 Gaussian blur of std 2, reflect padding;
* ``inpainting`` -- ``y = M (x + sigma_n e)``, ``M`` a per-image Bernoulli(``keep``) pixel mask
  (the paper: 90 % missing, ``keep = 0.1``), shared across channels, kept with the data;
* ``sr`` -- ``y = f^2 D^T D x + sigma_n e``: x``f`` area down-sampling back-projected to full
  size (a blocky image of the same size, which the network models).

Images are in ``[-1, 1]``, ``[N, C, S, S]``; every draw is Philox-seeded by ``(seed, image index)``
through the ``hypir_kernels`` operators, so a dataset is the same on every machine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from hypir_kernels import bernoulli_mask
from hypir_kernels.operators import Blur, Downsample, Noise

TASKS = ("blur", "inpainting", "sr")
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
    masks ``[N, 1, S, S]`` (None otherwise). The clean images are not kept."""

    y: torch.Tensor
    mask: torch.Tensor | None
    task: str
    sigma_n: float

    def __len__(self) -> int:
        return self.y.shape[0]


def corrupt(x: torch.Tensor, task: str, sigma_n: float = 0.0, seed: int = 0, keep: float = 0.1,
            blur_sigma: float = 2.0, blur_size: int = 9, sr_factor: int = 2) -> Observations:
    """The fixed corrupted dataset of clean ``x [N, C, S, S]`` (see the module doc)."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    if not (isinstance(sigma_n, (int, float)) and sigma_n >= 0):
        raise ValueError(f"sigma_n: expected a number >= 0, got {sigma_n!r}")
    n = x.shape[0]
    offsets = list(range(n))  # per-image Philox streams: image i's draws do not depend on N
    noise = Noise(float(sigma_n), seed=seed + 1, offsets=offsets)
    mask = None
    with torch.no_grad():
        if task == "blur":
            y = Blur(blur_sigma, kernel_size=blur_size).A(x)
        elif task == "sr":
            if x.shape[-1] % sr_factor or x.shape[-2] % sr_factor:
                raise ValueError(f"sr_factor: image size {tuple(x.shape[-2:])} is not a multiple of {sr_factor}")
            down = Downsample(sr_factor)
            y = down.A_adjoint(down.A(x)) * sr_factor**2
        else:
            mask = bernoulli_mask((n, 1, *x.shape[-2:]), keep, seed, offsets=offsets)
            y = x
        if sigma_n > 0:
            y = noise.forward(y)
        if mask is not None:
            y = y * mask
    return Observations(y.contiguous(), mask, task, float(sigma_n))
