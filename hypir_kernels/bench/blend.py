"""Blend benchmark cases, shared by ``python -m hypir_kernels.bench`` and ``benchmarks/``.

Default case: a 2048x2048 RGB image, 512 px tiles, stride 448, gaussian weights.
Anchors (what users run today):
  (a) the accumulate-with-count loop of MultiDiffusion / DiffBIR / HYPIR:
      ``out[..., win] += tile * w; count[..., win] += w; out / count``
  (b) diffusers' tiled-VAE merge: ``AutoencoderKL.blend_v`` / ``blend_h`` between neighbours,
      then crop each tile to the stride and concatenate (diffusers' own tile grid).
"""
from __future__ import annotations

import math

import torch

from .. import blend_tiles, plan_tiles, use_backend

SIZE, TILE, STRIDE, CHANNELS = 2048, 512, 448, 3


def make_case(size: int = SIZE, tile: int = TILE, stride: int = STRIDE, channels: int = CHANNELS, seed: int = 0):
    """Tiles cut from a random image on the plan_tiles grid: (image, tiles [1, N, C, t, t], origins)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, channels, size, size, generator=g)
    origins = plan_tiles(size, size, tile, stride)
    tiles = torch.stack([image[:, :, y : y + tile, x : x + tile] for y, x in origins.tolist()], dim=1).contiguous()
    return image, tiles, origins


def ours(tiles: torch.Tensor, origins: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    return blend_tiles(tiles, origins, size, size, weight="gaussian")


def gaussian_tile_weights(tile: int, channels: int) -> torch.Tensor:
    """DiffBIR/HYPIR's ``_gaussian_weights``: [C, tile, tile], var 0.01, built once per run."""
    var, mid = 0.01, (tile - 1) / 2
    p = [math.exp(-((i - mid) ** 2) / (tile * tile) / (2 * var)) / math.sqrt(2 * math.pi * var) for i in range(tile)]
    w = torch.tensor(p, dtype=torch.float32)
    return (w[:, None] * w[None, :]).expand(channels, tile, tile).contiguous()


def accumulate_with_count(tiles: torch.Tensor, origins: torch.Tensor, weights: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """Anchor (a): full-resolution value and count buffers, one add per tile, one divide."""
    B, N, C, t, _ = tiles.shape
    out = torch.zeros(B, C, size, size, dtype=tiles.dtype, device=tiles.device)
    count = torch.zeros(B, C, size, size, dtype=tiles.dtype, device=tiles.device)
    for n, (y, x) in enumerate(origins.tolist()):
        out[:, :, y : y + t, x : x + t] += tiles[:, n] * weights
        count[:, :, y : y + t, x : x + t] += weights
    return out / count


def diffusers_grid_tiles(image: torch.Tensor, tile: int = TILE, stride: int = STRIDE) -> list[list[torch.Tensor]]:
    """diffusers' tiling: tiles start every ``stride`` pixels; edge tiles are cut short."""
    H, W = image.shape[-2:]
    return [[image[:, :, i : i + tile, j : j + tile].clone() for j in range(0, W, stride)] for i in range(0, H, stride)]


def diffusers_merge(rows: list[list[torch.Tensor]], tile: int = TILE, stride: int = STRIDE) -> torch.Tensor:
    """Anchor (b): diffusers ``AutoencoderKL.tiled_decode``'s merge (mutates ``rows``' tiles)."""
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    extent = tile - stride
    out_rows = []
    for i, row in enumerate(rows):
        out_row = []
        for j, t in enumerate(row):
            if i > 0:
                t = AutoencoderKL.blend_v(None, rows[i - 1][j], t, extent)
            if j > 0:
                t = AutoencoderKL.blend_h(None, row[j - 1], t, extent)
            out_row.append(t[:, :, :stride, :stride])
        out_rows.append(torch.cat(out_row, dim=3))
    return torch.cat(out_rows, dim=2)


def check(tiles: torch.Tensor, origins: torch.Tensor, size: int = SIZE) -> float:
    """Max abs difference between the automatic backend and the reference on the case."""
    with use_backend("reference"):
        ref = ours(tiles, origins, size)
    return (ours(tiles, origins, size) - ref).abs().max().item()


def warm_up(image: torch.Tensor, tiles: torch.Tensor, origins: torch.Tensor, rounds: int = 4) -> None:
    """Run every case a few times, interleaved, before timing (see benchmarks/test_blend.py)."""
    weights = gaussian_tile_weights(tiles.shape[-1], tiles.shape[2])
    for _ in range(rounds):
        ours(tiles, origins, image.shape[-1])
        accumulate_with_count(tiles, origins, weights, image.shape[-1])
        try:
            diffusers_merge(diffusers_grid_tiles(image, tiles.shape[-1]))
        except ImportError:
            pass
