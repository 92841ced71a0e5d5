"""Gaussian blur benchmark cases, shared by ``python -m hypir_kernels.bench`` and ``benchmarks/``.

Images [32, 3, 256, 256] float32, reflect padding, 9x9 sigma 2 (the RSD paper's blur) and
21x21 sigma 3. Anchors: deepinv ``physics.Blur(padding="reflect")`` with the same 2-D filter and
torch ``conv2d`` depthwise after ``F.pad(mode="reflect")``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import gaussian_blur
from ..blur import gaussian_taps

SHAPE = (32, 3, 256, 256)
CASES = ((9, 2.0), (21, 3.0))  # (kernel_size, sigma)


def make_input(seed: int = 0) -> torch.Tensor:
    return torch.rand(SHAPE, generator=torch.Generator().manual_seed(seed))


def filter_2d(kernel_size: int, sigma: float) -> torch.Tensor:
    taps = gaussian_taps(torch.tensor(sigma, dtype=torch.float64), kernel_size).float()
    return taps[:, None] * taps[None, :]


def ours(x: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    return gaussian_blur(x, sigma, kernel_size, "reflect")


def conv2d_depthwise(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Anchor: reflect pad + depthwise conv2d; ``weight`` [C, 1, k, k]."""
    r = weight.shape[-1] // 2
    return F.conv2d(F.pad(x, (r, r, r, r), mode="reflect"), weight, groups=x.shape[1])


def deepinv_blur(kernel_size: int, sigma: float):
    """Anchor: deepinv's Blur operator (its ``A`` is the forward)."""
    import deepinv

    return deepinv.physics.Blur(filter=filter_2d(kernel_size, sigma)[None, None], padding="reflect")
