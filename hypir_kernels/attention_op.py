"""Scaled dot-product attention for diffusion UNets: self- and cross-attention (``Sq != Sk``), any
sequence lengths, the head dims diffusion models use, forward and backward.

Backends: ``triton`` (flash-style kernels in :mod:`hypir_kernels.triton.attention`; CUDA tensors,
or CPU tensors under ``TRITON_INTERPRET=1``) and ``reference``
(``torch.nn.functional.scaled_dot_product_attention``, which is what CPU tensors take: on the CPU
it is already a blocked flash kernel). The Triton path is the pair of library ops
``torch.ops.hypir_kernels.attention_forward`` (returns the output and the log-sum-exp) and
``torch.ops.hypir_kernels.attention_backward``, joined by autograd.
"""
from __future__ import annotations

import functools
import math
import numbers

import torch

from . import backend
from .checks import check_tensor
from .attention_shapes import HEAD_DIMS
from .reference import attention as ref

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


_FLOAT32_MAX = torch.finfo(torch.float32).max


def _check(q, k, v, scale) -> float:
    T = torch.Tensor
    if (isinstance(q, T) and isinstance(k, T) and isinstance(v, T) and q.dim() == 4 and k.dim() == 4
            and q.dtype in _DTYPES and k.dtype == q.dtype and v.dtype == q.dtype and k.device == q.device
            and v.device == q.device and k.shape == v.shape and k.shape[:2] == q.shape[:2]
            and k.shape[3] == q.shape[3] and k.shape[2] >= 1 and q.shape[3] in HEAD_DIMS):
        if scale is None:  # the common call: consistent tensors, default scale (host time matters)
            return 1.0 / math.sqrt(q.shape[3])
    else:
        _explain_bad_tensors(q, k, v)
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) or scale == 0:
        raise ValueError(f"scale: expected a finite non-zero number or None, got {scale!r}")
    if abs(scale) > _FLOAT32_MAX:  # the kernels scale in float32: it would become inf
        raise ValueError(f"scale: {scale!r} overflows float32 (max {_FLOAT32_MAX:g})")
    return float(scale)


def _explain_bad_tensors(q, k, v) -> None:
    """The ValueError naming what is wrong with ``q``, ``k``, ``v`` (called when the fast check fails)."""
    check_tensor("q", q, dims=4, dtypes=_DTYPES)
    check_tensor("k", k, dims=4, dtypes=_DTYPES)
    check_tensor("v", v, dims=4, dtypes=_DTYPES)
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise ValueError(f"{name}: expected the dtype of q ({q.dtype}), got {t.dtype}")
        if t.device != q.device:
            raise ValueError(f"{name}: expected the device of q ({q.device}), got {t.device}")
        for axis, what in ((0, "batch"), (1, "heads"), (3, "head dim")):
            if t.shape[axis] != q.shape[axis]:
                raise ValueError(
                    f"{name}: {what} (dim {axis}) must match q's {q.shape[axis]}; got shape {tuple(t.shape)} "
                    f"for q {tuple(q.shape)} (expected q [B, H, Sq, D], k and v [B, H, Sk, D])"
                )
    if v.shape[2] != k.shape[2]:
        raise ValueError(f"v: sequence length (dim 2) must match k's {k.shape[2]}, got shape {tuple(v.shape)}")
    if k.shape[2] < 1:
        raise ValueError(f"k: needs at least one key (Sk >= 1), got shape {tuple(k.shape)}")
    head_dim = q.shape[3]
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"q: head dim (dim 3) must be one of {HEAD_DIMS}, got {head_dim}")
    raise AssertionError("the fast check rejected tensors the detailed checks accept")  # pragma: no cover


# Per-call backend choice. "auto" picks per (device capability, dtype, head dim, token counts,
# training); the other names force one path. SDPA's kernels are chosen through
# torch.nn.attention.sdpa_kernel with a priority list, so a backend that cannot take a shape
# falls through to the next one instead of failing.
ATTENTION_BACKENDS = ("auto", "triton", "sdpa", "sdpa_cudnn", "sdpa_flash", "sdpa_efficient", "sdpa_math")
_CUDNN_HEAD_DIMS = (64, 128)
_LONG = 4096  # tokens from which cuDNN attention won every measured shape on the H100
_SHORT = 256  # at or below this many tokens on either side, memory-efficient SDPA won most forward shapes


def choose_attention_backend(device_type: str, capability: tuple[int, int] | None, dtype: torch.dtype, head_dim: int,
                             q_len: int, k_len: int, training: bool) -> str:
    """The ``auto`` rule, from the H100 run of 2026-11-23 (``shared/gpu-runs``; bf16, SD2.1 shapes,
    B 2, D 64). Our Triton kernel lost every measured shape to the best SDPA backend there
    (0.32-0.89x; at 16384 tokens it beat flash by 1.19x but cuDNN beat it by 1.4x), so ``auto``
    never picks it; ``backend="triton"`` still runs it.

    * CPU: ``"sdpa"`` (PyTorch's blocked flash kernel on the CPU).
    * CUDA, 16-bit, sm_90+, head dim 64/128, both sides >= 4096 tokens: ``"sdpa_cudnn"``
      (1.3-1.6x flash fwd and fwd+bwd at 4096 and 16384 tokens).
    * CUDA, 16-bit, either side <= 256 tokens (cross-attention to 77 text tokens, the deepest
      levels): ``"sdpa_efficient"``; otherwise ``"sdpa_flash"``.
    * CUDA float32/float64 (no flash or cuDNN kernel): ``"sdpa_efficient"``.
    """
    if device_type != "cuda":
        return "sdpa"
    if dtype not in (torch.float16, torch.bfloat16):
        return "sdpa_efficient"
    if capability is not None and capability >= (9, 0) and head_dim in _CUDNN_HEAD_DIMS and min(q_len, k_len) >= _LONG:
        return "sdpa_cudnn"
    if min(q_len, k_len) <= _SHORT:
        return "sdpa_efficient"
    return "sdpa_flash"


def _sdpa_priority(name: str) -> list:
    from torch.nn.attention import SDPBackend as B

    first = {"sdpa_cudnn": B.CUDNN_ATTENTION, "sdpa_flash": B.FLASH_ATTENTION,
             "sdpa_efficient": B.EFFICIENT_ATTENTION, "sdpa_math": B.MATH}[name]
    return [first] + [b for b in (B.FLASH_ATTENTION, B.EFFICIENT_ATTENTION, B.CUDNN_ATTENTION, B.MATH) if b != first]


@torch.compiler.assume_constant_result  # dynamo in torch 2.11 cannot trace the ContextVar behind use_backend
def _forced_attention_backend(device_type: str) -> str | None:
    if backend.forced_backend() is None:
        return None
    return "triton" if backend.select(backend.REGISTRY["attention"], device_type) == "triton" else "sdpa"


def attention_backend(q: torch.Tensor, k: torch.Tensor, backend: str = "auto") -> str:
    """The backend :func:`attention` uses for these tensors: ``"triton"``, ``"sdpa"`` (PyTorch
    picks) or ``"sdpa_<kernel>"`` (that SDPA kernel first). Training = gradients enabled and a
    tensor requiring them."""
    check_tensor("q", q, dims=4)
    check_tensor("k", k, dims=4)
    return _backend_for(q, k, backend)


def _backend_for(q: torch.Tensor, k: torch.Tensor, backend: str) -> str:
    """:func:`attention_backend` for tensors already checked."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"backend: expected one of {ATTENTION_BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    forced = _forced_attention_backend(q.device.type)
    if forced is not None:  # use_backend(...) / HYPIR_KERNELS_BACKEND
        return forced
    if q.device.type != "cuda":
        return "sdpa"  # what choose_attention_backend answers off CUDA, without its inputs
    training = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
    return choose_attention_backend("cuda", _capability(q.device.index), q.dtype, q.shape[-1], q.shape[-2], k.shape[-2],
                                    training)


@torch.compiler.assume_constant_result  # a constant of the device, not something to trace
@functools.lru_cache(maxsize=None)
def _capability(index: int | None) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
              backend: str = "auto") -> torch.Tensor:
    """``softmax(q k^T * scale) v`` per batch and head.

    Args:
        q: ``[B, H, Sq, D]``; any strides (diffusers' transposed ``[B, S, H, D]`` views included).
        k, v: ``[B, H, Sk, D]``, same dtype and device as ``q``; ``Sk >= 1``, ``Sk`` may differ
            from ``Sq`` (cross-attention, e.g. 77 text tokens).
        scale: softmax scale, default ``1 / sqrt(D)``.
        backend: ``"auto"`` (see :func:`choose_attention_backend`; :func:`attention_backend`
            tells the choice), or one of :data:`ATTENTION_BACKENDS` to force it.

    ``D`` must be in :data:`HEAD_DIMS`. dtypes float16, bfloat16, float32 (accumulation in fp32);
    float64 on the reference backend only. Returns ``[B, H, Sq, D]`` in ``q``'s dtype; on the
    Triton path its memory is laid out ``[B, Sq, H, D]`` so that merging heads afterwards
    (``transpose(1, 2).reshape(B, Sq, H * D)``) is free.
    """
    scale = _check(q, k, v, scale)
    name = _backend_for(q, k, backend)
    if q.numel() == 0:  # B, H or Sq = 0: nothing to attend (torch 2.11's CPU SDPA dies of SIGFPE with H = 0)
        return torch.zeros_like(q) + 0 * (q.sum() + k.sum() + v.sum())  # empty, still on the autograd graph
    if name == "triton":
        return _triton(q, k, v, scale)
    if name == "sdpa":
        return ref.attention(q, k, v, scale)
    from torch.nn.attention import sdpa_kernel

    with sdpa_kernel(_sdpa_priority(name), set_priority=True):
        return ref.attention(q, k, v, scale)


@torch.compiler.assume_constant_result  # dynamo in torch 2.11 cannot trace importlib's find_spec
def _triton_unavailable(device_type: str) -> str:
    ok, why = backend.runnable(backend.REGISTRY["attention"], "triton", device_type)
    return "" if ok else why


def _triton(q, k, v, scale):
    why = _triton_unavailable(q.device.type)
    if why:
        raise ValueError(f"backend: 'triton' cannot run here: {why}")
    if q.dtype not in _TRITON_DTYPES:
        raise ValueError(f"q: the triton backend supports float16, bfloat16 and float32, got {q.dtype}")
    return torch.ops.hypir_kernels.attention_forward(q, k, v, scale)[0]


backend.register("attention", triton=_triton, reference=ref.attention)


def _check_triton_args(q, k, v, scale) -> None:
    """The library ops are public (torch.ops.hypir_kernels.*): they check their own arguments,
    so a direct call with inconsistent shapes raises instead of reading out of bounds."""
    _check(q, k, v, scale)
    if q.dtype not in _TRITON_DTYPES:
        raise ValueError(f"q: the triton kernels support float16, bfloat16 and float32, got {q.dtype}")
    ok, why = backend.runnable(backend.REGISTRY["attention"], "triton", q.device.type)
    if not ok:
        raise ValueError(f"q: {why}")


def _empty_output(q: torch.Tensor) -> torch.Tensor:
    B, H, SQ, D = q.shape
    return q.new_empty((B, SQ, H, D)).transpose(1, 2)


@torch.library.custom_op("hypir_kernels::attention_forward", mutates_args=())
def _attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton forward: (output [B, H, Sq, D], log-sum-exp [B, H, Sq] fp32)."""
    _check_triton_args(q, k, v, scale)
    from .triton import attention as kernels

    out = _empty_output(q)
    lse = kernels.forward(q, k, v, scale, out)
    return out, lse


@_attention_forward.register_fake
def _(q, k, v, scale):
    B, H, SQ, _ = q.shape
    return _empty_output(q), q.new_empty((B, H, SQ), dtype=torch.float32)


@torch.library.custom_op("hypir_kernels::attention_backward", mutates_args=())
def _attention_backward(
    grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton backward: (dq, dk, dv)."""
    _check_triton_args(q, k, v, scale)
    from .triton import attention as kernels

    for name, t in (("grad_out", grad_out), ("out", out)):
        check_tensor(name, t, dims=4, dtypes=(q.dtype,), device=q.device)
        if t.shape != q.shape:
            raise ValueError(f"{name}: expected q's shape {tuple(q.shape)}, got {tuple(t.shape)}")
    check_tensor("lse", lse, dims=3, dtypes=(torch.float32,), device=q.device)
    if tuple(lse.shape) != tuple(q.shape[:3]):
        raise ValueError(f"lse: expected shape {tuple(q.shape[:3])} ([B, H, Sq]), got {tuple(lse.shape)}")
    return kernels.backward(grad_out, q, k, v, out, lse, scale)


@_attention_backward.register_fake
def _(grad_out, q, k, v, out, lse, scale):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output):
    q, k, v, scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.scale = scale
    ctx.mark_non_differentiable(lse)


def _backward(ctx, grad_out, _grad_lse):
    q, k, v, out, lse = ctx.saved_tensors
    dq, dk, dv = torch.ops.hypir_kernels.attention_backward(grad_out, q, k, v, out, lse, ctx.scale)
    return dq, dk, dv, None


_attention_forward.register_autograd(_backward, setup_context=_setup_context)
