"""Mask benchmark cases, shared by ``python -m hypir_kernels.bench`` and ``benchmarks/``.

Images [32, 3, 256, 256] float32; random inpainting mask (keep 0.3, one decision per pixel
shared by the channels) and the Ambient-Diffusion further mask (delta 0.2) applied to the batch:
both masked images from one call of ours vs torch ``rand``-compare-multiply for both masks.
"""
from __future__ import annotations

import torch

from .. import apply_mask

SHAPE = (32, 3, 256, 256)
KEEP, DELTA = 0.3, 0.2


def make_input(seed: int = 0) -> torch.Tensor:
    return torch.rand(SHAPE, generator=torch.Generator().manual_seed(seed))


def ours(x: torch.Tensor, seed: int = 1):
    return apply_mask(x, KEEP, seed, further_delta=DELTA)


def torch_rand_compare_multiply(x: torch.Tensor):
    """Anchor: what training loops write today."""
    B, _, H, W = x.shape
    m = torch.rand(B, 1, H, W) < KEEP
    further = m & (torch.rand(B, 1, H, W) < 1 - DELTA)
    return x * m, x * further
