"""Pure-torch reference of GroupNorm with an optional fused SiLU (``csrc/cpu/group_norm.cpp``,
``hypir_kernels/triton/group_norm.py``): statistics and arithmetic in float32 (float64 for float64
input), the output rounded once to the input dtype, same memory format as the input."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _statistics(x: torch.Tensor, groups: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """mean, rstd ``[N, G]`` in the accumulation dtype (biased variance, as GroupNorm)."""
    xg = x.to(_acc(x.dtype)).reshape(x.shape[0], groups, -1)
    var, mean = torch.var_mean(xg, dim=2, unbiased=False)
    return mean, torch.rsqrt(var + eps)


def _normalise(x, weight, bias, groups, mean, rstd, silu):
    acc = _acc(x.dtype)
    shape = (x.shape[0], groups, -1)
    z = ((x.to(acc).reshape(shape) - mean[..., None]) * rstd[..., None]).reshape(x.shape)
    affine = (1, -1) + (1,) * (x.dim() - 2)
    if weight is not None:
        z = z * weight.to(acc).reshape(affine)
    if bias is not None:
        z = z + bias.to(acc).reshape(affine)
    return F.silu(z) if silu else z


def channels_last_order(dims: int) -> tuple[int, ...]:
    """The dim order that puts the channels last: ``(0, 2, ..., dims - 1, 1)``."""
    return (0,) + tuple(range(2, dims)) + (1,)


def is_channels_last(x: torch.Tensor) -> bool:
    """x is ``[N, *spatial, C]`` in memory (and not also plain contiguous), for any dims >= 3."""
    return x.dim() >= 3 and not x.is_contiguous() and x.permute(channels_last_order(x.dim())).is_contiguous()


def _like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t`` in x's dtype, channels-last if x is, else contiguous."""
    t = t.to(x.dtype)
    if not is_channels_last(x):
        return t.contiguous()
    order = channels_last_order(x.dim())
    return t.permute(order).contiguous().permute([order.index(d) for d in range(x.dim())])


def group_norm_silu(x, weight, bias, groups: int, eps: float, silu: bool):
    """``(y, mean [N, G], rstd [N, G])``; statistics float32 (float64 for float64 x)."""
    mean, rstd = _statistics(x, groups, eps)
    return _like(_normalise(x, weight, bias, groups, mean, rstd, silu), x), mean, rstd


def group_norm_silu_backward(grad, x, weight, bias, mean, rstd, groups: int, eps: float, silu: bool):
    """``(dx, dweight, dbias)`` (the last two empty for a None weight/bias), the textbook GroupNorm
    gradient in the accumulation dtype with the statistics recomputed from x and ``eps`` (the
    saved ``mean``/``rstd`` the kernels use are not read). Tested against autograd through
    ``F.group_norm`` + ``F.silu``."""
    acc = _acc(x.dtype)
    N, C = x.shape[:2]
    m, r = _statistics(x, groups, eps)
    xg = x.to(acc).reshape(N, groups, -1)
    xhat = ((xg - m[..., None]) * r[..., None]).reshape(N, C, -1)
    w = torch.ones(C, dtype=acc, device=x.device) if weight is None else weight.to(acc)
    b = torch.zeros(C, dtype=acc, device=x.device) if bias is None else bias.to(acc)
    dz = grad.to(acc).reshape(N, C, -1)
    if silu:
        s = torch.sigmoid(xhat * w[:, None] + b[:, None])
        dz = dz * s * (1 + (xhat * w[:, None] + b[:, None]) * (1 - s))
    dxhat = (dz * w[:, None]).reshape(N, groups, -1)
    xhat_g = xhat.reshape(N, groups, -1)
    dx = r[..., None] * (dxhat - dxhat.mean(2, keepdim=True) - xhat_g * (dxhat * xhat_g).mean(2, keepdim=True))
    dw = (dz * xhat).sum((0, 2)).to(weight.dtype) if weight is not None else x.new_empty((0,))
    db = dz.sum((0, 2)).to(bias.dtype) if bias is not None else x.new_empty((0,))
    return _like(dx.reshape(x.shape), x), dw, db
