"""Pure-torch reference of the seeded Gaussian noise (``csrc/include/hypir_kernels/noise.h``):
the same Philox words and Box-Muller transform in float32; agrees with the C++ and CUDA code to a
few float32 ulps (their ``logf``/``cosf``/``sinf`` round differently), not bit for bit."""
from __future__ import annotations

import math

import torch

from .masks import philox4x32_10

_U32 = 0xFFFFFFFF


def normals(seed: int, offsets: torch.Tensor, n: int) -> torch.Tensor:
    """Standard normal draws ``[B, n]`` float32 for elements ``0..n-1`` of each sample."""
    groups = torch.arange((n + 3) // 4, dtype=torch.int64, device=offsets.device)
    c0 = (groups & _U32)[None, :].expand(offsets.shape[0], -1)
    c1 = ((groups >> 32) | 0x80000000)[None, :].expand_as(c0)
    c2 = (offsets & _U32)[:, None].expand_as(c0)
    c3 = ((offsets >> 32) & _U32)[:, None].expand_as(c0)
    r = philox4x32_10(c0, c1, c2, c3, seed & _U32, (seed >> 32) & _U32)
    out = []
    for p in range(2):
        u1 = ((r[2 * p] >> 8).to(torch.float32) + 1.0) * 2.0**-24
        u2 = (r[2 * p + 1] >> 8).to(torch.float32) * 2.0**-24
        radius = torch.sqrt(-2.0 * torch.log(u1))
        angle = torch.tensor(2 * math.pi, dtype=torch.float32) * u2
        out += [radius * torch.cos(angle), radius * torch.sin(angle)]
    return torch.stack(out, dim=-1).reshape(offsets.shape[0], 4 * groups.shape[0])[:, :n]  # explicit: B may be 0


def add_noise(x: torch.Tensor, seed: int, offsets: list[int], sigma: torch.Tensor) -> torch.Tensor:
    B = x.shape[0]
    n = x.numel() // B if B else 0
    z = normals(seed, torch.tensor(offsets, dtype=torch.int64, device=x.device), n).reshape(x.shape)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    s = sigma.to(acc).reshape((B,) + (1,) * (x.dim() - 1))
    return (x.to(acc) + s * z.to(acc)).to(x.dtype)
