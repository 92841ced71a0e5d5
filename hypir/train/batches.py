"""Which samples each micro-batch of a HYPIR training step holds: global sample positions, one seeded
permutation of the dataset per epoch, split into per-process micro-batches so that micro-batch ``k``
of step ``s`` holds the same samples in any layout of processes and gradient accumulation (a
2-process run equals a 1-process run accumulating twice as many micro-batches)."""
from __future__ import annotations

import torch

from .loop import derive_seed


class Positions(torch.utils.data.Dataset):
    """Global sample position ``p`` -> item ``perm_e[p mod N]`` of epoch ``e = p // N`` (a seeded
    permutation per epoch), with that epoch's crop and flip."""

    def __init__(self, base, seed: int):
        self.base, self.seed = base, seed
        self._perm: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, position: int) -> dict:
        n = len(self.base)
        epoch, i = divmod(position, n)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            self._perm = (epoch, torch.randperm(n, generator=g))
        return self.base.sample(int(self._perm[1][i]), epoch)


class MicroBatches(torch.utils.data.Sampler):
    """Positions of this process's micro-batches, step by step from ``start``."""

    def __init__(self, start: int, steps: int, batch: int, rank: int, world: int, accumulation: int, groups: int = 1):
        self.start, self.steps, self.batch = start, steps, batch
        self.rank, self.world, self.acc, self.groups = rank, world, accumulation, groups

    def __len__(self) -> int:
        return (self.steps - self.start) * self.acc * self.groups

    def __iter__(self):
        per_group = self.batch * self.world * self.acc  # one global batch
        for step in range(self.start, self.steps):
            for group in range(self.groups):  # released schedule: the generator's, then the discriminator's
                for j in range(self.acc):
                    first = (step * self.groups + group) * per_group + (self.rank * self.acc + j) * self.batch
                    yield list(range(first, first + self.batch))
