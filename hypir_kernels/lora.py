"""Fused LoRA for linear and conv layers, two execution strategies, and a peft drop-in.

``y = base(x) + s * B(A(dropout(x)))`` with the base weight frozen (no gradient); ``x``, ``A``
and ``B`` receive gradients. Shapes as in peft: linear ``A [r, in]``, ``B [out, r]``; conv
``A [r, in, kh, kw]`` (same kernel, stride, padding, dilation as the base; groups 1) and
``B [out, r, 1, 1]``.

Strategies
----------
``activation``  Compute the rank-r activation ``h = dropout(x) A^T`` and add ``s h B^T`` to the
                base output. Saves ``x`` and ``h`` for backward. Dropout is regenerated from a
                seed in backward, never stored. Linear layers on CUDA run the Triton kernels of
                :mod:`hypir_kernels.triton.lora` (the rank-r product is accumulated into the base
                GEMM's accumulator, one store); elsewhere torch ops (``addmm`` into one buffer).
``weight``      Form ``W_eff = W + s B A`` (fp32 accumulation), run the base op with it, and get
                ``dA = s B^T dW_eff``, ``dB = s dW_eff A^T`` from the weight gradient. Saves only
                ``x`` (``W_eff`` is recomputed in backward). Cannot express dropout.
``auto``        :func:`choose_strategy`: the estimated time (multiply-adds / peak + bytes /
                bandwidth, per device) of both; dropout forces ``activation``.

Extra work over the base layer (``N`` output positions, ``K`` kernel taps, 1 for linear),
training: activation ``3 N r (in K + out)``; weight ``4 out in K r + N out in K``. Inference:
``N r (in K + out)`` vs ``out in K r``. On the CPU the ``K > 1`` convolution terms are divided by
``Device.conv_speedup`` (oneDNN convolutions beat their GEMM count). So the weight strategy wins when ``N`` is large against
``r`` (high-resolution layers at HYPIR's rank 256) and loses on small token counts.
"""
from __future__ import annotations

import functools
import math
import numbers
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import backend
from .checks import check_int, check_seed, check_tensor

STRATEGIES = ("auto", "activation", "weight")
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


# ---------------------------------------------------------------------------------------------
# Cost model


@dataclass(frozen=True)
class Device:
    """Rough machine figures for :func:`choose_strategy`: multiply-adds per second by element
    size and bytes per second. Ratios matter, not absolute values."""

    macs_per_s: dict
    bytes_per_s: float
    # Rate of k x k (k > 1) convolutions relative to GEMMs of the same multiply-adds: oneDNN's
    # CPU convolutions (Winograd / direct kernels) run 3x3 layers ~2.5x faster than the GEMM count
    # says (measured on the SD2 suite: 944M-MAC conv in 10 ms vs 36 GMAC/s for sgemm).
    conv_speedup: float = 1.0


DEVICES = {
    "cpu": Device({4: 4e10, 8: 2e10, 2: 1e10}, 1e10, conv_speedup=2.5),  # few-core AVX2/AVX-512 server
    "cuda": Device({4: 2.5e13, 8: 3e13, 2: 4e14}, 2e12),  # A100/H100 class: tensor cores for 16-bit
}


def strategy_costs(n: int, fan_in: int, fan_out: int, rank: int, taps: int = 1, elem_bytes: int = 4,
                   device: str = "cpu", training: bool = True) -> dict[str, float]:
    """Estimated seconds of the LoRA work each strategy adds to the base layer.

    ``n`` output positions (tokens, or batch x output pixels), ``fan_in``/``fan_out`` channels,
    ``taps`` kernel taps (``kh * kw``; 1 for linear), ``rank`` r.
    """
    dev = DEVICES["cuda" if device == "cuda" else "cpu"]
    peak = dev.macs_per_s.get(elem_bytes, dev.macs_per_s[4])
    conv = dev.conv_speedup if taps > 1 else 1.0  # GEMM-equivalent cost of a k x k convolution MAC
    w_elems = fan_out * fan_in * taps
    passes = 3 if training else 1  # forward; backward: input and weight gradient of each product
    # activation: conv/linear with A (x -> h) and the 1x1/linear with B (h -> out), each pass
    act_macs = passes * n * rank * (fan_in * taps / conv + fan_out)
    act_bytes = elem_bytes * ((n * fan_in + 6 * n * rank) if training else 2 * n * rank)  # x re-read; h, g
    if training:  # W_eff formed twice, dA and dB from dW_eff (GEMMs); dW_eff itself (base-shaped conv)
        weight_macs = 4 * w_elems * rank + n * w_elems / conv
        weight_bytes = elem_bytes * 6 * w_elems
    else:
        weight_macs = w_elems * rank
        weight_bytes = elem_bytes * 2 * w_elems
    return {
        "activation": act_macs / peak + act_bytes / dev.bytes_per_s,
        "weight": weight_macs / peak + weight_bytes / dev.bytes_per_s,
    }


def choose_strategy(n: int, fan_in: int, fan_out: int, rank: int, taps: int = 1, elem_bytes: int = 4,
                    device: str = "cpu", training: bool = True, dropout_p: float = 0.0) -> str:
    """The strategy ``auto`` picks: the cheaper by :func:`strategy_costs`; ``activation`` when
    dropout is on (the weight strategy cannot express it). Memoised per shape (a call is on the
    host-time path of every patched layer)."""
    if dropout_p > 0:
        return "activation"
    return _cheaper_strategy(n, fan_in, fan_out, rank, taps, elem_bytes, device, training)


@functools.lru_cache(maxsize=4096)
def _cheaper_strategy(n, fan_in, fan_out, rank, taps, elem_bytes, device, training) -> str:
    costs = strategy_costs(n, fan_in, fan_out, rank, taps, elem_bytes, device, training)
    return "weight" if costs["weight"] < costs["activation"] else "activation"


# ---------------------------------------------------------------------------------------------
# Checks


def _check_common(x, weight, bias, lora_A, lora_B, scale, dropout_p, strategy, dims_w: int):
    check_tensor("x", x, dtypes=_DTYPES)
    check_tensor("weight", weight, dims=dims_w, dtypes=_DTYPES)
    check_tensor("lora_A", lora_A, dims=dims_w, dtypes=_DTYPES)
    check_tensor("lora_B", lora_B, dims=dims_w, dtypes=_DTYPES)
    if bias is not None:
        check_tensor("bias", bias, dims=1, dtypes=_DTYPES)
    for name, t in (("weight", weight), ("bias", bias), ("lora_A", lora_A), ("lora_B", lora_B)):
        if t is None:
            continue
        if t.dtype != x.dtype:
            raise ValueError(f"{name}: expected the dtype of x ({x.dtype}), got {t.dtype} (cast the layer or the input)")
        if t.device != x.device:
            raise ValueError(f"{name}: expected the device of x ({x.device}), got {t.device}")
    if lora_A.shape[0] == 0:
        raise ValueError(f"lora_A: rank (dim 0) must be >= 1, got shape {tuple(lora_A.shape)}")
    if lora_B.shape[1] != lora_A.shape[0]:
        raise ValueError(f"lora_B: rank (dim 1) {lora_B.shape[1]} does not match lora_A's rank (dim 0) {lora_A.shape[0]}")
    if lora_B.shape[0] != weight.shape[0]:
        raise ValueError(f"lora_B: out features (dim 0) {lora_B.shape[0]} do not match weight's {weight.shape[0]}")
    if bias is not None and bias.shape[0] != weight.shape[0]:
        raise ValueError(f"bias: expected shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
        raise ValueError(f"scale: expected a finite number, got {scale!r}")
    if abs(scale) > torch.finfo(x.dtype).max:  # the kernels scale in x's dtype (fp16: 65504)
        raise ValueError(f"scale: {scale!r} overflows {x.dtype} (max {torch.finfo(x.dtype).max:g})")
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, numbers.Real) or not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p: expected a number in [0, 1), got {dropout_p!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {STRATEGIES}, got {strategy!r}")
    if strategy == "weight" and dropout_p > 0:
        raise ValueError("strategy: 'weight' cannot apply dropout to the LoRA branch; use 'activation' or 'auto'")


def _training(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _seed(dropout_p: float, seed) -> int:
    if seed is not None:
        seed = check_seed("seed", seed)
    if dropout_p == 0:
        return 0
    if seed is None:  # from torch's default generator, so torch.manual_seed reproduces it
        return int(torch.randint(0, 2**31 - 1, (1,)).item())
    return seed


# ---------------------------------------------------------------------------------------------
# Linear


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

    Returns ``[..., out]``.
    """
    _check_common(x, weight, bias, lora_A, lora_B, scale, dropout_p, strategy, dims_w=2)
    if x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x: last dim must be weight's in features {weight.shape[1]}, got shape {tuple(x.shape)}")
    if lora_A.shape[1] != weight.shape[1]:
        raise ValueError(f"lora_A: in features (dim 1) {lora_A.shape[1]} do not match weight's {weight.shape[1]}")
    return _lora_linear(x, weight, bias, lora_A, lora_B, float(scale), float(dropout_p), strategy, seed)


def _lora_linear(x, weight, bias, lora_A, lora_B, scale: float, dropout_p: float, strategy: str, seed):
    """:func:`lora_linear` after its checks."""
    x2 = x if x.dim() == 2 else x.reshape(math.prod(x.shape[:-1]), x.shape[-1])  # -1 is ambiguous when empty
    if strategy == "auto":
        strategy = choose_strategy(x2.shape[0], weight.shape[1], weight.shape[0], lora_A.shape[0], 1,
                                   x.element_size(), x.device.type, _training(x, lora_A, lora_B), dropout_p)
    if torch.compiler.is_compiling():  # the library ops: traceable, with fake implementations
        if strategy == "weight":
            y = torch.ops.hypir_kernels.lora_linear_weight(x2, weight, bias, lora_A, lora_B, scale)
        else:
            y = torch.ops.hypir_kernels.lora_linear_activation(
                x2, weight, bias, lora_A, lora_B, scale, dropout_p, _seed(dropout_p, seed))[0]
    elif strategy == "weight":  # eager: the same code through autograd.Function, without the
        y = _WeightLinear.apply(x2, weight, bias, lora_A, lora_B, scale)  # custom-op overhead
    else:
        impl = backend.select(backend.REGISTRY["lora_linear_activation"], x.device)
        y = _ActivationLinear.apply(x2, weight, bias, lora_A, lora_B, scale, dropout_p, _seed(dropout_p, seed), impl)
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
        return F.linear(x, _effective_weight(weight, A, B, scale), bias)

    @staticmethod
    def backward(ctx, dy):
        return _weight_backward(ctx, dy)


def _keep_mask(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Dropout keep mask of the torch path, regenerated from ``seed`` (forward and backward)."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    return torch.rand(x.shape, generator=g, device=x.device, dtype=torch.float32) >= p


def _dropped(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    if p == 0:
        return x
    return x * _keep_mask(x, p, seed).to(x.dtype) * (1.0 / (1.0 - p))


def _check_linear_2d(x, weight, bias, lora_A, lora_B, scale, dropout_p) -> None:
    """The checks of :func:`lora_linear` for the library ops (public as torch.ops.hypir_kernels.*)."""
    _check_common(x, weight, bias, lora_A, lora_B, scale, dropout_p, "activation", dims_w=2)
    check_tensor("x", x, dims=2)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x: expected [N, {weight.shape[1]}] (weight's in features), got {tuple(x.shape)}")
    if lora_A.shape[1] != weight.shape[1]:
        raise ValueError(f"lora_A: in features (dim 1) {lora_A.shape[1]} do not match weight's {weight.shape[1]}")


def _act_forward_torch(x, weight, bias, A, B, scale, p, seed):
    h = F.linear(_dropped(x, p, seed), A)
    y = F.linear(x, weight, bias)
    y.addmm_(h, B.t(), alpha=scale)  # accumulate the LoRA product into the base output
    return y, h


def _scaled(t: torch.Tensor, scale: float) -> torch.Tensor:
    return t if scale == 1.0 else t.mul_(scale)  # HYPIR's alpha = r: skip the no-op multiply


def _act_backward_torch(dy, x, h, weight, A, B, scale, p, seed):
    g = _scaled(dy @ B, scale)  # [N, r]
    dB = _scaled(dy.t() @ h, scale)
    if p == 0:
        dA = g.t() @ x
        dx = (dy @ weight).addmm_(g, A)
    else:
        keep = _keep_mask(x, p, seed).to(x.dtype) * (1.0 / (1.0 - p))
        dA = g.t() @ (x * keep)
        dx = (dy @ weight).add_((g @ A) * keep)
    return dx, dA, dB


def _act_forward_triton(x, weight, bias, A, B, scale, p, seed):
    from .triton import lora as kernels

    x, weight, A, B = (t.contiguous() for t in (x, weight, A, B))
    bias = bias.contiguous() if bias is not None else None
    h = kernels.gemm(x, A.t(), drop=1 if p > 0 else 0, seed=seed, p=p)
    y = kernels.gemm(x, weight.t(), h, B.t(), bias=bias, scale2=scale)
    return y, h


def _act_backward_triton(dy, x, h, weight, A, B, scale, p, seed):
    from .triton import lora as kernels

    dy, x, weight, A, B = (t.contiguous() for t in (dy, x, weight, A, B))
    g = (dy @ B).mul_(scale)
    dB = (dy.t() @ h).mul_(scale)
    dx = kernels.gemm(dy, weight, g, A, drop=3 if p > 0 else 0, seed=seed, p=p)
    dA = kernels.gemm(g.t(), x, drop=2 if p > 0 else 0, seed=seed, p=p)
    return dx, dA, dB


backend.register("lora_linear_activation", triton=_act_forward_triton, reference=_act_forward_torch)
backend.register("lora_linear_activation_backward", triton=_act_backward_triton, reference=_act_backward_torch)


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


def _effective_weight(weight: torch.Tensor, A: torch.Tensor, B: torch.Tensor, scale: float) -> torch.Tensor:
    """``W + scale * B A`` accumulated in fp32 (or fp64), cast to W's dtype; B and A are viewed as
    matrices ``[out, r]`` and ``[r, in * kh * kw]``."""
    acc = torch.float64 if weight.dtype == torch.float64 else torch.float32
    delta = B.reshape(B.shape[0], B.shape[1]).to(acc) @ A.reshape(A.shape[0], math.prod(A.shape[1:])).to(acc)
    return (weight.to(acc) + scale * delta.reshape(weight.shape)).to(weight.dtype)


@torch.library.custom_op("hypir_kernels::lora_linear_weight", mutates_args=())
def _lora_linear_weight(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_A: torch.Tensor,
                        lora_B: torch.Tensor, scale: float) -> torch.Tensor:
    """Weight strategy on 2-D ``x [N, in]``: ``x W_eff^T + b``."""
    _check_linear_2d(x, weight, bias, lora_A, lora_B, scale, 0.0)
    return F.linear(x, _effective_weight(weight, lora_A, lora_B, scale), bias)


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
    dx = dy @ _effective_weight(weight, A, B, s)
    return dx, None, None, dA, dB, None


_lora_linear_weight.register_autograd(_weight_backward, setup_context=_weight_setup)


# ---------------------------------------------------------------------------------------------
# Conv2d


_MAX_CONV_ARG = 1 << 31  # stride/padding/dilation beyond this overflow torch's conv geometry


def _pair(v, name: str, minimum: int) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v, v]
    if not (isinstance(v, (tuple, list)) and len(v) == 2):
        raise ValueError(f"{name}: expected an int or a pair of ints, got {v!r}")
    return [check_int(name, i, minimum=minimum, maximum=_MAX_CONV_ARG) for i in v]


def lora_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_A: torch.Tensor,
                lora_B: torch.Tensor, scale: float, stride=1, padding=0, dilation=1, groups: int = 1,
                dropout_p: float = 0.0, strategy: str = "auto", seed: int | None = None) -> torch.Tensor:
    """``conv2d(x, W, b) + scale * conv1x1(conv2d(dropout(x), A), B)``.

    Args:
        x: ``[Bt, in, H, W]``. weight: ``[out, in, kh, kw]`` (frozen, ``groups`` must be 1).
        lora_A: ``[r, in, kh, kw]`` (the base's kernel, stride, padding, dilation).
        lora_B: ``[out, r, 1, 1]``. stride, padding, dilation: ints or pairs, as ``F.conv2d``.
        Other arguments as :func:`lora_linear`.

    Returns ``[Bt, out, H', W']``.
    """
    if groups != 1:
        raise ValueError(f"groups: only groups=1 is supported, got {groups!r}")
    stride, padding, dilation = _check_conv(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation,
                                            dropout_p, strategy)
    return _lora_conv2d(x, weight, bias, lora_A, lora_B, float(scale), stride, padding, dilation, float(dropout_p),
                        strategy, seed)


def _check_conv(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation, dropout_p, strategy="auto"):
    """The checks of :func:`lora_conv2d`, also run by its library ops (public as
    torch.ops.hypir_kernels.*); returns the geometry as lists of two ints."""
    _check_common(x, weight, bias, lora_A, lora_B, scale, dropout_p, strategy, dims_w=4)
    check_tensor("x", x, dims=4)
    stride, padding, dilation = _pair(stride, "stride", 1), _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x: channels (dim 1) {x.shape[1]} do not match weight's in channels {weight.shape[1]}")
    if tuple(lora_A.shape[1:]) != tuple(weight.shape[1:]):
        raise ValueError(f"lora_A: expected shape [r, {', '.join(map(str, weight.shape[1:]))}], got {tuple(lora_A.shape)}")
    if tuple(lora_B.shape[2:]) != (1, 1):
        raise ValueError(f"lora_B: expected a 1x1 kernel [out, r, 1, 1], got {tuple(lora_B.shape)}")
    if weight.shape[0] == 0 or weight.shape[1] == 0:  # F.conv2d rejects zero out channels and gets zero in channels wrong
        raise ValueError(f"weight: out and in channels (dims 0, 1) must be >= 1, got shape {tuple(weight.shape)}")
    if x.shape[2] == 0 or x.shape[3] == 0:  # F.conv2d runs no convolution over an empty plane
        raise ValueError(f"x: height and width must be >= 1, got shape {tuple(x.shape)}")
    for i, axis in ((0, "height"), (1, "width")):
        span = dilation[i] * (weight.shape[2 + i] - 1) + 1
        if x.shape[2 + i] + 2 * padding[i] < span:
            raise ValueError(f"x: padded {axis} {x.shape[2 + i]} + 2*{padding[i]} is smaller than the dilated kernel's {span}")
    return stride, padding, dilation


def _lora_conv2d(x, weight, bias, lora_A, lora_B, scale: float, stride: list[int], padding: list[int],
                 dilation: list[int], dropout_p: float, strategy: str, seed):
    """:func:`lora_conv2d` after its checks (geometry as lists of two ints)."""
    if strategy == "auto":
        out_h = (x.shape[2] + 2 * padding[0] - dilation[0] * (weight.shape[2] - 1) - 1) // stride[0] + 1
        out_w = (x.shape[3] + 2 * padding[1] - dilation[1] * (weight.shape[3] - 1) - 1) // stride[1] + 1
        strategy = choose_strategy(x.shape[0] * max(out_h, 0) * max(out_w, 0), weight.shape[1], weight.shape[0],
                                   lora_A.shape[0], weight.shape[2] * weight.shape[3], x.element_size(),
                                   x.device.type, _training(x, lora_A, lora_B), dropout_p)
    args = (x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation)
    if torch.compiler.is_compiling():  # the library ops: traceable, with fake implementations
        if strategy == "weight":
            return torch.ops.hypir_kernels.lora_conv2d_weight(*args)
        return torch.ops.hypir_kernels.lora_conv2d_activation(*args, dropout_p, _seed(dropout_p, seed))[0]
    if strategy == "weight":  # eager: the same code through autograd.Function (see _ActivationLinear)
        return _WeightConv2d.apply(*args)
    if dropout_p == 0 and (x.device.type != "cpu" or x.numel() * lora_A.numel() < _COMPOSED_CONV_MAX_WORK):
        # No mask to regenerate: plain differentiable ops, whose C++ autograd nodes cost less host time
        # than a Python Function (tiny CPU layers: 0.93x peft's host time instead of 1.4x). Not for
        # large CPU layers: there F.conv2d's slow path saves its unfolded input for backward (the
        # Function recomputes instead; 0.69x of peft's saved bytes on the SD2 suite vs 0.82x).
        _seed(0.0, seed)  # still validated
        y = F.conv2d(x, weight, bias, stride, padding, dilation)
        h = F.conv2d(x, lora_A, None, stride, padding, dilation)
        return y.add_(F.conv2d(h, lora_B), alpha=scale)
    return _ActivationConv2d.apply(*args, dropout_p, _seed(dropout_p, seed))


def _conv_input_grad(dy, x, w, stride, padding, dilation):
    return torch.ops.aten.convolution_backward(dy, x, w, None, stride, padding, dilation, False, [0, 0], 1, [True, False, False])[0]


@torch.library.custom_op("hypir_kernels::lora_conv2d_activation", mutates_args=())
def _lora_conv2d_activation(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_A: torch.Tensor,
                            lora_B: torch.Tensor, scale: float, stride: list[int], padding: list[int], dilation: list[int],
                            dropout_p: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Activation strategy: (y, h = conv2d(dropout(x), A) saved for backward)."""
    _check_conv(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation, dropout_p)
    return _conv_act_forward(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation, dropout_p, seed)


def _conv_act_forward(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation, dropout_p, seed):
    h = F.conv2d(_dropped(x, dropout_p, seed), lora_A, None, stride, padding, dilation)
    y = F.conv2d(x, weight, bias, stride, padding, dilation)
    n, r, hw = h.shape[0], h.shape[1], h.shape[2] * h.shape[3]
    lora = torch.matmul(lora_B.reshape(1, lora_B.shape[0], r), h.reshape(n, r, hw))  # [Bt, out, H'W']
    y.add_(lora.reshape(y.shape), alpha=scale)
    return y, h


@_lora_conv2d_activation.register_fake
def _(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation, dropout_p, seed):
    y = F.conv2d(x, weight, None, stride, padding, dilation)
    return y, x.new_empty((y.shape[0], lora_A.shape[0], y.shape[2], y.shape[3]))


def _conv_act_setup(ctx, inputs, output):
    x, weight, _bias, A, B, scale, stride, padding, dilation, p, seed = inputs
    ctx.save_for_backward(x, output[1], weight, A, B)
    ctx.args = (scale, stride, padding, dilation, p, seed)
    ctx.mark_non_differentiable(output[1])


def _conv_act_backward(ctx, dy, _dh):
    x, h, weight, A, B = ctx.saved_tensors
    scale, stride, padding, dilation, p, seed = ctx.args
    n, r, hw = h.shape[0], h.shape[1], h.shape[2] * h.shape[3]
    dy3 = dy.reshape(n, dy.shape[1], hw)
    g = _scaled(torch.matmul(B.reshape(1, B.shape[0], r).transpose(1, 2), dy3), scale)  # [Bt, r, H'W']
    dB = _scaled(torch.matmul(dy3, h.reshape(n, r, hw).transpose(1, 2)).sum(0), scale).reshape(B.shape)
    xd = _dropped(x, p, seed)
    gi = g.reshape(h.shape)
    dxa, dA, _ = torch.ops.aten.convolution_backward(gi, xd, A, None, stride, padding, dilation, False, [0, 0], 1, [True, True, False])
    if p > 0:
        dxa = _dropped_grad(dxa, x, p, seed)
    dx = _conv_input_grad(dy, x, weight, stride, padding, dilation).add_(dxa)
    return dx, None, None, dA, dB, None, None, None, None, None, None


def _dropped_grad(grad, x, p, seed):
    return grad * _keep_mask(x, p, seed).to(grad.dtype) * (1.0 / (1.0 - p))


_lora_conv2d_activation.register_autograd(_conv_act_backward, setup_context=_conv_act_setup)


@torch.library.custom_op("hypir_kernels::lora_conv2d_weight", mutates_args=())
def _lora_conv2d_weight(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_A: torch.Tensor,
                        lora_B: torch.Tensor, scale: float, stride: list[int], padding: list[int], dilation: list[int]) -> torch.Tensor:
    """Weight strategy: ``conv2d(x, W_eff, b)``."""
    _check_conv(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation, 0.0)
    return F.conv2d(x, _effective_weight(weight, lora_A, lora_B, scale), bias, stride, padding, dilation)


@_lora_conv2d_weight.register_fake
def _(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation):
    return F.conv2d(x, weight, None, stride, padding, dilation)


def _conv_weight_setup(ctx, inputs, output):
    x, weight, _bias, A, B, scale, stride, padding, dilation = inputs
    ctx.save_for_backward(x, weight, A, B)
    ctx.args = (scale, stride, padding, dilation)


def _conv_weight_backward(ctx, dy):
    x, weight, A, B = ctx.saved_tensors
    scale, stride, padding, dilation = ctx.args
    w_eff = _effective_weight(weight, A, B, scale)
    dx, dw, _ = torch.ops.aten.convolution_backward(dy, x, w_eff, None, stride, padding, dilation, False, [0, 0], 1, [True, True, False])
    dw2 = dw.reshape(dw.shape[0], math.prod(dw.shape[1:]))
    dA = (B.reshape(B.shape[0], B.shape[1]).t() @ dw2).mul_(scale).reshape(A.shape)
    dB = (dw2 @ A.reshape(A.shape[0], math.prod(A.shape[1:])).t()).mul_(scale).reshape(B.shape)
    return dx, None, None, dA, dB, None, None, None, None


_lora_conv2d_weight.register_autograd(_conv_weight_backward, setup_context=_conv_weight_setup)


_COMPOSED_CONV_MAX_WORK = 1 << 24  # x elements x lora_A elements: CPU layers below this are host-bound


class _ActivationConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, A, B, scale, stride, padding, dilation, p, seed):
        y, h = _conv_act_forward(x, weight, bias, A, B, scale, stride, padding, dilation, p, seed)
        ctx.save_for_backward(x, h, weight, A, B)
        ctx.args = (scale, stride, padding, dilation, p, seed)
        return y

    @staticmethod
    def backward(ctx, dy):
        return _conv_act_backward(ctx, dy, None)


class _WeightConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, A, B, scale, stride, padding, dilation):
        ctx.save_for_backward(x, weight, A, B)
        ctx.args = (scale, stride, padding, dilation)
        return F.conv2d(x, _effective_weight(weight, A, B, scale), bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx, dy):
        return _conv_weight_backward(ctx, dy)


# ---------------------------------------------------------------------------------------------
# peft integration


def _peft_lora_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    from peft.tuners.lora import layer as peft_lora

    kinds = tuple(k for k in (getattr(peft_lora, "Linear", None), getattr(peft_lora, "Conv2d", None)) if k is not None)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]


def _single_adapter(module) -> str | None:
    active = [a for a in module.active_adapters if a in module.lora_A]
    return active[0] if len(active) == 1 else None


def _fusable(module) -> str | None:
    """The active adapter if ``module``'s LoRA can run through our ops, else None (the layer then
    keeps peft's own forward): one active adapter, vanilla LoRA (no DoRA, no LoRA bias, no
    variant), one dtype, and for conv the base's geometry on lora_A with groups 1."""
    adapter = _single_adapter(module)
    if adapter is None or module.use_dora.get(adapter, False) or getattr(module, "lora_bias", {}).get(adapter, False):
        return None
    if adapter in getattr(module, "lora_variant", {}):
        return None
    base = module.get_base_layer()
    A, B = module.lora_A[adapter], module.lora_B[adapter]
    if not (base.weight.dtype == A.weight.dtype == B.weight.dtype):
        return None
    if isinstance(base, torch.nn.Conv2d):
        if base.groups != 1 or base.padding_mode != "zeros" or isinstance(base.padding, str):
            return None
        if (A.stride, A.padding, A.dilation) != (base.stride, base.padding, base.dilation) or A.groups != 1 or B.groups != 1:
            return None
    elif not isinstance(base, torch.nn.Linear):
        return None
    return adapter


def _hk_plan(module):
    """``(adapter, base, A, B, dropout)`` if the layer's LoRA runs through our ops, else None;
    cached on the module and recomputed when what :func:`_fusable` reads changes (active adapters,
    dtypes, the parameter objects), so a call does not pay for the ModuleDict look-ups."""
    key = (tuple(module.active_adapters), module.disable_adapters, module.merged)
    cached = module.__dict__.get("_hk_plan_cache")
    if cached is not None and cached[0] == key:
        plan = cached[1]
        if plan is None or (plan[2].dtype == plan[3].dtype == plan[1].weight.dtype):
            return plan
    plan = None
    if not (key[1] or key[2]):
        adapter = _fusable(module)
        if adapter is not None:
            plan = (adapter, module.get_base_layer(), module.lora_A[adapter].weight, module.lora_B[adapter].weight,
                    module.lora_dropout[adapter])
    module.__dict__["_hk_plan_cache"] = (key, plan)
    return plan


def _hk_forward(self, x, *args, **kwargs):
    """Forward installed on patched/merged peft LoRA layers."""
    if self.__dict__.get("_hk_merged", False):
        return self.get_base_layer()(x, *args, **kwargs)
    plan = None if (args or kwargs) else _hk_plan(self)
    if plan is None:
        return type(self).forward(self, x, *args, **kwargs)
    adapter, base, A, B, dropout = plan
    scale = float(self.scaling[adapter])  # read per call: peft's set_scale changes it
    p = float(dropout.p) if isinstance(dropout, torch.nn.Dropout) and dropout.training else 0.0
    strategy = self.__dict__.get("_hk_strategy", "auto")
    if isinstance(base, torch.nn.Linear):
        w = base.weight
        if not (isinstance(x, torch.Tensor) and x.dtype == w.dtype and x.device == w.device and x.dim() >= 1
                and x.shape[-1] == w.shape[1]):  # the layer itself is consistent (_fusable); x is not checked yet
            return lora_linear(x, w, base.bias, A, B, scale, p, strategy)  # raises the precise error
        return _lora_linear(x, w, base.bias, A, B, scale, p, strategy, None)
    w = base.weight
    if not (isinstance(x, torch.Tensor) and x.dtype == w.dtype and x.device == w.device and x.dim() == 4
            and x.shape[1] == w.shape[1]):
        return lora_conv2d(x, w, base.bias, A, B, scale, base.stride, base.padding, base.dilation, 1, p, strategy)
    return _lora_conv2d(x, w, base.bias, A, B, scale, list(base.stride), list(base.padding), list(base.dilation), p,
                        strategy, None)  # the layer's geometry was checked by _fusable


def _install(module) -> None:
    module.forward = types.MethodType(_hk_forward, module)


def _uninstall_if_idle(module) -> None:
    if not getattr(module, "_hk_patched", False) and not getattr(module, "_hk_merged", False) and "forward" in module.__dict__:
        del module.forward


def patch_peft(model: torch.nn.Module, strategy: str = "auto") -> list[str]:
    """Run every peft ``lora.Linear`` / ``lora.Conv2d`` of ``model`` through :func:`lora_linear` /
    :func:`lora_conv2d`. Parameters, state-dict keys and the optimizer's view are untouched.

    Layers our ops cannot express (several active adapters, DoRA, LoRA bias, mixed dtypes, conv
    geometry lora_A does not share) keep peft's forward at call time. Returns the patched names.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {STRATEGIES}, got {strategy!r}")
    names = []
    for name, module in _peft_lora_layers(model):
        module._hk_patched = True
        module._hk_strategy = strategy
        _install(module)
        names.append(name)
    return names


def unpatch_peft(model: torch.nn.Module) -> None:
    """Undo :func:`patch_peft` (merged layers stay merged until :func:`unmerge`)."""
    for _, module in _peft_lora_layers(model):
        module._hk_patched = False
        _uninstall_if_idle(module)


@torch.no_grad()
def merge(model: torch.nn.Module) -> list[str]:
    """Merge the active adapter into each base weight for inference: ``W + s B A`` accumulated in
    fp32, then cast once. The original weight tensor is kept, so :func:`unmerge` is bit-exact.
    Merged layers run only the base layer. Returns the merged layer names."""
    names = []
    for name, module in _peft_lora_layers(model):
        if getattr(module, "_hk_merged", False):
            continue
        adapter = _single_adapter(module)
        if adapter is None or module.use_dora.get(adapter, False) or getattr(module, "lora_bias", {}).get(adapter, False):
            raise ValueError(f"model: layer {name!r} has no single vanilla LoRA adapter active; cannot merge it exactly")
        if module.merged:
            raise ValueError(f"model: layer {name!r} is already merged by peft")
        base = module.get_base_layer()
        A, B = module.lora_A[adapter].weight, module.lora_B[adapter].weight
        module._hk_unmerged_weight = base.weight.data
        base.weight.data = _effective_weight(base.weight.data, A.to(base.weight.dtype), B.to(base.weight.dtype),
                                             float(module.scaling[adapter]))
        module._hk_merged = True
        _install(module)
        names.append(name)
    return names


@torch.no_grad()
def unmerge(model: torch.nn.Module) -> list[str]:
    """Restore the weights :func:`merge` replaced (the original tensors, bit for bit)."""
    names = []
    for name, module in _peft_lora_layers(model):
        if not getattr(module, "_hk_merged", False):
            continue
        module.get_base_layer().weight.data = module._hk_unmerged_weight
        del module._hk_unmerged_weight
        module._hk_merged = False
        _uninstall_if_idle(module)
        names.append(name)
    return names
