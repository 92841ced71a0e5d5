"""Down-sampling by an integer factor and its exact adjoint (the ×f super-resolution operator).

``downsample(x, f, mode)`` is separable: ``y = R_H x R_W^T`` with one resampling matrix per axis.

* ``"area"``: the mean of each ``f x f`` block (``F.avg_pool2d(x, f)``, ``interpolate(mode="area")``).
* ``"bicubic"``: antialiased bicubic, the weights of ``F.interpolate(x, scale_factor=1/f,
  mode="bicubic", antialias=True)`` (Keys cubic with ``a = -0.5`` stretched by ``f``, truncated
  at the borders and renormalised per output pixel), so it agrees with torch and PIL resizing.

The adjoint is ``R_H^T y R_W`` (for area: each value spread over its block divided by ``f^2``),
and autograd through :func:`downsample` is that adjoint (twice differentiable).

Cost and locality: both modes are banded, never dense. Area is ``avg_pool2d``; bicubic runs
torch's own antialiased kernels (``aten._upsample_bicubic2d_aa`` and its backward, which *is*
the adjoint), so the cost is linear in pixels and each output reads only its ``4f`` x ``4f``
window: a NaN or Inf in the input reaches only the outputs whose window holds it (area: its
block). :func:`resample_matrix` builds the dense matrix of one axis for inspection and tests
(``O(n^2 / f)`` memory, not cached); only the ``reference`` backend
(:mod:`hypir_kernels.reference.resample`, ops ``downsample`` / ``downsample_adjoint`` in the
registry) multiplies by it.
"""
from __future__ import annotations

import math

import torch

from . import backend
from .checks import check_int, check_tensor
from .reference import resample as ref

MODES = ("area", "bicubic")
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def resample_matrix(n: int, factor: int, mode: str, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """The dense ``[n // factor, n]`` matrix of one axis (rows sum to 1); for inspection only."""
    check_int("n", n, minimum=0)
    check_int("factor", factor, minimum=1)
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    return ref.resample_matrix(n, factor, mode).to(dtype=dtype, device=device)


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
    if x.numel() == 0:  # torch's resampling kernels reject empty planes
        return x.new_zeros(*x.shape[:-2], H // factor, W // factor)
    return backend.dispatch("downsample", x.device)(x, factor, mode)


def _downsample_banded(x: torch.Tensor, factor: int, mode: str) -> torch.Tensor:
    acc = _acc(x)
    if mode == "area":
        return torch.nn.functional.avg_pool2d(x.to(acc), factor).to(x.dtype)
    size = [x.shape[-2] // factor, x.shape[-1] // factor]
    return torch.ops.aten._upsample_bicubic2d_aa(x.to(acc), size, False, None, None).to(x.dtype)


def downsample_adjoint(y: torch.Tensor, factor: int, mode: str = "area") -> torch.Tensor:
    """The exact adjoint of :func:`downsample`: ``[B, C, h, w]`` -> ``[B, C, h * factor, w * factor]``."""
    _check(y, factor, mode, "y")
    if factor == 1:
        return y.clone()
    h, w = y.shape[-2:]
    if math.prod(max(n, 1) for n in y.shape) * factor * factor >= 1 << 62:  # sizes and strides must fit int64
        raise ValueError(f"factor: {factor} makes the output of a {tuple(y.shape)} y too large to store")
    if y.numel() == 0:
        return y.new_zeros(*y.shape[:-2], h * factor, w * factor)
    return backend.dispatch("downsample_adjoint", y.device)(y, factor, mode)


def _downsample_adjoint_banded(y: torch.Tensor, factor: int, mode: str) -> torch.Tensor:
    acc = _acc(y)
    if mode == "area":
        spread = y.to(acc).repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
        return (spread / (factor * factor)).to(y.dtype)
    h, w = y.shape[-2:]
    full = [*y.shape[:-2], h * factor, w * factor]
    # The backward of the antialiased forward applies the same weights transposed: the exact adjoint.
    return torch.ops.aten._upsample_bicubic2d_aa_backward(y.to(acc), [h, w], full, False, None, None).to(y.dtype)


# Torch's banded kernels on every device (no C++ kernel of ours, so no extension needed); the
# reference multiplies by the dense matrices.
backend.register("downsample", cpu=_downsample_banded, cuda=_downsample_banded, reference=ref.downsample)
backend.register("downsample_adjoint", cpu=_downsample_adjoint_banded, cuda=_downsample_adjoint_banded,
                 reference=ref.downsample_adjoint)


__all__ = ["MODES", "downsample", "downsample_adjoint", "resample_matrix"]
