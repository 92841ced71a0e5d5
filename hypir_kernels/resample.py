"""Down-sampling by an integer factor and its exact adjoint (the ×f super-resolution operator).

``downsample(x, f, mode)`` is separable: ``y = R_H x R_W^T`` with one resampling matrix per axis.

* ``"area"``: the mean of each ``f x f`` block (``F.avg_pool2d(x, f)``, ``interpolate(mode="area")``).
* ``"bicubic"``: antialiased bicubic, the weights of ``F.interpolate(x, scale_factor=1/f,
  mode="bicubic", antialias=True)`` (Keys cubic with ``a = -0.5`` stretched by ``f``, truncated
  at the borders and renormalised per output pixel), so it agrees with torch and PIL resizing.

The adjoint is ``R_H^T y R_W`` (for area: each value spread over its block divided by ``f^2``),
and autograd through :func:`downsample` is that adjoint. Matrices are built once per (size,
factor, mode, dtype, device) and cached.
"""
from __future__ import annotations

import functools

import torch

from ._checks import check_int, check_tensor

MODES = ("area", "bicubic")
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _cubic(t: float, a: float = -0.5) -> float:
    t = abs(t)
    if t < 1:
        return ((a + 2) * t - (a + 3)) * t * t + 1
    if t < 2:
        return (((t - 5) * t + 8) * t - 4) * a
    return 0.0


@functools.lru_cache(maxsize=64)
def _matrix_cpu(n: int, factor: int, mode: str) -> torch.Tensor:
    """``[n // factor, n]`` float64 resampling matrix of one axis."""
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


def resample_matrix(n: int, factor: int, mode: str, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """The ``[n // factor, n]`` matrix of one axis (rows sum to 1)."""
    return _matrix_cpu(n, factor, mode).to(dtype=dtype, device=device)


def _check(x: torch.Tensor, factor: int, mode: str, name: str) -> None:
    check_tensor(name, x, dims=4, dtypes=_DTYPES)
    check_int("factor", factor, minimum=1)
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")


def _acc(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def downsample(x: torch.Tensor, factor: int, mode: str = "area") -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, C, H / factor, W / factor]`` (H and W multiples of ``factor``);
    fp32 accumulation for 16-bit inputs."""
    _check(x, factor, mode, "x")
    H, W = x.shape[-2:]
    if H % factor or W % factor:
        raise ValueError(f"x: height and width must be multiples of factor={factor}, got {H}x{W}")
    if factor == 1:
        return x.clone()
    acc = _acc(x)
    if mode == "area":
        return torch.nn.functional.avg_pool2d(x.to(acc), factor).to(x.dtype)
    rh = resample_matrix(H, factor, mode, acc, x.device)
    rw = resample_matrix(W, factor, mode, acc, x.device)
    return (rh @ x.to(acc) @ rw.t()).to(x.dtype)


def downsample_adjoint(y: torch.Tensor, factor: int, mode: str = "area") -> torch.Tensor:
    """The exact adjoint of :func:`downsample`: ``[B, C, h, w]`` -> ``[B, C, h * factor, w * factor]``."""
    _check(y, factor, mode, "y")
    if factor == 1:
        return y.clone()
    h, w = y.shape[-2:]
    acc = _acc(y)
    if mode == "area":
        spread = y.to(acc).repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
        return (spread / (factor * factor)).to(y.dtype)
    rh = resample_matrix(h * factor, factor, mode, acc, y.device)
    rw = resample_matrix(w * factor, factor, mode, acc, y.device)
    return (rh.t() @ y.to(acc) @ rw).to(y.dtype)


__all__ = ["MODES", "downsample", "downsample_adjoint", "resample_matrix"]
