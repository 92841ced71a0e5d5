"""Data for RSD phase I: clean images (scikit-learn's bundled 8x8 digits upsampled, or a folder of
images) turned once into a fixed set of corrupted observations; trainers only ever get the latter.

Tasks (the paper's three natural-image tasks, each optionally with noise ``sigma_n``):

* ``blur`` -- ``y = A x + sigma_n e``, ``A`` a 9x9 Gaussian blur of std 2, reflect padding;
* ``inpainting`` -- ``y = M (x + sigma_n e)``, ``M`` a per-image Bernoulli(``keep``) pixel mask
  (the paper: 90 % missing, ``keep = 0.1``), shared across channels, kept with the data;
* ``sr`` -- ``y = f^2 D^T D x + sigma_n e``: x``f`` area down-sampling back-projected to full
  size (a blocky image of the same size, which the network models);
* ``mri`` -- multi-coil k-space ``y = M F(S x)`` of complex images (the grey image as magnitude
  with a smooth random phase), synthetic smooth coil maps ``S`` and per-image column masks ``M``
  (ACS block + random lines, acceleration R); only the acquired columns are non-zero.

Images are in ``[-1, 1]``, ``[N, C, S, S]``; every draw is Philox-seeded by ``(seed, image index)``
through the ``hypir_kernels`` operators, so a dataset is the same on every machine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from hypir_kernels import bernoulli_mask, mri_column_mask
from hypir_kernels.checks import check_seed
from hypir_kernels.operators import Blur, Downsample, MultiCoilMRI, Noise

TASKS = ("blur", "inpainting", "sr", "mri")
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


def corrupt_mri(x: torch.Tensor, acceleration: int = 4, seed: int = 0, coils: int = 4,
                center_fraction: float = 0.08) -> Observations:
    """The ``mri`` task's observations of grey images ``x [N, 1, S, S]`` (see the module doc)."""
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x: the mri task needs square grey images [N, 1, S, S], got {tuple(x.shape)}")
    n, size = x.shape[0], x.shape[-1]
    maps = coil_maps(coils, size)
    mask = mri_column_mask(n, size, acceleration, seed, center_fraction=center_fraction, offsets=list(range(n)))
    with torch.no_grad():
        y = MultiCoilMRI(maps.expand(n, -1, -1, -1), mask).A(complex_images(x, seed + 1))
    return Observations(y.contiguous(), mask, "mri", 0.0, maps)


def corrupt(x: torch.Tensor, task: str, sigma_n: float = 0.0, seed: int = 0, keep: float = 0.1,
            blur_sigma: float = 2.0, blur_size: int = 9, sr_factor: int = 2, acceleration: int = 4, coils: int = 4,
            center_fraction: float = 0.08) -> Observations:
    """The fixed corrupted dataset of clean ``x [N, C, S, S]`` (see the module doc)."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    if not (isinstance(sigma_n, (int, float)) and not isinstance(sigma_n, bool) and 0 <= sigma_n < float("inf")):
        raise ValueError(f"sigma_n: expected a finite number >= 0, got {sigma_n!r}")
    if not (torch.is_tensor(x) and x.dim() == 4 and x.is_floating_point() and x.numel() > 0):
        raise ValueError(f"x: expected a non-empty float [N, C, H, W] tensor, got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    check_seed("seed", seed)
    if task == "mri":
        if sigma_n:
            raise ValueError("sigma_n: the mri task is noiseless here (k-space noise is not implemented)")
        return corrupt_mri(x, acceleration, seed, coils, center_fraction)
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
