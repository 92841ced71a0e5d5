"""Memory budgets for tiled passes: measure a pass's peak memory on small probes, fit a model of
it, and choose the largest tiles (one tile when it fits) whose estimated peak stays under a budget.

Peak memory is measured by :class:`PeakMemory`: on CUDA the caching allocator's peak statistics;
elsewhere a dispatch-level tracker that adds up the storages every op allocates and subtracts them
when they are freed (it does not see scratch memory inside an op, e.g. a convolution's workspace;
the fit's margin covers that). A pass's peak is modelled as ``fixed + batch * (b * px + c * px^2)``
for a tile of ``px`` pixels (``c`` is non-zero only when the probes grow faster than linearly, as
attention without a memory-efficient kernel does).
"""
from __future__ import annotations

import math
import os
import weakref
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

MARGIN = 1.15  # estimates are multiplied by this (scratch memory the CPU tracker does not see)


class _StorageTracker(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen = WeakIdKeyDictionary()

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                if storage in self._seen:  # a view or an in-place result: no new memory
                    continue
                n = storage.nbytes()
                self._seen[storage] = n
                self.live += n
                weakref.finalize(storage, self._free, n)
        self.peak = max(self.peak, self.live)
        return out


class PeakMemory:
    """Context manager: ``peak`` is the largest number of bytes allocated inside the block on
    ``device`` above what was allocated at entry."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._tracker = _StorageTracker()
            self._tracker.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._tracker.__exit__(*exc)
            self.peak = self._tracker.peak


def available_memory(device: torch.device | str) -> int:
    """Bytes free on ``device``: CUDA free memory, else the RAM the OS reports available."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def default_budget(device: torch.device | str) -> int:
    """80 % of :func:`available_memory`."""
    return int(0.8 * available_memory(device))


@dataclass(frozen=True)
class MemoryModel:
    """Peak bytes of one call on ``batch`` tiles of ``px`` pixels: ``fixed + batch (b px + c px^2)``."""

    fixed: float
    per_pixel: float
    per_pixel_sq: float = 0.0

    def bytes(self, px: int, batch: int = 1) -> int:
        return int(MARGIN * (self.fixed + batch * (self.per_pixel * px + self.per_pixel_sq * px * px)))


def fit_memory_model(fn: Callable[[torch.Tensor], object], make_input: Callable[[int], torch.Tensor],
                     sizes: tuple[int, int, int], device: torch.device | str) -> MemoryModel:
    """Run ``fn(make_input(s))`` for three square sizes ``s`` (pixels per side), measure each
    peak, and fit a :class:`MemoryModel` that bounds all three from above."""
    px, peaks = [], []
    for s in sizes:
        x = make_input(s)
        with PeakMemory(device) as m:
            fn(x)
        px.append(s * s)
        peaks.append(m.peak)
    slopes = [(peaks[i + 1] - peaks[i]) / (px[i + 1] - px[i]) for i in range(2)]
    b = max(0.0, *slopes)
    c = 0.0
    if slopes[0] > 0 and slopes[1] > 1.25 * slopes[0]:  # superlinear growth: quadratic term
        c = (slopes[1] - slopes[0]) / (px[2] - px[0])
        b = max(0.0, slopes[0] - c * (px[0] + px[1]))
    fixed = max(0.0, *(p - b * n - c * n * n for p, n in zip(peaks, px)))
    return MemoryModel(fixed, b, c)


@dataclass(frozen=True)
class TilePlan:
    """How a pass runs: ``tile`` None means the whole input in one call."""

    tile: int | None
    stride: int | None
    batch: int
    estimate: int  # estimated peak bytes of one call

    def describe(self) -> str:
        where = "whole image" if self.tile is None else f"tiles {self.tile}/{self.stride} x{self.batch}"
        return f"{where}, ~{self.estimate / 2**20:.0f} MiB"


def default_batch(device: torch.device | str) -> int | None:
    """Tiles per call when the caller does not say: None (as many as the budget allows) on
    accelerators, where one call per tile leaves the device idle (H100, SD2 UNet, 9 tiles: 552 ms
    one by one, 84 ms batched); 1 on the CPU, where a batch of tiles runs slower than the same
    tiles one by one (2-core CPU, VAE encode of 9 512 px tiles: 10.0 s batched, 6.8 s one by one:
    the larger activations fall out of the caches)."""
    return None if torch.device(device).type == "cuda" else 1


def _axis_tiles(size: int, tile: int, stride: int) -> int:
    return 1 if size <= tile else math.ceil((size - tile) / stride) + 1


def _batch_for(model: MemoryModel, tile: int, n_tiles: int, budget: int) -> int:
    batch = 1
    while batch < n_tiles and model.bytes(tile * tile, batch + 1) <= budget:
        batch += 1
    return batch


def plan_fixed(model: MemoryModel | None, height: int, width: int, tile: int, stride: int, budget: int | None,
               batch: int | None = None) -> TilePlan:
    """A plan with the given tile and stride; tiles per call from ``batch`` or, when None, as many
    as the budget allows (at least one; on the CPU pass ``batch=1``: see :func:`default_batch`)."""
    if height <= tile and width <= tile:
        return TilePlan(None, None, 1, model.bytes(height * width) if model else 0)
    n = _axis_tiles(height, tile, stride) * _axis_tiles(width, tile, stride)
    if batch is None:
        batch = _batch_for(model, tile, n, budget) if model is not None else 1
    return TilePlan(tile, stride, batch, model.bytes(tile * tile, batch) if model else 0)


def plan_auto(model: MemoryModel, height: int, width: int, align: int, step: int, budget: int,
              batch: int | None = None, max_tile: int | None = None) -> TilePlan:
    """The largest square tile (a multiple of ``align``; the whole input when it fits) whose
    estimated peak is within ``budget``; overlap a quarter of the tile rounded down to ``step``
    (at least ``step``), tiles per call ``batch`` or as many as fit. Raises ``ValueError`` when even an
    ``align`` tile does not fit. ``max_tile``: the largest tile the network takes (None: any)."""
    whole = model.bytes(height * width)
    if whole <= budget and (max_tile is None or max(height, width) <= max_tile):
        return TilePlan(None, None, 1, whole)
    tile = max(align, max(height, width) // align * align)
    if max_tile is not None:
        tile = max(align, min(tile, max_tile // align * align))
    while tile > align and model.bytes(tile * tile) > budget:
        tile -= align
    if model.bytes(tile * tile) > budget:
        raise ValueError(f"max_memory: {budget / 2**20:.1f} MiB is too small: the smallest tile ({align} px) "
                         f"needs about {model.bytes(tile * tile) / 2**20:.1f} MiB")
    overlap = max(step, tile // 4 // step * step)
    return plan_fixed(model, height, width, tile, max(step, tile - overlap), budget, batch)
