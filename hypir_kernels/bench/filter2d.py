"""Per-sample filter2d cases, shared by ``python -m hypir_kernels.bench`` and ``benchmarks/``:
[32, 3, 256, 256] float32, reflect, per-sample random 7x7, 21x21 and 41x41 kernels, against the
grouped-conv2d formulation of BasicSR's ``filter2D``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import filter2d, filter2d_adjoint

SHAPE = (32, 3, 256, 256)
SIZES = (7, 21, 41)


def make_case(k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(SHAPE, generator=g)
    kernels = torch.rand(SHAPE[0], k, k, generator=g)
    return x, kernels / kernels.sum((1, 2), keepdim=True)


def ours(x, kernels):
    return filter2d(x, kernels, "reflect")


def ours_adjoint(y, kernels):
    return filter2d_adjoint(y, kernels, "reflect")


def basicsr_filter2d(x, kernels):
    """Anchor: reflect pad + one grouped conv2d over all (sample, channel) planes."""
    B, C, H, W = x.shape
    k = kernels.shape[-1]
    r = k // 2
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    weight = kernels[:, None].expand(B, C, k, k).reshape(B * C, 1, k, k)
    return F.conv2d(xp.reshape(1, B * C, H + 2 * r, W + 2 * r), weight, groups=B * C).reshape(B, C, H, W)


def basicsr_filter2d_adjoint(y, kernels):
    """Anchor for the adjoint (the backward in x): autograd's vector-Jacobian product of the
    BasicSR formulation."""
    x = torch.zeros_like(y, requires_grad=True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(basicsr_filter2d(x, kernels), x, y)
    return grad
