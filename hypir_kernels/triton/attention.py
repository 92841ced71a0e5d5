"""Flash-style attention in Triton: forward with online softmax saving the log-sum-exp, and the
FlashAttention-2 backward (``delta = rowsum(dO * O)``, then dK/dV per key block and dQ per query
block, no atomics, deterministic).

Every tile masks its rows, columns and head-dim lanes, so any ``Sq``, ``Sk >= 1`` and the head
dims in :data:`HEAD_DIMS` work (non-power-of-two head dims are padded to ``BLOCK_D`` lanes and
masked). Strides are arguments, so non-contiguous views (diffusers' ``[B, S, H, D]`` transposed
to ``[B, H, S, D]``) need no copy; only a head-dim stride other than 1 is copied, so that the
one compiled variant (unit head-dim stride) is the one that runs. fp32 inputs use exact fp32
dots (``input_precision="ieee"``), not TF32: fp32 callers asked for fp32 accuracy.

Block sizes come from a fixed table (:func:`block_config`) keyed by padded head dim and element
size, not from runtime autotuning: the table is what ``gpu_report`` compiles ahead of time for
sm_80 and sm_90 (DESIGN §3), so every configuration that can run has been compiled.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..attention_shapes import HEAD_DIMS
from . import AotConfig
from .util import bf16_dot_in_fp32, dot

_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
_TENSOR_ARGS = ("Q", "K", "V", "O", "DO", "DQ", "DK", "DV")  # kernel pointer args in the input dtype


@triton.jit
def _attn_fwd_kernel(
    Q, K, V, O, LSE,
    sm_scale, H, SQ, SK,
    sq_b, sq_h, sq_s, sq_d,
    sk_b, sk_h, sk_s, sk_d,
    sv_b, sv_h, sv_s, sv_d,
    so_b, so_h, so_s, so_d,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BF16_DOT_IN_FP32: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = rows < SQ
    d_ok = offs_d < HEAD_DIM

    q_ptrs = Q + b * sq_b + h * sq_h + rows[:, None].to(tl.int64) * sq_s + offs_d[None, :] * sq_d
    q = tl.load(q_ptrs, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    k_base = K + b * sk_b + h * sk_h
    v_base = V + b * sv_b + h * sv_h
    qk_scale = sm_scale * 1.4426950408889634  # scores in log2 units: exp(x) = exp2(x * log2 e)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for start_n in range(0, SK, BLOCK_N):
        cols = start_n + offs_n
        col_ok = cols < SK
        k_t = tl.load(k_base + cols[None, :].to(tl.int64) * sk_s + offs_d[:, None] * sk_d,
                      mask=d_ok[:, None] & col_ok[None, :], other=0.0)  # [BLOCK_D, BLOCK_N]
        s = dot(q, k_t, BF16_DOT_IN_FP32) * qk_scale
        s = tl.where(col_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: every key block has a valid column
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + cols[:, None].to(tl.int64) * sv_s + offs_d[None, :] * sv_d,
                    mask=col_ok[:, None] & d_ok[None, :], other=0.0)
        acc = acc * alpha[:, None] + dot(p.to(v.dtype), v, BF16_DOT_IN_FP32)
        m_i = m_new

    out = acc / l_i[:, None]
    o_ptrs = O + b * so_b + h * so_h + rows[:, None].to(tl.int64) * so_s + offs_d[None, :] * so_d
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
    lse = (m_i + tl.math.log2(l_i)) * 0.6931471805599453  # natural-log units
    tl.store(LSE + bh.to(tl.int64) * SQ + rows, lse, mask=row_ok)


@triton.jit
def _attn_bwd_preprocess_kernel(
    O, DO, DELTA, H, SQ,
    so_b, so_h, so_s, so_d,
    sdo_b, sdo_h, sdo_s, sdo_d,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """delta[b, h, i] = sum_d dO[i, d] * O[i, d] (fp32)."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (rows < SQ)[:, None] & (offs_d < HEAD_DIM)[None, :]
    r64 = rows[:, None].to(tl.int64)
    o = tl.load(O + b * so_b + h * so_h + r64 * so_s + offs_d[None, :] * so_d, mask=mask, other=0.0)
    do = tl.load(DO + b * sdo_b + h * sdo_h + r64 * sdo_s + offs_d[None, :] * sdo_d, mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + bh.to(tl.int64) * SQ + rows, delta, mask=rows < SQ)


@triton.jit
def _attn_bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV,
    sm_scale, H, SQ, SK,
    sq_b, sq_h, sq_s, sq_d,
    sk_b, sk_h, sk_s, sk_d,
    sv_b, sv_h, sv_s, sv_d,
    sdo_b, sdo_h, sdo_s, sdo_d,
    sdk_b, sdk_h, sdk_s, sdk_d,
    sdv_b, sdv_h, sdv_s, sdv_d,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BF16_DOT_IN_FP32: tl.constexpr,
):
    """One program per (key block, batch*head): loops over all query blocks. Works on the
    transposed scores P^T [BLOCK_N, BLOCK_M] so dK and dV accumulate without transposing them."""
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    col_ok = cols < SK
    d_ok = offs_d < HEAD_DIM
    c64 = cols[:, None].to(tl.int64)
    kv_mask = col_ok[:, None] & d_ok[None, :]
    k = tl.load(K + b * sk_b + h * sk_h + c64 * sk_s + offs_d[None, :] * sk_d, mask=kv_mask, other=0.0)
    v = tl.load(V + b * sv_b + h * sv_h + c64 * sv_s + offs_d[None, :] * sv_d, mask=kv_mask, other=0.0)
    q_base = Q + b * sq_b + h * sq_h
    do_base = DO + b * sdo_b + h * sdo_h
    stats = bh.to(tl.int64) * SQ
    qk_scale = sm_scale * 1.4426950408889634

    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for start_m in range(0, SQ, BLOCK_M):
        rows = start_m + offs_m
        row_ok = rows < SQ
        r64 = rows[None, :].to(tl.int64)
        q_t = tl.load(q_base + r64 * sq_s + offs_d[:, None] * sq_d, mask=d_ok[:, None] & row_ok[None, :], other=0.0)
        lse = tl.load(LSE + stats + rows, mask=row_ok, other=0.0)
        s_t = dot(k, q_t, BF16_DOT_IN_FP32) * qk_scale  # [BLOCK_N, BLOCK_M]
        p_t = tl.math.exp2(s_t - lse[None, :] * 1.4426950408889634)
        p_t = tl.where(col_ok[:, None] & row_ok[None, :], p_t, 0.0)
        do = tl.load(do_base + rows[:, None].to(tl.int64) * sdo_s + offs_d[None, :] * sdo_d,
                     mask=row_ok[:, None] & d_ok[None, :], other=0.0)
        dv += dot(p_t.to(do.dtype), do, BF16_DOT_IN_FP32)
        delta = tl.load(DELTA + stats + rows, mask=row_ok, other=0.0)
        dp_t = dot(v, tl.trans(do), BF16_DOT_IN_FP32)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += dot(ds_t.to(q_t.dtype), tl.trans(q_t), BF16_DOT_IN_FP32)

    dk *= sm_scale
    tl.store(DK + b * sdk_b + h * sdk_h + c64 * sdk_s + offs_d[None, :] * sdk_d, dk.to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + b * sdv_b + h * sdv_h + c64 * sdv_s + offs_d[None, :] * sdv_d, dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _attn_bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ,
    sm_scale, H, SQ, SK,
    sq_b, sq_h, sq_s, sq_d,
    sk_b, sk_h, sk_s, sk_d,
    sv_b, sv_h, sv_s, sv_d,
    sdo_b, sdo_h, sdo_s, sdo_d,
    sdq_b, sdq_h, sdq_s, sdq_d,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BF16_DOT_IN_FP32: tl.constexpr,
):
    """One program per (query block, batch*head): loops over all key blocks."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = rows < SQ
    d_ok = offs_d < HEAD_DIM
    r64 = rows[:, None].to(tl.int64)
    q_mask = row_ok[:, None] & d_ok[None, :]
    q = tl.load(Q + b * sq_b + h * sq_h + r64 * sq_s + offs_d[None, :] * sq_d, mask=q_mask, other=0.0)
    do = tl.load(DO + b * sdo_b + h * sdo_h + r64 * sdo_s + offs_d[None, :] * sdo_d, mask=q_mask, other=0.0)
    stats = bh.to(tl.int64) * SQ
    lse2 = tl.load(LSE + stats + rows, mask=row_ok, other=0.0) * 1.4426950408889634
    delta = tl.load(DELTA + stats + rows, mask=row_ok, other=0.0)
    k_base = K + b * sk_b + h * sk_h
    v_base = V + b * sv_b + h * sv_h
    qk_scale = sm_scale * 1.4426950408889634

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for start_n in range(0, SK, BLOCK_N):
        cols = start_n + offs_n
        col_ok = cols < SK
        kv_t_mask = d_ok[:, None] & col_ok[None, :]
        c64 = cols[None, :].to(tl.int64)
        k_t = tl.load(k_base + c64 * sk_s + offs_d[:, None] * sk_d, mask=kv_t_mask, other=0.0)
        v_t = tl.load(v_base + c64 * sv_s + offs_d[:, None] * sv_d, mask=kv_t_mask, other=0.0)
        s = dot(q, k_t, BF16_DOT_IN_FP32) * qk_scale
        p = tl.math.exp2(s - lse2[:, None])
        p = tl.where(row_ok[:, None] & col_ok[None, :], p, 0.0)
        dp = dot(do, v_t, BF16_DOT_IN_FP32)
        ds = p * (dp - delta[:, None])
        dq += dot(ds.to(k_t.dtype), tl.trans(k_t), BF16_DOT_IN_FP32)

    dq *= sm_scale
    tl.store(DQ + b * sdq_b + h * sdq_h + r64 * sdq_s + offs_d[None, :] * sdq_d, dq.to(DQ.dtype.element_ty), mask=q_mask)


# ---------------------------------------------------------------------------------------------
# Configuration table


@dataclass(frozen=True)
class Blocks:
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


def block_d(head_dim: int) -> int:
    return triton.next_power_of_2(head_dim)


# (BLOCK_M, BLOCK_N, num_warps, num_stages) by kernel, element class and padded head dim. Chosen
# so that every entry compiles for sm_80 and sm_90 without register spills (gpu_report checks)
# with Triton 3.8 and with Triton 3.6 (the H100 box's version, where four fp32 entries and the
# 16-bit backward at head dim 64 spilled 8-524 B). The 16-bit backward at head dim 64 takes
# 64x32 tiles (<= 176 registers under both versions; 64x64 needed 255 and spilled under 3.6):
# attention(backend="auto") runs SDPA on the GPU, so margin beats the last few % here.
_TABLE = {
    ("fwd", "16bit"): {32: (128, 64, 4, 3), 64: (128, 64, 4, 3), 128: (128, 64, 8, 3), 256: (64, 32, 8, 2)},
    ("bwd", "16bit"): {32: (64, 64, 4, 2), 64: (64, 32, 4, 2), 128: (64, 64, 8, 2), 256: (32, 32, 8, 1)},
    ("fwd", "fp32"): {32: (64, 32, 4, 2), 64: (64, 32, 8, 2), 128: (32, 16, 4, 2), 256: (32, 16, 8, 2)},
    ("bwd", "fp32"): {32: (32, 32, 4, 1), 64: (32, 32, 8, 1), 128: (16, 32, 4, 2), 256: (16, 16, 8, 1)},
}


def block_config(kernel: str, head_dim: int, dtype: torch.dtype) -> Blocks:
    """Tile sizes for ``kernel`` in ("fwd", "dkdv", "dq", "preprocess") at ``head_dim``/``dtype``.

    16-bit: FlashAttention-2-like tiles (128x64 forward) that shrink as the padded head dim grows;
    fp32 tiles are smaller (twice the bytes per element, and exact-fp32 dots). Head dims that are
    not multiples of 16 (40) get unaligned strides, so loads are not vectorised and cost more
    registers: their 16-bit query tile is halved.
    """
    bd = block_d(head_dim)
    if kernel == "preprocess":  # two [BLOCK_M, BLOCK_D] tiles, <= 32 elements per thread each
        return Blocks(min(128, (4096 if head_dim % 16 == 0 else 2048) // bd), 1, 4, 1)
    m, n, warps, stages = _TABLE[("fwd" if kernel == "fwd" else "bwd", "fp32" if dtype == torch.float32 else "16bit")][bd]
    if head_dim % 16 and dtype != torch.float32:
        m //= 2
    return Blocks(m, n, warps, stages)


# ---------------------------------------------------------------------------------------------
# Launchers


def _strides(t: torch.Tensor):
    return tuple(t.stride())


def _unit_head_stride(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t if t.stride(-1) == 1 else t.contiguous() for t in tensors]


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, out: torch.Tensor) -> torch.Tensor:
    """Write attention of ``q`` [B, H, Sq, D] over ``k``/``v`` [B, H, Sk, D] into ``out``;
    return the log-sum-exp [B, H, Sq] (fp32, natural log)."""
    q, k, v = _unit_head_stride(q, k, v)
    B, H, SQ, D = q.shape
    SK = k.shape[2]
    lse = torch.empty((B, H, SQ), dtype=torch.float32, device=q.device)
    if q.numel() == 0:
        return lse
    cfg = block_config("fwd", D, q.dtype)
    grid = (triton.cdiv(SQ, cfg.block_m), B * H)
    _attn_fwd_kernel[grid](
        q, k, v, out, lse, scale, H, SQ, SK,
        *_strides(q), *_strides(k), *_strides(v), *_strides(out),
        HEAD_DIM=D, BLOCK_D=block_d(D), BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        BF16_DOT_IN_FP32=bf16_dot_in_fp32(q.dtype),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return lse


def backward(grad_out, q, k, v, out, lse, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dq, dk, dv) of attention, laid out like q, k, v."""
    grad_out, q, k, v, out = _unit_head_stride(grad_out, q, k, v, out)
    B, H, SQ, D = q.shape
    SK = k.shape[2]
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    if q.numel() == 0:
        return dq, dk.zero_(), dv.zero_()
    delta = torch.empty((B, H, SQ), dtype=torch.float32, device=q.device)
    bd = block_d(D)
    pre = block_config("preprocess", D, q.dtype)
    _attn_bwd_preprocess_kernel[(triton.cdiv(SQ, pre.block_m), B * H)](
        out, grad_out, delta, H, SQ, *_strides(out), *_strides(grad_out),
        HEAD_DIM=D, BLOCK_D=bd, BLOCK_M=pre.block_m, num_warps=pre.num_warps,
    )
    kv = block_config("dkdv", D, q.dtype)
    _attn_bwd_dkdv_kernel[(triton.cdiv(SK, kv.block_n), B * H)](
        q, k, v, grad_out, lse, delta, dk, dv, scale, H, SQ, SK,
        *_strides(q), *_strides(k), *_strides(v), *_strides(grad_out), *_strides(dk), *_strides(dv),
        HEAD_DIM=D, BLOCK_D=bd, BLOCK_M=kv.block_m, BLOCK_N=kv.block_n, BF16_DOT_IN_FP32=bf16_dot_in_fp32(q.dtype),
        num_warps=kv.num_warps, num_stages=kv.num_stages,
    )
    qc = block_config("dq", D, q.dtype)
    _attn_bwd_dq_kernel[(triton.cdiv(SQ, qc.block_m), B * H)](
        q, k, v, grad_out, lse, delta, dq, scale, H, SQ, SK,
        *_strides(q), *_strides(k), *_strides(v), *_strides(grad_out), *_strides(dq),
        HEAD_DIM=D, BLOCK_D=bd, BLOCK_M=qc.block_m, BLOCK_N=qc.block_n, BF16_DOT_IN_FP32=bf16_dot_in_fp32(q.dtype),
        num_warps=qc.num_warps, num_stages=qc.num_stages,
    )
    return dq, dk, dv


# ---------------------------------------------------------------------------------------------
# Ahead-of-time configurations


def aot_configs() -> list[AotConfig]:
    """The variant every launch takes: head-dim strides 1 (the launcher guarantees it) and, as
    Triton specialises at run time, 16-divisible pointers and (for head dims that are multiples
    of 16) 16-divisible strides. One config per kernel x dtype x head dim."""
    import inspect

    configs = []
    for dtype, tname in _DTYPES.items():
        for head_dim in HEAD_DIMS:
            for kname, kernel in _KERNELS.items():
                cfg = block_config(kname, head_dim, dtype)
                params = list(inspect.signature(kernel.fn).parameters)
                constexprs = {"HEAD_DIM": head_dim, "BLOCK_D": block_d(head_dim), "BLOCK_M": cfg.block_m}
                if "BLOCK_N" in params:
                    constexprs.update(BLOCK_N=cfg.block_n, BF16_DOT_IN_FP32=False)
                constexprs.update({p: 1 for p in params if p.startswith("s") and p.endswith("_d")})
                sig, aligned = {}, []
                for p in params:
                    if p in constexprs:
                        sig[p] = "constexpr"
                    elif p in ("LSE", "DELTA"):
                        sig[p] = "*fp32"
                        aligned.append(p)
                    elif p in _TENSOR_ARGS:
                        sig[p] = f"*{tname}"
                        aligned.append(p)
                    elif p == "sm_scale":
                        sig[p] = "fp32"
                    else:
                        sig[p] = "i32"
                        if p.startswith("s") and p[-2:] in ("_b", "_h", "_s") and head_dim % 16 == 0:
                            aligned.append(p)
                configs.append(AotConfig(
                    name=f"attention_{kname}[{tname},D={head_dim},M={cfg.block_m},N={cfg.block_n},w={cfg.num_warps},s={cfg.num_stages}]",
                    kernel=kernel, signature=sig, constexprs=constexprs, divisible_by_16=tuple(aligned),
                    num_warps=cfg.num_warps, num_stages=cfg.num_stages,
                ))
    return configs


_KERNELS = {
    "fwd": _attn_fwd_kernel,
    "preprocess": _attn_bwd_preprocess_kernel,
    "dkdv": _attn_bwd_dkdv_kernel,
    "dq": _attn_bwd_dq_kernel,
}
