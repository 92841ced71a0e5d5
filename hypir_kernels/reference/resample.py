"""Reference down-sampling: ``y = R_H x R_W^T`` with the dense resampling matrix of each axis
(the weights torch uses: block means for ``area``; for ``bicubic`` Keys' cubic with ``a = -0.5``
stretched by the factor, truncated at the borders and renormalised per output pixel, as
``F.interpolate(..., antialias=True)``), and the adjoint ``R_H^T y R_W``. Dense: ``O(n^2 / f)``
memory per axis, for tests and inspection."""
from __future__ import annotations

import torch


def _cubic(t: float, a: float = -0.5) -> float:
    t = abs(t)
    if t < 1:
        return ((a + 2) * t - (a + 3)) * t * t + 1
    if t < 2:
        return (((t - 5) * t + 8) * t - 4) * a
    return 0.0


def resample_matrix(n: int, factor: int, mode: str) -> torch.Tensor:
    """``[n // factor, n]`` float64 resampling matrix of one axis (rows sum to 1)."""
    m = n // factor
    r = torch.zeros(m, n, dtype=torch.float64)
    if mode == "area":
        for i in range(m):
            r[i, i * factor:(i + 1) * factor] = 1.0 / factor
        return r
    support = 2.0 * factor  # bicubic support 2, stretched by the factor (antialiasing)
    for i in range(m):
        center = (i + 0.5) * factor
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n)
        w = [_cubic((j + lo - center + 0.5) / factor) for j in range(hi - lo)]
        total = sum(w)
        r[i, lo:hi] = torch.tensor(w, dtype=torch.float64) / total
    return r


def _acc(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def downsample(x: torch.Tensor, factor: int, mode: str) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, C, H / factor, W / factor]``, accumulated in fp32 (fp64 for fp64)."""
    acc = _acc(x)
    rh = resample_matrix(x.shape[-2], factor, mode).to(acc).to(x.device)
    rw = resample_matrix(x.shape[-1], factor, mode).to(acc).to(x.device)
    return (rh @ x.to(acc) @ rw.t()).to(x.dtype)


def downsample_adjoint(y: torch.Tensor, factor: int, mode: str) -> torch.Tensor:
    """``[B, C, h, w]`` -> ``[B, C, h * factor, w * factor]``: ``R_H^T y R_W``."""
    acc = _acc(y)
    rh = resample_matrix(y.shape[-2] * factor, factor, mode).to(acc).to(y.device)
    rw = resample_matrix(y.shape[-1] * factor, factor, mode).to(acc).to(y.device)
    return (rh.t() @ y.to(acc) @ rw).to(y.dtype)
