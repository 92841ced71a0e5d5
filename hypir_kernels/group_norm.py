"""GroupNorm with an optional fused SiLU, forward and backward: ``silu(group_norm(x))`` in one op,
the pair every resnet block of a diffusion UNet and its VAE runs twice.

Backends: ``cpu`` (C++ with AVX-512, ``csrc/cpu/group_norm.cpp``: three passes over memory
instead of the unfused pair's five), ``triton`` (``hypir_kernels/triton/group_norm.py``; CUDA
tensors, or CPU tensors under ``TRITON_INTERPRET=1``) and ``reference`` (torch, float32
statistics). Statistics are float32 for every input dtype but float64 (float64 there), and the
output is rounded once to the input dtype. Inputs keep their memory format: NCHW and
channels-last are both read in place; other strides are copied to NCHW first.

The library ops are ``torch.ops.hypir_kernels.group_norm_silu`` (returns the output and the
per-group mean and rstd) and ``torch.ops.hypir_kernels.group_norm_silu_backward``, joined by
autograd; :func:`group_norm_silu` calls them under ``torch.compile`` and runs the same
implementations without them in eager mode (host time).
"""
from __future__ import annotations

import math
import numbers

import torch

from . import backend
from .checks import check_tensor
from .reference import group_norm as ref

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check(x, num_groups, weight, bias, eps) -> None:
    check_tensor("x", x, dtypes=_DTYPES)
    if x.dim() < 2:
        raise ValueError(f"x: expected [N, C, *] (at least 2 dims), got shape {tuple(x.shape)}")
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1 or x.shape[1] % num_groups:
        raise ValueError(f"num_groups: expected a positive divisor of the {x.shape[1]} channels of x, got {num_groups!r}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        check_tensor(name, t, dims=1, dtypes=_DTYPES, device=x.device)
        if t.shape[0] != x.shape[1]:
            raise ValueError(f"{name}: expected [{x.shape[1]}] (one per channel of x), got shape {tuple(t.shape)}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps: expected a finite number >= 0, got {eps!r}")


def group_norm_silu(
    x: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    silu: bool = True,
) -> torch.Tensor:
    """``silu(F.group_norm(x, num_groups, weight, bias, eps))``, or the GroupNorm alone with
    ``silu=False``.

    Args:
        x: ``[N, C, *]`` float32, bfloat16, float16 or float64; NCHW or channels-last.
        num_groups: divides ``C``.
        weight, bias: ``[C]`` or None (1 and 0), any float dtype, on x's device.
        eps: added to the variance.
        silu: apply SiLU to the normalised output.

    Returns:
        ``[N, C, *]`` in x's dtype and memory format. Differentiable in x, weight and bias.
    """
    _check(x, num_groups, weight, bias, eps)
    if not isinstance(silu, bool):
        raise ValueError(f"silu: expected a bool, got {silu!r}")
    if torch.compiler.is_compiling():  # the library op: traceable, with a fake implementation
        return torch.ops.hypir_kernels.group_norm_silu(x, weight, bias, num_groups, float(eps), silu)[0]
    # Eager: the same implementations without the custom op's dispatch (~40 us of host time per
    # call, ~75 us with autograd, measured on the CPU), as the LoRA ops do.
    grads = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    if not grads:
        return _forward(x, weight, bias, num_groups, float(eps), silu)[0]
    return _GroupNormSiLUFunction.apply(x, weight, bias, num_groups, float(eps), silu)


class GroupNormSiLU(torch.nn.GroupNorm):
    """``nn.GroupNorm`` followed by SiLU (or not, with ``silu=False``), in one op. Same parameters
    and state-dict keys as ``nn.GroupNorm``."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, silu: bool = True,
                 device=None, dtype=None):
        super().__init__(num_groups, num_channels, eps=eps, affine=affine, device=device, dtype=dtype)
        self.silu = silu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_norm_silu(x, self.num_groups, self.weight, self.bias, self.eps, self.silu)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", silu={self.silu}"


# ---- the registry entries and their library ops ---------------------------------------------


def _cpu_forward(x, weight, bias, groups, eps, silu):
    if x.dtype == torch.float64:  # the C++ loops are fp32-arithmetic: float64 keeps its precision here
        return ref.group_norm_silu(x, weight, bias, groups, eps, silu)
    return torch.ops.hypir_kernels._group_norm_silu(x, weight, bias, groups, eps, silu)


def _cpu_backward(grad, x, weight, bias, mean, rstd, groups, eps, silu):
    if x.dtype == torch.float64:
        return ref.group_norm_silu_backward(grad, x, weight, bias, mean, rstd, groups, eps, silu)
    return torch.ops.hypir_kernels._group_norm_silu_backward(grad, x, weight, bias, mean, rstd, groups, eps, silu)


def _triton_forward(x, weight, bias, groups, eps, silu):
    if x.dtype == torch.float64:
        return ref.group_norm_silu(x, weight, bias, groups, eps, silu)
    from .triton import group_norm as kernels

    return kernels.forward(x, weight, bias, groups, eps, silu)


def _triton_backward(grad, x, weight, bias, mean, rstd, groups, eps, silu):
    if x.dtype == torch.float64:
        return ref.group_norm_silu_backward(grad, x, weight, bias, mean, rstd, groups, eps, silu)
    from .triton import group_norm as kernels

    return kernels.backward(grad, x, weight, bias, mean, rstd, groups, silu)


backend.register("group_norm_silu", kernel_op="_group_norm_silu", cpu=_cpu_forward, triton=_triton_forward,
                 reference=ref.group_norm_silu)
backend.register("group_norm_silu_backward", kernel_op="_group_norm_silu_backward", cpu=_cpu_backward,
                 triton=_triton_backward, reference=ref.group_norm_silu_backward)


def _stats_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _forward(x, weight, bias, groups, eps, silu):
    if x.numel() == 0:  # nothing to normalise (and no group to reshape into): empty output, zero statistics
        stats = x.new_zeros((x.shape[0], groups), dtype=_stats_dtype(x))
        return torch.empty_like(x), stats, stats.clone()
    return backend.dispatch("group_norm_silu", x.device)(x, weight, bias, groups, eps, silu)


def _backward_impl(grad, x, weight, bias, mean, rstd, groups, eps, silu):
    if x.numel() == 0:
        zero = [x.new_zeros((0,)) if t is None else torch.zeros_like(t) for t in (weight, bias)]
        return torch.empty_like(x), zero[0], zero[1]
    return backend.dispatch("group_norm_silu_backward", x.device)(grad, x, weight, bias, mean, rstd, groups, eps, silu)


class _GroupNormSiLUFunction(torch.autograd.Function):
    """The eager path of :func:`group_norm_silu` with gradients (the library ops' twin)."""

    @staticmethod
    def forward(ctx, x, weight, bias, groups, eps, silu):
        y, mean, rstd = _forward(x, weight, bias, groups, eps, silu)
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        ctx.args = (groups, eps, silu)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        dx, dw, db = _backward_impl(grad, x, weight, bias, mean, rstd, *ctx.args)
        return dx, (dw if weight is not None else None), (db if bias is not None else None), None, None, None


@torch.library.custom_op("hypir_kernels::group_norm_silu", mutates_args=())
def _forward_op(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, groups: int, eps: float,
                silu: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, mean [N, G], rstd [N, G]); statistics float32 (float64 for float64 x)."""
    _check(x, groups, weight, bias, eps)
    return _forward(x, weight, bias, groups, eps, silu)


@_forward_op.register_fake
def _(x, weight, bias, groups, eps, silu):
    stats = x.new_empty((x.shape[0], groups), dtype=_stats_dtype(x))
    return torch.empty_like(x), stats, torch.empty_like(stats)


@torch.library.custom_op("hypir_kernels::group_norm_silu_backward", mutates_args=())
def _backward_op(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                 mean: torch.Tensor, rstd: torch.Tensor, groups: int, eps: float,
                 silu: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dweight, dbias) for upstream ``grad``; dweight (dbias) is empty when weight (bias) is None."""
    _check(x, groups, weight, bias, eps)
    check_tensor("grad", grad, dtypes=(x.dtype,), device=x.device)
    if grad.shape != x.shape:
        raise ValueError(f"grad: expected x's shape {tuple(x.shape)}, got {tuple(grad.shape)}")
    for name, t in (("mean", mean), ("rstd", rstd)):
        check_tensor(name, t, dims=2, dtypes=(_stats_dtype(x),), device=x.device)
        if tuple(t.shape) != (x.shape[0], groups):
            raise ValueError(f"{name}: expected [N, G] = [{x.shape[0]}, {groups}], got {tuple(t.shape)}")
    return _backward_impl(grad, x, weight, bias, mean, rstd, groups, eps, silu)


@_backward_op.register_fake
def _(grad, x, weight, bias, mean, rstd, groups, eps, silu):
    dw = x.new_empty((0,)) if weight is None else torch.empty_like(weight)
    db = x.new_empty((0,)) if bias is None else torch.empty_like(bias)
    return torch.empty_like(x), dw, db


def _setup_context(ctx, inputs, output):
    x, weight, bias, groups, eps, silu = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, weight, bias, mean, rstd)
    ctx.args = (groups, eps, silu)
    ctx.mark_non_differentiable(mean, rstd)


def _backward(ctx, grad, _grad_mean, _grad_rstd):
    x, weight, bias, mean, rstd = ctx.saved_tensors
    dx, dw, db = torch.ops.hypir_kernels.group_norm_silu_backward(grad, x,
                                                                  weight, bias, mean, rstd, *ctx.args)
    return dx, (dw if weight is not None else None), (db if bias is not None else None), None, None, None


_forward_op.register_autograd(_backward, setup_context=_setup_context)
