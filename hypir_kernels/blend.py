"""Tiled-overlap blending: plan tiles over an image, blend tile outputs back into one image, and
run a function tile by tile (how HYPIR restores images larger than its tile).

The blend is a gather: each output pixel combines the tiles that cover it with analytic,
separable weights normalised over those tiles; no weight or count canvas is allocated, nothing
is accumulated with atomics, and the result is deterministic.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Sequence

import torch

from . import backend
from .checks import check_int, check_tensor
from .reference import blend as ref

WEIGHTS = ref.WEIGHTS
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def plan_tiles(height: int, width: int, tile: int, stride: int) -> torch.Tensor:
    """Top-left corners of ``tile`` x ``tile`` tiles covering a ``height`` x ``width`` image.

    Returns a LongTensor ``[N, 2]`` of ``(y, x)`` in row-major order (y outer). Tiles sit on a
    regular ``stride`` with the last row/column flush with the far edge; along an axis no longer
    than ``tile`` there is one tile at 0 (the caller pads the image up to the tile).
    """
    check_int("height", height, minimum=1)
    check_int("width", width, minimum=1)
    _check_tile_stride(tile, stride)
    ys, xs = _axis_origins(height, tile, stride), _axis_origins(width, tile, stride)
    return torch.cartesian_prod(ys, xs).reshape(-1, 2)  # tensors, not Python lists: a huge plan fails cleanly


def _check_tile_stride(tile: int, stride: int) -> None:
    check_int("tile", tile, minimum=1)
    check_int("stride", stride, minimum=1)
    if stride > tile:
        raise ValueError(f"stride: must be <= tile ({tile}) so tiles leave no gaps, got {stride}")


def _axis_origins(size: int, tile: int, stride: int) -> torch.Tensor:
    if size <= tile:
        return torch.zeros(1, dtype=torch.int64)
    origins = torch.arange(0, size - tile + 1, stride, dtype=torch.int64)
    if origins[-1] + tile < size:
        origins = torch.cat([origins, origins.new_tensor([size - tile])])
    return origins


def _weight_code(weight: str) -> int:
    if weight not in WEIGHTS:
        raise ValueError(f"weight: expected one of {WEIGHTS}, got {weight!r}")
    return WEIGHTS.index(weight)


def _scale_fraction(scale) -> tuple[int, int]:
    """``scale`` as a reduced ratio ``(p, q)``, ``q <= 4096``. Plain int arithmetic (a continued
    fraction), not ``fractions.Fraction``: dynamo in torch 2.11 cannot trace ``float(Fraction)``."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float, Fraction)) or not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"scale: expected a positive number (e.g. 8 or 1/8), got {scale!r}")
    if isinstance(scale, int):
        return scale, 1
    if isinstance(scale, Fraction) and scale.denominator <= 1 << 12:
        return scale.numerator, scale.denominator
    target = float(scale)
    h0, h1, k0, k1 = 0, 1, 1, 0  # convergents h/k of the continued fraction of target
    x = target
    for _ in range(64):
        a = math.floor(x)
        h0, h1, k0, k1 = h1, a * h1 + h0, k1, a * k1 + k0
        if k1 > 1 << 12:
            break
        if abs(h1 / k1 - target) <= 1e-9 * target:
            return h1, k1
        if x == a:
            break
        x = 1.0 / (x - a)
    raise ValueError(f"scale: {scale!r} is not a simple ratio such as 8 or 1/8")


def _scaled(value: int, scale: tuple[int, int], what: str) -> int:
    p, q = scale
    if (value * p) % q:
        raise ValueError(f"{what}: {value} x scale {p}/{q} = {value * p / q} is not a whole number of pixels")
    return value * p // q


def _origin_pairs(origins) -> list[tuple[int, int]]:
    """``origins`` as Python (y, x) pairs: a LongTensor [N, 2] or a sequence of int pairs (the
    form to use under ``torch.compile(fullgraph=True)``, where reading a tensor breaks the graph)."""
    if isinstance(origins, torch.Tensor):
        if origins.dim() != 2 or origins.shape[1] != 2:
            raise ValueError(f"origins: expected a [N, 2] tensor of (y, x), got shape {tuple(origins.shape)}")
        if origins.dtype.is_floating_point or origins.dtype.is_complex or origins.dtype == torch.bool:
            raise ValueError(f"origins: expected an integer tensor, got {origins.dtype}")
        return [(int(y), int(x)) for y, x in origins.to("cpu", torch.int64).tolist()]
    if isinstance(origins, (list, tuple)):
        pairs = []
        for p in origins:
            if not (isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in p)):
                raise ValueError(f"origins: expected (y, x) int pairs, got {p!r}")
            pairs.append((p[0], p[1]))
        return pairs
    raise ValueError(f"origins: expected a LongTensor [N, 2] or (y, x) pairs, got {type(origins).__name__}")


def _grid_axes(origins, n_tiles: int, height: int, width: int) -> tuple[list[int], list[int]]:
    """Split row-major grid origins into the sorted axis origins; raise if not a grid."""
    pts = _origin_pairs(origins)
    if len(pts) != n_tiles:
        raise ValueError(f"origins: {len(pts)} origins for {n_tiles} tiles (tiles.shape[1])")
    if n_tiles == 0:
        raise ValueError("tiles: need at least one tile")
    for y, x in pts:
        if not (0 <= y < height and 0 <= x < width):
            raise ValueError(f"origins: ({y}, {x}) is outside the {height}x{width} image")
    ys = sorted({p[0] for p in pts})
    xs = sorted({p[1] for p in pts})
    if [(y, x) for y in ys for x in xs] != pts:
        raise ValueError(
            "origins: must be a row-major grid (every y with every x, y outer, both increasing), "
            "as plan_tiles returns"
        )
    return ys, xs


def _axis_overlap(origins: list[int], size: int) -> int:
    """Overlap of neighbouring tiles along an axis: tile size minus the smallest step."""
    if len(origins) < 2:
        return 0
    return max(0, size - min(b - a for a, b in zip(origins, origins[1:])))


def _check_coverage(origins: list[int], size: int, extent: int, what: str) -> None:
    ends = origins[1:] + [extent]
    if origins[0] != 0:
        raise ValueError(f"origins: {what} pixels [0, {origins[0]}) are covered by no tile")
    for a, b in zip(origins, ends):
        if b - a > size:
            raise ValueError(f"origins: {what} pixels [{a + size}, {b}) are covered by no tile")


def blend_tiles(
    tiles: torch.Tensor,
    origins: torch.Tensor,
    height: int,
    width: int,
    weight: str = "gaussian",
    scale: float = 1,
) -> torch.Tensor:
    """Blend overlapping tile outputs into one image.

    Args:
        tiles: ``[B, N, C, th, tw]`` tile outputs (float32/64, float16, bfloat16), possibly
            ``scale`` x the planned tile size (8 for a VAE decoder, 1/8 for an encoder).
        origins: ``[N, 2]`` integer top-left ``(y, x)`` of each tile in *input* pixels, a
            row-major grid as :func:`plan_tiles` returns; or the same as a list of ``(y, x)``
            pairs (use that form under ``torch.compile(fullgraph=True)``).
        height, width: input image size; the output is ``height*scale`` x ``width*scale``.
        weight: ``"gaussian"`` (std 0.1 tile, symmetric in x and y), ``"linear"`` (ramp over the
            overlap), ``"cosine"`` (sin^2 ramp over the overlap), ``"uniform"``, or
            ``"gaussian_released"`` (the released HYPIR's: the same Gaussian, its y centre at
            ``th / 2`` instead of ``(th - 1) / 2``).
        scale: output pixels per input pixel.

    Returns:
        ``[B, C, height*scale, width*scale]`` in the dtype of ``tiles`` (fp32 accumulation for
        16-bit inputs). Tile pixels beyond the image are ignored; every image pixel must be
        covered by a tile. Differentiable in ``tiles``.
    """
    check_tensor("tiles", tiles, dims=5, dtypes=_FLOAT_DTYPES)
    check_int("height", height, minimum=1)
    check_int("width", width, minimum=1)
    code = _weight_code(weight)
    frac = _scale_fraction(scale)
    out_h, out_w = _scaled(height, frac, "height"), _scaled(width, frac, "width")
    ys, xs = _grid_axes(origins, tiles.shape[1], height, width)
    ys = [_scaled(y, frac, "origins") for y in ys]
    xs = [_scaled(x, frac, "origins") for x in xs]
    th, tw = tiles.shape[3], tiles.shape[4]
    if th == 0 or tw == 0:
        raise ValueError(f"tiles: empty tile size {th}x{tw}")
    _check_coverage(ys, th, out_h, "rows")
    _check_coverage(xs, tw, out_w, "columns")
    return torch.ops.hypir_kernels.blend_tiles(
        tiles, ys, xs, out_h, out_w, code, _axis_overlap(ys, th), _axis_overlap(xs, tw)
    )


# ---- the torch.library op and its backends ------------------------------------------------


def _blend_cpp(tiles, ys, xs, out_h, out_w, weight, overlap_y, overlap_x):
    ys_t = torch.tensor(ys, dtype=torch.int64)
    xs_t = torch.tensor(xs, dtype=torch.int64)
    return torch.ops.hypir_kernels._blend_tiles(tiles, ys_t, xs_t, out_h, out_w, weight, overlap_y, overlap_x)


def _blend_triton(*args):
    from .triton import blend as triton_blend

    return triton_blend.blend_tiles(*args)


_OP = backend.register(
    "blend_tiles",
    kernel_op="_blend_tiles",
    cpu=_blend_cpp,
    cuda=_blend_cpp,
    triton=_blend_triton,
    reference=ref.blend_tiles,
)


@torch.library.custom_op("hypir_kernels::blend_tiles", mutates_args=())
def _blend_tiles_op(
    tiles: torch.Tensor,
    ys: Sequence[int],
    xs: Sequence[int],
    out_h: int,
    out_w: int,
    weight: int,
    overlap_y: int,
    overlap_x: int,
) -> torch.Tensor:
    impl = backend.dispatch("blend_tiles", tiles.device)
    return impl(tiles, list(ys), list(xs), out_h, out_w, weight, overlap_y, overlap_x)


@_blend_tiles_op.register_fake
def _(tiles, ys, xs, out_h, out_w, weight, overlap_y, overlap_x):
    return tiles.new_empty((tiles.shape[0], tiles.shape[2], out_h, out_w))


def _setup_context(ctx, inputs, output):
    tiles, ys, xs, _, _, weight, overlap_y, overlap_x = inputs
    ctx.geometry = (list(ys), list(xs), tiles.shape[3], tiles.shape[4], weight, overlap_y, overlap_x)


def _backward(ctx, grad):
    return ref.blend_tiles_adjoint(grad, *ctx.geometry), None, None, None, None, None, None, None


_blend_tiles_op.register_autograd(_backward, setup_context=_setup_context)


# ---- tiled application --------------------------------------------------------------------


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    stride: int,
    scale: float = 1,
    weight: str = "gaussian",
    batch_tiles: int = 4,
    progress: bool = False,
) -> torch.Tensor:
    """Apply ``fn`` to overlapping tiles of ``x`` and blend the results.

    Args:
        fn: maps ``[n, C, tile, tile]`` to ``[n, C', tile*scale, tile*scale]``.
        x: ``[B, C, H, W]``.
        tile, stride: tile size and step in pixels of ``x`` (``stride <= tile``).
        scale: output pixels per input pixel (8 for a VAE decoder on latents, 1/8 for an encoder).
        weight: blend weight, see :func:`blend_tiles`.
        batch_tiles: tiles per call of ``fn`` (bounds peak memory).
        progress: show a progress bar over the chunks.

    Returns:
        ``[B, C', H*scale, W*scale]``. When one tile covers the whole image (or ``x`` is empty), ``fn(x)`` itself
        (no padding, no blending). Otherwise ``x`` is reflect-padded (replicate where reflect
        cannot reach) up to at least one tile per axis, so ``fn`` always sees full tiles.
    """
    if not callable(fn):
        raise ValueError(f"fn: expected a callable [n, C, h, w] -> [n, C', h*scale, w*scale], got {type(fn).__name__}")
    check_tensor("x", x, dims=4, dtypes=_FLOAT_DTYPES)
    _check_tile_stride(tile, stride)
    check_int("batch_tiles", batch_tiles, minimum=1)
    frac = _scale_fraction(scale)
    _weight_code(weight)
    B, C, H, W = x.shape
    out_h, out_w = _scaled(H, frac, "x height"), _scaled(W, frac, "x width")
    if (H <= tile and W <= tile) or x.numel() == 0:  # one tile, or nothing to tile: fn sees x itself
        return _checked_call(fn, x, (out_h, out_w), "fn(x)")
    t_out = _scaled(tile, frac, "tile")
    _scaled(stride, frac, "stride")
    pad_h, pad_w = max(0, tile - H), max(0, tile - W)
    xp = _pad(x, pad_h, pad_w)
    Hp, Wp = xp.shape[-2:]
    origins = plan_tiles(Hp, Wp, tile, stride)
    crops = [xp[:, :, y : y + tile, x0 : x0 + tile] for y, x0 in origins.tolist()]
    stacked = torch.stack(crops, dim=1).flatten(0, 1)  # [B*N, C, tile, tile], b outer
    outputs = []
    chunks = range(0, stacked.shape[0], batch_tiles)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="tiles", unit="chunk")
    for i in chunks:
        chunk = stacked[i : i + batch_tiles]
        outputs.append(_checked_call(fn, chunk, (t_out, t_out), "fn(tiles)"))
    out_tiles = torch.cat(outputs).unflatten(0, (B, origins.shape[0]))
    blended = blend_tiles(out_tiles, origins, Hp, Wp, weight=weight, scale=scale)
    return blended[:, :, :out_h, :out_w]


def _checked_call(fn, x, size, what):
    y = fn(x)
    if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[0] != x.shape[0] or tuple(y.shape[-2:]) != size:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"fn: {what} returned {shape}; expected [{x.shape[0]}, C', {size[0]}, {size[1]}] for scale")
    return y


def _pad(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    if pad_h == 0 and pad_w == 0:
        return x
    H, W = x.shape[-2:]
    mode = "reflect" if pad_h < H and pad_w < W else "replicate"
    return torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode=mode)
