"""GroupNorm + SiLU benchmark cases, shared by ``python -m hypir_kernels.bench`` and ``benchmarks/``.

The SD2 VAE decoder's four levels for a 512 px tile (32 groups; the restorer runs them
channels-last), fp32 and bf16, forward; and the SD2 UNet's first level at 512 px (320 channels,
64x64, batch 2) forward + backward. Anchor: ``F.silu(F.group_norm(...))``, the pair diffusers runs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import group_norm_silu

GROUPS, EPS = 32, 1e-6
VAE_LEVELS = ((512, 64), (512, 128), (256, 256), (128, 512))  # (channels, side) of a 512 px decode
TRAIN_SHAPE = (2, 320, 64, 64)


def make_case(channels: int, side: int, dtype: torch.dtype, batch: int = 1, seed: int = 0):
    """x (channels-last), weight, bias."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, side, side, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    return x, torch.randn(channels, generator=g).to(dtype), torch.randn(channels, generator=g).to(dtype)


def ours(x, w, b):
    return group_norm_silu(x, GROUPS, w, b, EPS)


def torch_pair(x, w, b):
    return F.silu(F.group_norm(x, GROUPS, w, b, EPS))


def train_step(fn, x, w, b, grad):
    """Forward + backward through ``fn`` (inputs require grad)."""
    y = fn(x, w, b)
    return torch.autograd.grad(y, (x, w, b), grad)


def make_train_case(seed: int = 0):
    x, w, b = make_case(TRAIN_SHAPE[1], TRAIN_SHAPE[2], torch.float32, batch=TRAIN_SHAPE[0], seed=seed)
    grad = torch.randn(TRAIN_SHAPE, generator=torch.Generator().manual_seed(seed + 1)).contiguous(
        memory_format=torch.channels_last)
    return x.requires_grad_(True), w.requires_grad_(True), b.requires_grad_(True), grad
