"""Triton variant of tiled-overlap blending (gather formulation, same math as
``csrc/include/hypir_kernels/blend.h``). One program per (output row, block of columns); it
loops over the tile grid, so it suits the small grids tiled inference produces."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import AotConfig
from .util import store_rounded

BLOCK_X = 512
NUM_WARPS = 4
_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
_WEIGHTS = ("gaussian", "linear", "cosine", "uniform", "gaussian_released")  # codes 0..4, as in blend.h


@triton.jit
def _sin_first_quadrant(x):
    """sin(x) for x in [0, pi/2] by its Taylor series to x^13 (error < 1e-9, below fp32
    resolution). libdevice's sinf carries a Payne-Hanek range reduction with a local array that
    makes ptxas spill on sm_90; the argument here never needs range reduction."""
    x2 = x * x
    p = 1.0 / 6227020800.0
    p = p * x2 - 1.0 / 39916800.0
    p = p * x2 + 1.0 / 362880.0
    p = p * x2 - 1.0 / 5040.0
    p = p * x2 + 1.0 / 120.0
    p = p * x2 - 1.0 / 6.0
    return x + x * x2 * p


@triton.jit
def _axis_weight(p, T, overlap, KIND: tl.constexpr):
    """Weight of positions ``p`` (fp32) in a tile of size T; see hk::blend::axis_weight."""
    if KIND == 0:
        d = (p - 0.5 * (T - 1)) / (0.1 * T)
        w = tl.exp(-0.5 * d * d)
    elif KIND == 4:  # the released HYPIR's y axis: centred at T / 2
        d = (p - 0.5 * T) / (0.1 * T)
        w = tl.exp(-0.5 * d * d)
    elif KIND == 3:
        w = p * 0.0 + 1.0
    else:
        edge = tl.minimum(p, (T - 1) - p)
        r = tl.minimum(tl.maximum((edge + 1.0) / (overlap + 1.0), 0.0), 1.0)  # masked lanes: p outside the tile
        if KIND == 2:
            s = _sin_first_quadrant(1.5707963267948966 * r)
            r = s * s
        w = tl.where(overlap > 0, r, 1.0)
    return w


@triton.jit
def blend_tiles_kernel(
    tiles_ptr, ys_ptr, xs_ptr, out_ptr,
    C, OH, OW, TH, TW, NY, NX, OVERLAP_Y, OVERLAP_X,
    s_b, s_n, s_c, s_h, s_w,
    KIND: tl.constexpr, KIND_X: tl.constexpr, BLOCK: tl.constexpr,
):
    # KIND is the y axis' weight, KIND_X the x axis' (they differ for gaussian_released only)
    row = tl.program_id(0)  # over B * C * OH
    y = row % OH
    c = (row // OH) % C
    b = row // (OH * C)
    x = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    in_x = x < OW
    xf = x.to(tl.float32)
    yf = y.to(tl.float32)

    # Axis normalisers over the covering tiles.
    sy = 0.0
    for iy in range(NY):
        oy = tl.load(ys_ptr + iy).to(tl.int32)
        covered = (y >= oy) & (y < oy + TH)
        wy = _axis_weight(yf - oy, TH, OVERLAP_Y, KIND)
        sy += tl.where(covered, wy, 0.0)
    sx = tl.zeros([BLOCK], dtype=tl.float32)
    for ix in range(NX):
        ox = tl.load(xs_ptr + ix).to(tl.int32)
        m = (x >= ox) & (x < ox + TW)
        sx += tl.where(m, _axis_weight(xf - ox, TW, OVERLAP_X, KIND_X), 0.0)
    inv_sx = 1.0 / tl.where(in_x, sx, 1.0)

    acc = tl.zeros([BLOCK], dtype=tl.float32)
    base = b.to(tl.int64) * s_b + c.to(tl.int64) * s_c
    for iy in range(NY):
        oy = tl.load(ys_ptr + iy).to(tl.int32)
        if (y >= oy) & (y < oy + TH):
            wy = _axis_weight(yf - oy, TH, OVERLAP_Y, KIND) / sy
            row_ptr = tiles_ptr + base + (y - oy).to(tl.int64) * s_h
            for ix in range(NX):
                ox = tl.load(xs_ptr + ix).to(tl.int32)
                m = in_x & (x >= ox) & (x < ox + TW)
                wx = _axis_weight(xf - ox, TW, OVERLAP_X, KIND_X) * inv_sx
                n = iy * NX + ix
                v = tl.load(row_ptr + n.to(tl.int64) * s_n + (x - ox).to(tl.int64) * s_w, mask=m, other=0.0)
                acc += tl.where(m, (wy * wx) * v.to(tl.float32), 0.0)
    out_off = row.to(tl.int64) * OW + x
    store_rounded(out_ptr + out_off, acc, in_x)


def _x_axis_kind(kind: int) -> int:
    return 0 if _WEIGHTS[kind] == "gaussian_released" else kind


def blend_tiles(tiles, ys, xs, out_h, out_w, weight, overlap_y, overlap_x):
    """Launch on ``tiles`` [B, N, C, TH, TW]; ``ys``/``xs`` are lists of output-pixel origins."""
    if tiles.dtype not in _DTYPES:
        raise ValueError(f"tiles: the triton backend supports {list(_DTYPES)}, got {tiles.dtype}")
    B, N, C, TH, TW = tiles.shape
    out = torch.empty((B, C, out_h, out_w), dtype=tiles.dtype, device=tiles.device)
    if out.numel() == 0:
        return out
    ys_t = torch.tensor(ys, dtype=torch.int64, device=tiles.device)
    xs_t = torch.tensor(xs, dtype=torch.int64, device=tiles.device)
    grid = (B * C * out_h, triton.cdiv(out_w, BLOCK_X))
    blend_tiles_kernel[grid](
        tiles, ys_t, xs_t, out,
        C, out_h, out_w, TH, TW, len(ys), len(xs), overlap_y, overlap_x,
        *tiles.stride(),
        KIND=weight, KIND_X=_x_axis_kind(weight), BLOCK=BLOCK_X, num_warps=NUM_WARPS,
    )
    return out


def aot_configs() -> list[AotConfig]:
    configs = []
    for dtype, tname in _DTYPES.items():
        for kind, wname in enumerate(_WEIGHTS):
            sig = {"tiles_ptr": f"*{tname}", "ys_ptr": "*i64", "xs_ptr": "*i64", "out_ptr": f"*{tname}"}
            sig.update({k: "i32" for k in ("C", "OH", "OW", "TH", "TW", "NY", "NX", "OVERLAP_Y", "OVERLAP_X")})
            sig.update({k: "i64" for k in ("s_b", "s_n", "s_c", "s_h", "s_w")})
            sig.update({"KIND": "constexpr", "KIND_X": "constexpr", "BLOCK": "constexpr"})
            configs.append(
                AotConfig(
                    name=f"blend_tiles[{wname},{tname},BLOCK={BLOCK_X}]",
                    kernel=blend_tiles_kernel,
                    signature=sig,
                    constexprs={"KIND": kind, "KIND_X": _x_axis_kind(kind), "BLOCK": BLOCK_X},
                    num_warps=NUM_WARPS,
                )
            )
    return configs
