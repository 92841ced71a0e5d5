"""Helpers shared by the Triton kernels."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import interpreter_active


@triton.jit
def dot(a, b, BF16_IN_FP32: tl.constexpr):
    """fp32-accumulated ``a @ b``; fp32 operands multiply exactly (no TF32). ``BF16_IN_FP32`` is
    set only under the interpreter, whose ``tl.dot`` multiplies the raw bits of bfloat16 operands
    (Triton 3.8): it upcasts them first, which gives the same products (bf16 x bf16 is exact in
    fp32). Compiled kernels never set it."""
    if BF16_IN_FP32:
        if a.dtype == tl.bfloat16:
            a = a.to(tl.float32)
        if b.dtype == tl.bfloat16:
            b = b.to(tl.float32)
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def store_rounded(ptr, val, mask):
    """Store fp32 ``val`` in the pointer's dtype, rounding to nearest even. bfloat16 is rounded
    with integer ops because the Triton interpreter truncates (compiled code rounds anyway)."""
    if ptr.dtype.element_ty == tl.bfloat16:
        bits = val.to(tl.uint32, bitcast=True)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        rounded = tl.where(val != val, 0x7FC0, rounded)  # keep nan a (quiet) nan
        tl.store(ptr, rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True), mask=mask)
    else:
        tl.store(ptr, val.to(ptr.dtype.element_ty, fp_downcast_rounding="rtne"), mask=mask)


def bf16_dot_in_fp32(dtype: torch.dtype) -> bool:
    """The ``BF16_IN_FP32`` argument of :func:`dot` for kernels on ``dtype`` in this process."""
    return dtype == torch.bfloat16 and interpreter_active()
