"""Triton GroupNorm with an optional fused SiLU, forward and backward (same arithmetic as
``csrc/cpu/group_norm_lanes.inc``: statistics from fp32 sums of ``x - K``, K the group's first
value). One program per (sample, group) walks the group's channels in blocks of ``BLOCK_C`` and
its pixels in blocks of ``BLOCK_L``, twice: statistics, then the output. x is read through its
strides as ``[N, C, L]``, so NCHW and channels-last inputs both work in place.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import AotConfig
from ..reference.group_norm import is_channels_last
from .util import store_rounded

TILE = 2048  # elements per block: BLOCK_C * BLOCK_L
BLOCK_CS = (8, 32)  # channels per block: 8 for up to 8 channels per group, else 32
NUM_WARPS = 8
_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


@triton.jit
def _tile(ptr, c, l, CPG, L, s_c, s_l):
    """Offsets and mask of channels ``c`` [BLOCK_C] x pixels ``l`` [BLOCK_L] of one group."""
    mask = (c < CPG)[:, None] & (l < L)[None, :]
    offsets = c.to(tl.int64)[:, None] * s_c + l.to(tl.int64)[None, :] * s_l
    return ptr + offsets, mask


@triton.jit
def _channel_affine(w_ptr, b_ptr, c0, c, CPG, mean, rstd):
    """Per channel of the block: weight w, and z = x * a + shift (a = rstd w, shift = b - mean a)."""
    w = tl.load(w_ptr + c0 + c, mask=c < CPG, other=1.0).to(tl.float32)
    b = tl.load(b_ptr + c0 + c, mask=c < CPG, other=0.0).to(tl.float32)
    a = rstd * w
    return w, a, b - mean * a


@triton.jit
def group_norm_forward_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr,
    C, L, G, CPG, s_n, s_c, s_l, eps,
    SILU: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid = tl.program_id(0)  # n * G + g
    n = pid // G
    c0 = (pid % G) * CPG
    base = n.to(tl.int64) * s_n + c0.to(tl.int64) * s_c
    cs = tl.arange(0, BLOCK_C)
    ls = tl.arange(0, BLOCK_L)
    shift = tl.load(x_ptr + base).to(tl.float32)
    s1 = tl.zeros([BLOCK_C, BLOCK_L], dtype=tl.float32)
    s2 = tl.zeros([BLOCK_C, BLOCK_L], dtype=tl.float32)
    for cb in range(0, CPG, BLOCK_C):
        for lb in range(0, L, BLOCK_L):
            ptrs, mask = _tile(x_ptr + base, cb + cs, lb + ls, CPG, L, s_c, s_l)
            d = tl.where(mask, tl.load(ptrs, mask=mask, other=0.0).to(tl.float32) - shift, 0.0)
            s1 += d
            s2 += d * d
    count = (CPG * L).to(tl.float32)
    m = tl.sum(tl.sum(s1, axis=1), axis=0) / count
    var = tl.maximum(tl.sum(tl.sum(s2, axis=1), axis=0) / count - m * m, 0.0)
    mean = shift + m
    rstd = 1.0 / tl.sqrt(var + eps)
    tl.store(mean_ptr + pid, mean)
    tl.store(rstd_ptr + pid, rstd)
    for cb in range(0, CPG, BLOCK_C):
        c = cb + cs
        w, a, shift_c = _channel_affine(w_ptr, b_ptr, c0, c, CPG, mean, rstd)
        for lb in range(0, L, BLOCK_L):
            ptrs, mask = _tile(x_ptr + base, c, lb + ls, CPG, L, s_c, s_l)
            z = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32) * a[:, None] + shift_c[:, None]
            if SILU:
                z = z / (1.0 + tl.exp(-z))
            out, _ = _tile(y_ptr + base, c, lb + ls, CPG, L, s_c, s_l)
            store_rounded(out, z, mask)


@triton.jit
def _grad_z(x, dy, a, b, SILU: tl.constexpr):
    """dL/dz for z = x * a + b, y = silu(z) (or y = z)."""
    if SILU:
        z = x * a[:, None] + b[:, None]
        s = 1.0 / (1.0 + tl.exp(-z))
        dy = dy * s * (1.0 + z * (1.0 - s))
    return dy


@triton.jit
def group_norm_backward_kernel(
    dy_ptr, x_ptr, w_ptr, b_ptr, mean_ptr, rstd_ptr, dx_ptr, dsum_ptr, dxsum_ptr,
    C, L, G, CPG, s_n, s_c, s_l,
    SILU: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr,
):
    """dx, and per (sample, channel) sums of dz and dz * xhat (dsum, dxsum: fp32 [N, C]) that the
    launcher reduces over samples into the bias and weight gradients."""
    pid = tl.program_id(0)
    n = pid // G
    c0 = (pid % G) * CPG
    base = n.to(tl.int64) * s_n + c0.to(tl.int64) * s_c
    cs = tl.arange(0, BLOCK_C)
    ls = tl.arange(0, BLOCK_L)
    mean = tl.load(mean_ptr + pid)
    rstd = tl.load(rstd_ptr + pid)
    g1 = 0.0  # sums over the group of dz * w and dz * w * xhat
    g2 = 0.0
    for cb in range(0, CPG, BLOCK_C):
        c = cb + cs
        w, a, shift_c = _channel_affine(w_ptr, b_ptr, c0, c, CPG, mean, rstd)
        sdz = tl.zeros([BLOCK_C, BLOCK_L], dtype=tl.float32)
        sdzx = tl.zeros([BLOCK_C, BLOCK_L], dtype=tl.float32)
        for lb in range(0, L, BLOCK_L):
            xp, mask = _tile(x_ptr + base, c, lb + ls, CPG, L, s_c, s_l)
            dyp, _ = _tile(dy_ptr + base, c, lb + ls, CPG, L, s_c, s_l)
            x = tl.load(xp, mask=mask, other=0.0).to(tl.float32)
            dz = tl.where(mask, _grad_z(x, tl.load(dyp, mask=mask, other=0.0).to(tl.float32), a, shift_c, SILU), 0.0)
            sdz += dz
            sdzx += dz * (x - mean) * rstd
        sum_dz = tl.sum(sdz, axis=1)
        sum_dzx = tl.sum(sdzx, axis=1)
        tl.store(dsum_ptr + n * C + c0 + c, sum_dz, mask=c < CPG)
        tl.store(dxsum_ptr + n * C + c0 + c, sum_dzx, mask=c < CPG)
        g1 += tl.sum(sum_dz * w, axis=0)
        g2 += tl.sum(sum_dzx * w, axis=0)
    count = (CPG * L).to(tl.float32)
    k1 = g1 / count
    k2 = g2 / count
    for cb in range(0, CPG, BLOCK_C):
        c = cb + cs
        w, a, shift_c = _channel_affine(w_ptr, b_ptr, c0, c, CPG, mean, rstd)
        for lb in range(0, L, BLOCK_L):
            xp, mask = _tile(x_ptr + base, c, lb + ls, CPG, L, s_c, s_l)
            dyp, _ = _tile(dy_ptr + base, c, lb + ls, CPG, L, s_c, s_l)
            x = tl.load(xp, mask=mask, other=0.0).to(tl.float32)
            dz = _grad_z(x, tl.load(dyp, mask=mask, other=0.0).to(tl.float32), a, shift_c, SILU)
            dx = rstd * (dz * w[:, None] - k1 - (x - mean) * rstd * k2)
            out, _ = _tile(dx_ptr + base, c, lb + ls, CPG, L, s_c, s_l)
            store_rounded(out, dx, mask)


def _block_c(cpg: int) -> int:
    return BLOCK_CS[0] if cpg <= BLOCK_CS[0] else BLOCK_CS[1]


def _layout(x: torch.Tensor) -> tuple[torch.Tensor, int, int, int]:
    """x in a layout the kernels read ([N, C, L] through strides), and (s_n, s_c, s_l)."""
    N, C = x.shape[:2]
    if not is_channels_last(x):
        x = x.contiguous()
    if x.is_contiguous():
        L = x.numel() // (N * C) if N * C else 0
        return x, C * L, L, 1
    return x, x.stride(0), 1, C  # channels-last: [N, *spatial, C] in memory


def _affine(t, C, fill, device):
    return torch.full((C,), fill, dtype=torch.float32, device=device) if t is None else t.float().contiguous()


def forward(x, weight, bias, groups, eps, silu):
    """(y in x's layout, mean [N, G] fp32, rstd [N, G] fp32)."""
    if x.dtype not in _DTYPES:
        raise ValueError(f"x: the triton backend supports {list(_DTYPES)}, got {x.dtype}")
    x, s_n, s_c, s_l = _layout(x)
    N, C = x.shape[:2]
    y = torch.empty_like(x)
    mean = torch.empty((N, groups), dtype=torch.float32, device=x.device)
    rstd = torch.empty_like(mean)
    if x.numel() == 0:
        return y, mean.zero_(), rstd.zero_()
    L = x.numel() // (N * C)
    block_c = _block_c(C // groups)
    group_norm_forward_kernel[(N * groups,)](
        x, _affine(weight, C, 1.0, x.device), _affine(bias, C, 0.0, x.device), y, mean, rstd,
        C, L, groups, C // groups, s_n, s_c, s_l, eps,
        SILU=silu, BLOCK_C=block_c, BLOCK_L=TILE // block_c, num_warps=NUM_WARPS,
    )
    return y, mean, rstd


def backward(grad, x, weight, bias, mean, rstd, groups, silu):
    """(dx in x's layout, dweight, dbias); the last two empty for a None weight/bias."""
    if x.dtype not in _DTYPES:
        raise ValueError(f"x: the triton backend supports {list(_DTYPES)}, got {x.dtype}")
    x, s_n, s_c, s_l = _layout(x)
    grad = grad.contiguous() if x.is_contiguous() else torch.empty_like(x).copy_(grad)  # grad in x's layout
    N, C = x.shape[:2]
    dx = torch.empty_like(x)
    dsum = torch.zeros((N, C), dtype=torch.float32, device=x.device)
    dxsum = torch.zeros_like(dsum)
    if x.numel() > 0:
        L = x.numel() // (N * C)
        block_c = _block_c(C // groups)
        group_norm_backward_kernel[(N * groups,)](
            grad, x, _affine(weight, C, 1.0, x.device), _affine(bias, C, 0.0, x.device), mean.contiguous(),
            rstd.contiguous(), dx, dsum, dxsum,
            C, L, groups, C // groups, s_n, s_c, s_l,
            SILU=silu, BLOCK_C=block_c, BLOCK_L=TILE // block_c, num_warps=NUM_WARPS,
        )
    dw = dxsum.sum(0).to(weight.dtype) if weight is not None else x.new_empty((0,))
    db = dsum.sum(0).to(bias.dtype) if bias is not None else x.new_empty((0,))
    return dx, dw, db


def aot_configs() -> list[AotConfig]:
    configs = []
    for dtype, tname in _DTYPES.items():
        for silu in (True, False):
            for block_c in BLOCK_CS:
                block_l = TILE // block_c
                ints = {k: "i32" for k in ("C", "L", "G", "CPG")}
                strides = {k: "i64" for k in ("s_n", "s_c", "s_l")}
                meta = {"SILU": "constexpr", "BLOCK_C": "constexpr", "BLOCK_L": "constexpr"}
                constexprs = {"SILU": silu, "BLOCK_C": block_c, "BLOCK_L": block_l}
                tag = f"{tname},silu={int(silu)},BLOCK_C={block_c}"
                fwd = {"x_ptr": f"*{tname}", "w_ptr": "*fp32", "b_ptr": "*fp32", "y_ptr": f"*{tname}",
                       "mean_ptr": "*fp32", "rstd_ptr": "*fp32", **ints, **strides, "eps": "fp32", **meta}
                bwd = {"dy_ptr": f"*{tname}", "x_ptr": f"*{tname}", "w_ptr": "*fp32", "b_ptr": "*fp32",
                       "mean_ptr": "*fp32", "rstd_ptr": "*fp32", "dx_ptr": f"*{tname}", "dsum_ptr": "*fp32",
                       "dxsum_ptr": "*fp32", **ints, **strides, **meta}
                configs.append(AotConfig(f"group_norm_forward[{tag}]", group_norm_forward_kernel, fwd, constexprs,
                                         num_warps=NUM_WARPS))
                configs.append(AotConfig(f"group_norm_backward[{tag}]", group_norm_backward_kernel, bwd, constexprs,
                                         num_warps=NUM_WARPS))
    return configs
