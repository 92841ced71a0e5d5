"""Procedurally generated training images, for runs that must not depend on any files (the tiny
config, tests): smooth colour gradients, overlapping discs and rectangles with hard edges, and
patches of oriented sinusoidal texture at several frequencies -- the edges and textures a
restoration model must learn to rebuild. Image ``i`` is a pure function of ``(seed, i)``."""
from __future__ import annotations

import math

import torch

from hypir_kernels.checks import check_int, check_seed


def generated_image(size: int, seed: int) -> torch.Tensor:
    """``[3, size, size]`` float32 in [0, 1]."""
    size = check_int("size", size, minimum=1, maximum=1 << 14)
    g = torch.Generator().manual_seed(check_seed("seed", seed))
    u = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(u, u, indexing="ij")

    def rand(*shape):
        return torch.rand(shape, generator=g)

    c0, c1, angle = rand(3, 1, 1), rand(3, 1, 1), rand() * 2 * math.pi
    ramp = (xx * torch.cos(angle) + yy * torch.sin(angle) - (torch.cos(angle) + torch.sin(angle)) / 2 + 0.5).clamp(0, 1)
    img = c0 * (1 - ramp) + c1 * ramp
    for _ in range(int(torch.randint(3, 9, (), generator=g))):
        colour, kind = rand(3, 1, 1), int(torch.randint(3, (), generator=g))
        cx, cy, r = rand(), rand(), 0.05 + 0.3 * rand()
        if kind == 0:  # disc
            mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
        elif kind == 1:  # rectangle
            mask = ((xx - cx).abs() < r) & ((yy - cy).abs() < r * (0.3 + rand()))
        else:  # textured disc: an oriented grating
            freq, theta = 4 + 60 * rand() ** 2, rand() * math.pi
            wave = 0.5 + 0.5 * torch.sin(2 * math.pi * freq * (xx * torch.cos(theta) + yy * torch.sin(theta)))
            mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
            colour = colour * wave + rand(3, 1, 1) * (1 - wave)
        img = torch.where(mask, colour, img)
    return img.clamp(0, 1)


class GeneratedImages(torch.utils.data.Dataset):
    """``count`` generated images served like :class:`hypir.data.ImageDataset` items
    (``{"gt", "prompt", "index"}``); the flip follows ``(seed, epoch, index)``."""

    def __init__(self, count: int, size: int = 512, flip: bool = True, prompt: str = "", seed: int = 0):
        self.count = check_int("count", count, minimum=1)
        self.size = check_int("size", size, minimum=1)
        self.flip, self.prompt, self.seed = bool(flip), prompt, check_seed("seed", seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.count

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_int("epoch", epoch, minimum=0)

    def sample(self, index: int, epoch: int) -> dict:
        img = generated_image(self.size, (self.seed * 1_000_003 + index) % (1 << 63))
        g = torch.Generator().manual_seed(((self.seed * 1_000_003 + epoch) * 1_000_033 + index) % (1 << 63))
        if self.flip and bool(torch.rand((), generator=g) < 0.5):
            img = img.flip(-1)
        return {"gt": img.contiguous(), "prompt": self.prompt, "index": index}

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, self.epoch)


__all__ = ["GeneratedImages", "generated_image"]
