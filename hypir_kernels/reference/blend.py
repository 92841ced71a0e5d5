"""Reference tiled-overlap blending: accumulate weighted tiles and weights on a full canvas,
then divide. Same weight definitions as csrc/include/hypir_kernels/blend.h."""
from __future__ import annotations

import math

import torch

WEIGHTS = ("gaussian", "linear", "cosine", "uniform", "gaussian_released")  # kernel codes 0..4
GAUSSIAN_STD = 0.1  # as a fraction of the tile size (DiffBIR/HYPIR: var = 0.01)


def x_axis_kind(kind: int) -> int:
    """The kind the x axis uses: "gaussian_released" is the released HYPIR's (DiffBIR's) tile
    weight, a Gaussian centred at ``(T - 1) / 2`` along x but at ``T / 2`` along y."""
    return WEIGHTS.index("gaussian") if WEIGHTS[kind] == "gaussian_released" else kind


def axis_weight(kind: int, size: int, overlap: int, dtype=torch.float64) -> torch.Tensor:
    """1-D weights ``[size]`` of one tile axis (the y axis for "gaussian_released"; x uses
    :func:`x_axis_kind`); > 0, symmetric about ``(size - 1) / 2`` except "gaussian_released"
    (centred at ``size / 2``)."""
    p = torch.arange(size, dtype=dtype)
    if WEIGHTS[kind] in ("gaussian", "gaussian_released"):
        centre = 0.5 * (size - 1) if WEIGHTS[kind] == "gaussian" else 0.5 * size
        d = (p - centre) / (GAUSSIAN_STD * size)
        return torch.exp(-0.5 * d * d)
    if WEIGHTS[kind] == "uniform" or overlap <= 0:
        return torch.ones(size, dtype=dtype)
    edge = torch.minimum(p, size - 1 - p)
    r = ((edge + 1) / (overlap + 1)).clamp(max=1.0)
    if WEIGHTS[kind] == "linear":
        return r
    return torch.sin(0.5 * math.pi * r) ** 2


def tile_weights(ys, xs, th, tw, out_h, out_w, weight, overlap_y, overlap_x) -> torch.Tensor:
    """Normalised per-tile weight maps ``[N, th, tw]`` (float64): what each tile pixel
    contributes to its output pixel. Pixels outside the output get weight 0."""
    w2d = axis_weight(weight, th, overlap_y)[:, None] * axis_weight(x_axis_kind(weight), tw, overlap_x)[None, :]
    total = torch.zeros(out_h + th, out_w + tw, dtype=torch.float64)
    for y in ys:
        for x in xs:
            total[y : y + th, x : x + tw] += w2d
    maps = []
    for y in ys:
        for x in xs:
            t = total[y : y + th, x : x + tw]
            m = w2d / t
            m[y + torch.arange(th) >= out_h, :] = 0
            m[:, x + torch.arange(tw) >= out_w] = 0
            maps.append(m)
    return torch.stack(maps)


def blend_tiles(tiles, ys, xs, out_h, out_w, weight, overlap_y, overlap_x) -> torch.Tensor:
    """``tiles`` [B, N, C, th, tw] on the grid ``ys`` x ``xs`` (output pixels, row-major) ->
    [B, C, out_h, out_w] in the dtype of ``tiles``."""
    B, N, C, th, tw = tiles.shape
    acc_dtype = torch.float64 if tiles.dtype == torch.float64 else torch.float32
    w2d = (axis_weight(weight, th, overlap_y)[:, None] * axis_weight(x_axis_kind(weight), tw, overlap_x)[None, :]).to(
        device=tiles.device, dtype=acc_dtype
    )
    canvas = torch.zeros(B, C, out_h + th, out_w + tw, dtype=acc_dtype, device=tiles.device)
    total = torch.zeros(out_h + th, out_w + tw, dtype=acc_dtype, device=tiles.device)
    for n, (y, x) in enumerate((y, x) for y in ys for x in xs):
        canvas[:, :, y : y + th, x : x + tw] += w2d * tiles[:, n].to(acc_dtype)
        total[y : y + th, x : x + tw] += w2d
    return (canvas / total)[:, :, :out_h, :out_w].to(tiles.dtype)


def blend_tiles_adjoint(grad, ys, xs, th, tw, weight, overlap_y, overlap_x) -> torch.Tensor:
    """Adjoint of :func:`blend_tiles` in its tiles argument: ``grad`` [B, C, H, W] ->
    [B, N, C, th, tw] (the backward of the blend)."""
    B, C, H, W = grad.shape
    acc_dtype = torch.float64 if grad.dtype == torch.float64 else torch.float32
    maps = tile_weights(ys, xs, th, tw, H, W, weight, overlap_y, overlap_x).to(grad.device, acc_dtype)
    padded = torch.nn.functional.pad(grad.to(acc_dtype), (0, tw, 0, th))
    out = [padded[:, :, y : y + th, x : x + tw] * maps[n] for n, (y, x) in enumerate((y, x) for y in ys for x in xs)]
    return torch.stack(out, dim=1).to(grad.dtype)
