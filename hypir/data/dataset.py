"""Training images for HYPIR: a folder of images, or a CSV / parquet listing of paths and
prompts, served as random crops.

Every random choice (crop position, flip) comes from ``(seed, epoch, index)``, so a sample is the
same whichever worker loads it and in whatever order: with :meth:`ImageDataset.set_epoch` and a
seeded sampler, a resumed run sees the data an uninterrupted one would.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from hypir_kernels.checks import check_int, check_seed

from .io import list_inputs, read_image


LISTINGS = (".csv", ".parquet")


def _listing_rows(path: Path) -> tuple[list[str] | None, list[dict]]:
    """Column names and rows (dicts) of a CSV or parquet listing."""
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(f"{path}: reading a parquet listing needs pyarrow (pip install pyarrow)") from None
        table = pq.read_table(path)
        names = list(table.column_names)
        keep = [c for c in ("path", "prompt") if c in names]
        return names, table.select(keep).to_pylist()
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def read_listing(path: str | os.PathLike) -> list[tuple[Path, str]]:
    """``(image path, prompt)`` rows of a CSV or parquet listing with a ``path`` column and an
    optional ``prompt`` column; relative paths are taken from the listing's folder."""
    path = Path(path)
    names, table = _listing_rows(path)
    if names is None or "path" not in names:
        raise ValueError(f"{path}: expected a 'path' column, got columns {names}")
    header = 1 if path.suffix.lower() == ".csv" else 0  # report CSV rows by line number
    rows = []
    for i, row in enumerate(table, start=header + 1):
        if not row["path"]:
            raise ValueError(f"{path}:{i}: empty path")
        p = Path(row["path"])
        rows.append((p if p.is_absolute() else path.parent / p, row.get("prompt") or ""))
    return rows


class ImageDataset(torch.utils.data.Dataset):
    """``{"gt": [3, crop, crop] float32 in [0, 1], "prompt": str, "index": int}`` per item.

    Args:
        source: a folder of images (sorted by name) or a ``.csv`` / ``.parquet`` listing (see
            :func:`read_listing`).
        crop: crop size in pixels; images smaller than that are reflect-padded (replicate where
            reflect cannot reach), as Real-ESRGAN's dataset does.
        flip: random horizontal flips (p 0.5).
        prompt: the prompt of images with none (a folder has none).
        seed: the base of every random choice.
    """

    def __init__(self, source: str | os.PathLike, crop: int = 512, flip: bool = True, prompt: str = "", seed: int = 0):
        source = Path(source)
        if source.is_file() and source.suffix.lower() in LISTINGS:
            self.items = read_listing(source)
        elif source.is_dir():
            self.items = [(p, prompt) for p in list_inputs([source])]
        else:
            raise ValueError(f"source: expected a folder of images or a .csv / .parquet listing, got {str(source)!r}")
        if not self.items:
            raise ValueError(f"source: no images in {str(source)!r}")
        self.items = [(p, pr or prompt) for p, pr in self.items]
        self.crop = check_int("crop", crop, minimum=1)
        self.flip = bool(flip)
        self.seed = check_seed("seed", seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Crops and flips change with the epoch (deterministically)."""
        self.epoch = check_int("epoch", epoch, minimum=0)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, self.epoch)

    def sample(self, index: int, epoch: int) -> dict:
        """Item ``index`` as seen in ``epoch`` (what ``self[index]`` gives after ``set_epoch(epoch)``)."""
        path, prompt = self.items[index]
        img, _ = read_image(path)
        g = torch.Generator().manual_seed(((self.seed * 1_000_003 + epoch) * 1_000_033 + index) % (1 << 63))
        _, H, W = img.shape
        pad_h, pad_w = max(self.crop - H, 0), max(self.crop - W, 0)
        if pad_h or pad_w:
            mode = "reflect" if pad_h < H and pad_w < W else "replicate"
            img = F.pad(img[None], (0, pad_w, 0, pad_h), mode=mode)[0]
            H, W = img.shape[1:]
        y = int(torch.randint(H - self.crop + 1, (), generator=g))
        x = int(torch.randint(W - self.crop + 1, (), generator=g))
        out = img[:, y:y + self.crop, x:x + self.crop]
        if self.flip and bool(torch.rand((), generator=g) < 0.5):
            out = out.flip(-1)
        return {"gt": out.contiguous(), "prompt": prompt, "index": index}


__all__ = ["ImageDataset", "read_listing"]
