"""What the linear and conv LoRA ops share: argument checks, the dropout seed, and the
fp32-accumulated effective weight ``W + s B A`` (also what :func:`merge` writes). The dropout mask
and the torch arithmetic are :mod:`hypir_kernels.reference.lora`."""
from __future__ import annotations

import math
import numbers

import torch

from ..checks import check_seed, check_tensor
from .cost import STRATEGIES

DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def autocast_operands(x, weight, bias, lora_A, lora_B) -> tuple:
    """Under ``torch.autocast`` on x's device, the operands in the autocast dtype, as autocast casts
    ``F.linear``/``F.conv2d``'s (the casts are differentiable: fp32 master weights get their
    gradients); unchanged otherwise."""
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return x, weight, bias, lora_A, lora_B
    dtype = torch.get_autocast_dtype(device)
    return tuple(None if t is None else t.to(dtype) if t.is_floating_point() else t
                 for t in (x, weight, bias, lora_A, lora_B))


def check_common(x, weight, bias, lora_A, lora_B, scale, dropout_p, strategy, dims_w: int):
    check_tensor("x", x, dtypes=DTYPES)
    check_tensor("weight", weight, dims=dims_w, dtypes=DTYPES)
    check_tensor("lora_A", lora_A, dims=dims_w, dtypes=DTYPES)
    check_tensor("lora_B", lora_B, dims=dims_w, dtypes=DTYPES)
    if bias is not None:
        check_tensor("bias", bias, dims=1, dtypes=DTYPES)
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


def needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def dropout_seed(dropout_p: float, seed) -> int:
    if seed is not None:
        seed = check_seed("seed", seed)
    if dropout_p == 0:
        return 0
    if seed is None:  # from torch's default generator, so torch.manual_seed reproduces it
        return int(torch.randint(0, 2**31 - 1, (1,)).item())
    return seed


def effective_weight(weight: torch.Tensor, A: torch.Tensor, B: torch.Tensor, scale: float) -> torch.Tensor:
    """``W + scale * B A`` accumulated in fp32 (or fp64), cast to W's dtype; B and A are viewed as
    matrices ``[out, r]`` and ``[r, in * kh * kw]``."""
    acc = torch.float64 if weight.dtype == torch.float64 else torch.float32
    delta = B.reshape(B.shape[0], B.shape[1]).to(acc) @ A.reshape(A.shape[0], math.prod(A.shape[1:])).to(acc)
    return (weight.to(acc) + scale * delta.reshape(weight.shape)).to(weight.dtype)
