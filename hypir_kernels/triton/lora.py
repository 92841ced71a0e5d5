"""Triton GEMM for the activation strategy of fused LoRA on linear layers.

One kernel, specialised by constexpr flags, computes

    C[M, N] = X1 @ Y1  (+ scale2 * drop?(X2 @ Y2))  (+ bias[N])

with fp32 accumulation. The LoRA forward and backward are four launches of it (``N`` tokens,
``x [N, in]``, ``W [out, in]``, ``A [r, in]``, ``B [out, r]``, ``s`` the scale):

* down:   ``h = drop(x) @ A^T``                    (DROP=1: mask on X1's elements)
* main:   ``y = x @ W^T + s * (h @ B^T) + b``      (the rank-r product accumulated into the base
                                                   GEMM's result before the single store)
* dX:     ``dx = dy @ W + drop(g @ A)``, ``g = s * dy @ B``   (DROP=3: mask on the second product)
* dA:     ``dA = g^T @ drop(x)``                   (DROP=2: mask on Y1's elements)

Dropout on the LoRA branch is regenerated in each launch from Philox (seed, token, feature):
``keep(t, f) = uniform(philox(seed, f, t)) >= p``, scaled by ``1 / (1 - p)``; no mask tensor is
stored. Transposes are stride swaps, so no operand is copied.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import AotConfig
from .util import bf16_dot_in_fp32, dot, store_rounded

_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
# The launches above: (name, DROP, HAS_SECOND, HAS_BIAS, strides that are 1 because the launcher
# passes contiguous x, W, A, B, dy and g). Triton specialises unit strides at run time, so these
# are the variants that run and the ones compiled ahead of time.
VARIANTS = (
    ("down", 0, False, False, ("sx1_k", "sy1_k", "sc_n")),
    ("down_dropout", 1, False, False, ("sx1_k", "sy1_k", "sc_n")),
    ("main", 0, True, False, ("sx1_k", "sy1_k", "sx2_k", "sy2_k", "sc_n")),
    ("main_bias", 0, True, True, ("sx1_k", "sy1_k", "sx2_k", "sy2_k", "sc_n")),
    ("dx", 0, True, False, ("sx1_k", "sy1_n", "sx2_k", "sy2_n", "sc_n")),
    ("dx_dropout", 3, True, False, ("sx1_k", "sy1_n", "sx2_k", "sy2_n", "sc_n")),
    ("da", 0, False, False, ("sx1_m", "sy1_n", "sc_n")),
    ("da_dropout", 2, False, False, ("sx1_m", "sy1_n", "sc_n")),
)
_POINTERS = ("X1", "Y1", "X2", "Y2", "BIAS", "C")


@triton.jit
def _keep(seed, token, feature, p):
    """Dropout keep decision for (token, feature) blocks; Philox with two 32-bit counters."""
    zero = tl.zeros_like(token).to(tl.uint32)
    r, _, _, _ = tl.random.philox(seed, feature.to(tl.uint32), token.to(tl.uint32), zero, zero)
    return tl.random.uint_to_uniform_float(r) >= p


@triton.jit
def lora_gemm_kernel(
    X1, Y1, X2, Y2, BIAS, C,
    M, N, K1, K2,
    sx1_m, sx1_k, sy1_k, sy1_n, sx2_m, sx2_k, sy2_k, sy2_n, sc_m, sc_n,
    scale2, seed, p,
    DROP: tl.constexpr, HAS_SECOND: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BF16_DOT_IN_FP32: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    row_ok = rows < M
    col_ok = cols < N
    r64 = rows[:, None].to(tl.int64)
    c64 = cols[None, :].to(tl.int64)
    inv_keep = 1.0 / (1.0 - p)

    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K1, BLOCK_K):
        ks = k0 + offs_k
        k_ok = ks < K1
        a = tl.load(X1 + r64 * sx1_m + ks[None, :].to(tl.int64) * sx1_k, mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(Y1 + ks[:, None].to(tl.int64) * sy1_k + c64 * sy1_n, mask=k_ok[:, None] & col_ok[None, :], other=0.0)
        if DROP == 1:  # X1 = x [tokens, features]
            a = tl.where(_keep(seed, rows[:, None], ks[None, :], p), a * inv_keep, 0.0).to(a.dtype)
        if DROP == 2:  # Y1 = x [tokens, features]
            b = tl.where(_keep(seed, ks[:, None], cols[None, :], p), b * inv_keep, 0.0).to(b.dtype)
        acc += dot(a, b, BF16_DOT_IN_FP32)

    if HAS_SECOND:
        acc2 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k0 in range(0, K2, BLOCK_K):
            ks = k0 + offs_k
            k_ok = ks < K2
            a = tl.load(X2 + r64 * sx2_m + ks[None, :].to(tl.int64) * sx2_k, mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            b = tl.load(Y2 + ks[:, None].to(tl.int64) * sy2_k + c64 * sy2_n, mask=k_ok[:, None] & col_ok[None, :], other=0.0)
            acc2 += dot(a, b, BF16_DOT_IN_FP32)
        if DROP == 3:  # C = dx [tokens, features]
            acc2 = tl.where(_keep(seed, rows[:, None], cols[None, :], p), acc2 * inv_keep, 0.0)
        acc += scale2 * acc2

    if HAS_BIAS:
        acc += tl.load(BIAS + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    store_rounded(C + r64 * sc_m + c64 * sc_n, acc, row_ok[:, None] & col_ok[None, :])


def blocks(dtype: torch.dtype) -> tuple[int, int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages); fixed, compiled ahead of time. 16-bit:
    8 warps, 2 stages -- <= 255 registers without spills under Triton 3.6 and 3.8 on sm_80/sm_90
    (4 warps / 3 stages spilled 16 B in the dropout variant under 3.6)."""
    if dtype == torch.float32:
        return 64, 64, 16, 8, 2
    return 64, 64, 32, 8, 2


def gemm(x1, y1, x2=None, y2=None, bias=None, scale2: float = 1.0, drop: int = 0, seed: int = 0, p: float = 0.0,
         out: torch.Tensor | None = None) -> torch.Tensor:
    """``x1 @ y1 (+ scale2 * drop?(x2 @ y2)) (+ bias)`` for 2-D operands (any strides)."""
    M, K1 = x1.shape
    N = y1.shape[1]
    has_second = x2 is not None
    if out is None:
        out = torch.empty((M, N), dtype=x1.dtype, device=x1.device)
    if M == 0 or N == 0:
        return out
    x2_, y2_ = (x2, y2) if has_second else (x1, y1)
    bm, bn, bk, warps, stages = blocks(x1.dtype)
    grid = (triton.cdiv(M, bm), triton.cdiv(N, bn))
    lora_gemm_kernel[grid](
        x1, y1, x2_, y2_, bias if bias is not None else out, out,
        M, N, K1, x2.shape[1] if has_second else 0,
        *x1.stride(), *y1.stride(), *x2_.stride(), *y2_.stride(), *out.stride(),
        float(scale2), int(seed), float(p),
        DROP=drop, HAS_SECOND=has_second, HAS_BIAS=bias is not None,
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, BF16_DOT_IN_FP32=bf16_dot_in_fp32(x1.dtype),
        num_warps=warps, num_stages=stages,
    )
    return out


def aot_configs() -> list[AotConfig]:
    import inspect

    params = list(inspect.signature(lora_gemm_kernel.fn).parameters)
    configs = []
    for dtype, tname in _DTYPES.items():
        bm, bn, bk, warps, stages = blocks(dtype)
        for name, drop, second, has_bias, unit_strides in VARIANTS:
            constexprs = dict(DROP=drop, HAS_SECOND=second, HAS_BIAS=has_bias, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
                              BF16_DOT_IN_FP32=False)
            constexprs.update({s: 1 for s in unit_strides})
            sig = {}
            for param in params:
                if param in constexprs:
                    sig[param] = "constexpr"
                elif param in _POINTERS:
                    sig[param] = f"*{tname}"
                elif param in ("scale2", "p"):
                    sig[param] = "fp32"
                elif param == "seed":
                    sig[param] = "i64"
                else:
                    sig[param] = "i32"
            configs.append(AotConfig(
                name=f"lora_gemm_{name}[{tname},M={bm},N={bn},K={bk},w={warps},s={stages}]",
                kernel=lora_gemm_kernel, signature=sig, constexprs=constexprs, divisible_by_16=_POINTERS,
                num_warps=warps, num_stages=stages,
            ))
    return configs
