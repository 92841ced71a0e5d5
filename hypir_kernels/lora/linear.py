"""LoRA linear layers: :func:`lora_linear`, its library ops (``torch.ops.hypir_kernels.lora_linear_*``,
for ``torch.compile``) and the eager ``autograd.Function`` paths; the activation strategy runs the
Triton GEMMs of :mod:`hypir_kernels.triton.lora` on CUDA."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import backend
from ..checks import check_tensor
from ..reference import lora as ref
from .common import autocast_operands, check_common, dropout_seed, effective_weight, needs_grad
from .cost import choose_strategy


def lora_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_A: torch.Tensor,
                lora_B: torch.Tensor, scale: float, dropout_p: float = 0.0, strategy: str = "auto",
                seed: int | None = None) -> torch.Tensor:
    """``x W^T + b + scale * dropout(x) A^T B^T``.

    Args:
        x: ``[..., in]``. weight: ``[out, in]`` (frozen). bias: ``[out]`` or None (frozen).
        lora_A: ``[r, in]``. lora_B: ``[out, r]``. All the same dtype and device.
        scale: LoRA scaling (peft's ``lora_alpha / r``). dropout_p: dropout on the LoRA input,
            in ``[0, 1)``. strategy: "auto", "activation" or "weight" (see module doc).
        seed: dropout seed (default: drawn from torch's default generator).

    Returns ``[..., out]``. Under ``torch.autocast`` the operands are cast to the autocast dtype
    first, as for ``F.linear``.
    """
    x, weight, bias, lora_A, lora_B = autocast_operands(x, weight, bias, lora_A, lora_B)
    check_common(x, weight, bias, lora_A, lora_B, scale, dropout_p, strategy, dims_w=2)
    if x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x: last dim must be weight's in features {weight.shape[1]}, got shape {tuple(x.shape)}")
    if lora_A.shape[1] != weight.shape[1]:
        raise ValueError(f"lora_A: in features (dim 1) {lora_A.shape[1]} do not match weight's {weight.shape[1]}")
    return _lora_linear(x, weight, bias, lora_A, lora_B, float(scale), float(dropout_p), strategy, seed)


def _lora_linear(x, weight, bias, lora_A, lora_B, scale: float, dropout_p: float, strategy: str, seed):
    """:func:`lora_linear` after its checks (also what patched layers call)."""
    x, weight, bias, lora_A, lora_B = autocast_operands(x, weight, bias, lora_A, lora_B)
    x2 = x if x.dim() == 2 else x.reshape(math.prod(x.shape[:-1]), x.shape[-1])  # -1 is ambiguous when empty
    if strategy == "auto":
        strategy = choose_strategy(x2.shape[0], weight.shape[1], weight.shape[0], lora_A.shape[0], 1,
                                   x.element_size(), x.device.type, needs_grad(x, lora_A, lora_B), dropout_p)
    if torch.compiler.is_compiling():  # the library ops: traceable, with fake implementations
        if strategy == "weight":
            y = torch.ops.hypir_kernels.lora_linear_weight(x2, weight, bias, lora_A, lora_B, scale)
        else:
            y = torch.ops.hypir_kernels.lora_linear_activation(
                x2, weight, bias, lora_A, lora_B, scale, dropout_p, dropout_seed(dropout_p, seed))[0]
    elif strategy == "weight":  # eager: the same code through autograd.Function, without the
        y = _WeightLinear.apply(x2, weight, bias, lora_A, lora_B, scale)  # custom-op overhead
    else:
        impl = backend.select(backend.REGISTRY["lora_linear_activation"], x.device)
        y = _ActivationLinear.apply(x2, weight, bias, lora_A, lora_B, scale, dropout_p, dropout_seed(dropout_p, seed), impl)
    return y if x.dim() == 2 else y.reshape(*x.shape[:-1], weight.shape[0])


# Eager paths. ``torch.library.custom_op`` with ``register_autograd`` costs ~100-150 us of host
# time per call (Python dispatch, schema handling, the autograd wrapper), more than a small
# layer's whole work on a GPU; eager calls run the same implementations through a plain
# ``autograd.Function`` (measured on the CPU with tiny shapes: benchmarks/test_lora_host.py).


class _ActivationLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, A, B, scale, p, seed, impl):
        y, h = backend.REGISTRY["lora_linear_activation"].impls[impl](x, weight, bias, A, B, scale, p, seed)
        ctx.save_for_backward(x, h, weight, A, B)
        ctx.args = (scale, p, seed, impl)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, h, weight, A, B = ctx.saved_tensors
        scale, p, seed, impl = ctx.args
        dx, dA, dB = backend.REGISTRY["lora_linear_activation_backward"].impls[impl](
            dy, x, h, weight, A, B, scale, p, seed)  # the Triton path makes its operands contiguous
        return dx, None, None, dA, dB, None, None, None, None


class _WeightLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, A, B, scale):
        ctx.save_for_backward(x, weight, A, B)
        ctx.scale = scale
        return F.linear(x, effective_weight(weight, A, B, scale), bias)

    @staticmethod
    def backward(ctx, dy):
        return _weight_backward(ctx, dy)


def _check_linear_2d(x, weight, bias, lora_A, lora_B, scale, dropout_p) -> None:
    """The checks of :func:`lora_linear` for the library ops (public as torch.ops.hypir_kernels.*)."""
    check_common(x, weight, bias, lora_A, lora_B, scale, dropout_p, "activation", dims_w=2)
    check_tensor("x", x, dims=2)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x: expected [N, {weight.shape[1]}] (weight's in features), got {tuple(x.shape)}")
    if lora_A.shape[1] != weight.shape[1]:
        raise ValueError(f"lora_A: in features (dim 1) {lora_A.shape[1]} do not match weight's {weight.shape[1]}")


def _act_forward_triton(x, weight, bias, A, B, scale, p, seed):
    from ..triton import lora as kernels

    x, weight, A, B = (t.contiguous() for t in (x, weight, A, B))
    bias = bias.contiguous() if bias is not None else None
    h = kernels.gemm(x, A.t(), drop=1 if p > 0 else 0, seed=seed, p=p)
    y = kernels.gemm(x, weight.t(), h, B.t(), bias=bias, scale2=scale)
    return y, h


def _act_backward_triton(dy, x, h, weight, A, B, scale, p, seed):
    from ..triton import lora as kernels

    dy, x, weight, A, B = (t.contiguous() for t in (dy, x, weight, A, B))
    g = (dy @ B).mul_(scale)
    dB = (dy.t() @ h).mul_(scale)
    dx = kernels.gemm(dy, weight, g, A, drop=3 if p > 0 else 0, seed=seed, p=p)
    dA = kernels.gemm(g.t(), x, drop=2 if p > 0 else 0, seed=seed, p=p)
    return dx, dA, dB


backend.register("lora_linear_activation", triton=_act_forward_triton, reference=ref.activation_forward)
backend.register("lora_linear_activation_backward", triton=_act_backward_triton, reference=ref.activation_backward)


@torch.library.custom_op("hypir_kernels::lora_linear_activation", mutates_args=())
def _lora_linear_activation(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_A: torch.Tensor,
                            lora_B: torch.Tensor, scale: float, dropout_p: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Activation strategy on 2-D ``x [N, in]``: (y [N, out], h [N, r] saved for backward). The torch
    path draws its dropout mask with torch.rand, the Triton path with in-kernel Philox."""
    _check_linear_2d(x, weight, bias, lora_A, lora_B, scale, dropout_p)
    return backend.dispatch("lora_linear_activation", x.device)(x, weight, bias, lora_A, lora_B, scale, dropout_p, seed)


@_lora_linear_activation.register_fake
def _(x, weight, bias, lora_A, lora_B, scale, dropout_p, seed):
    return x.new_empty((x.shape[0], weight.shape[0])), x.new_empty((x.shape[0], lora_A.shape[0]))


@torch.library.custom_op("hypir_kernels::lora_linear_activation_backward", mutates_args=())
def _lora_linear_activation_backward(dy: torch.Tensor, x: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, lora_A: torch.Tensor,
                                     lora_B: torch.Tensor, scale: float, dropout_p: float, seed: int,
                                     forward_backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward on the backend that ran the forward: the torch and Triton paths draw different
    dropout masks from the same seed, and the backward must regenerate the forward's."""
    _check_linear_2d(x, weight, None, lora_A, lora_B, scale, dropout_p)
    for name, t, cols in (("dy", dy, weight.shape[0]), ("h", h, lora_A.shape[0])):
        check_tensor(name, t, dims=2, dtypes=(x.dtype,), device=x.device)
        if tuple(t.shape) != (x.shape[0], cols):
            raise ValueError(f"{name}: expected shape {(x.shape[0], cols)}, got {tuple(t.shape)}")
    if forward_backend not in backend.REGISTRY["lora_linear_activation_backward"].impls:
        raise ValueError(f"forward_backend: expected one of {tuple(backend.REGISTRY['lora_linear_activation_backward'].impls)}, "
                         f"got {forward_backend!r}")
    ok, why = backend.runnable(backend.REGISTRY["lora_linear_activation_backward"], forward_backend, x.device.type)
    if not ok:
        raise ValueError(f"forward_backend: {forward_backend!r} cannot run here: {why}")
    impl = backend.REGISTRY["lora_linear_activation_backward"].impls[forward_backend]
    return impl(dy, x, h, weight, lora_A, lora_B, scale, dropout_p, seed)


@_lora_linear_activation_backward.register_fake
def _(dy, x, h, weight, lora_A, lora_B, scale, dropout_p, seed, forward_backend):
    return torch.empty_like(x), torch.empty_like(lora_A), torch.empty_like(lora_B)


def _act_setup(ctx, inputs, output):
    x, weight, _bias, A, B, scale, p, seed = inputs
    ctx.save_for_backward(x, output[1], weight, A, B)
    ctx.args = (scale, p, seed, backend.select(backend.REGISTRY["lora_linear_activation"], x.device))
    ctx.mark_non_differentiable(output[1])


def _act_backward(ctx, dy, _dh):
    x, h, weight, A, B = ctx.saved_tensors
    dx, dA, dB = torch.ops.hypir_kernels.lora_linear_activation_backward(dy.contiguous(), x, h, weight, A, B, *ctx.args)
    return dx, None, None, dA, dB, None, None, None


_lora_linear_activation.register_autograd(_act_backward, setup_context=_act_setup)


@torch.library.custom_op("hypir_kernels::lora_linear_weight", mutates_args=())
def _lora_linear_weight(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_A: torch.Tensor,
                        lora_B: torch.Tensor, scale: float) -> torch.Tensor:
    """Weight strategy on 2-D ``x [N, in]``: ``x W_eff^T + b``."""
    _check_linear_2d(x, weight, bias, lora_A, lora_B, scale, 0.0)
    return F.linear(x, effective_weight(weight, lora_A, lora_B, scale), bias)


@_lora_linear_weight.register_fake
def _(x, weight, bias, lora_A, lora_B, scale):
    return x.new_empty((x.shape[0], weight.shape[0]))


def _weight_setup(ctx, inputs, output):
    x, weight, _bias, A, B, scale = inputs
    ctx.save_for_backward(x, weight, A, B)
    ctx.scale = scale


def _weight_backward(ctx, dy):
    x, weight, A, B = ctx.saved_tensors
    s = ctx.scale
    dw = dy.t() @ x  # gradient of W_eff, [out, in]
    dA = (B.t() @ dw).mul_(s)
    dB = (dw @ A.t()).mul_(s)
    dx = dy @ effective_weight(weight, A, B, s)
    return dx, None, None, dA, dB, None


_lora_linear_weight.register_autograd(_weight_backward, setup_context=_weight_setup)
