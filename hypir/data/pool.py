"""The training-pair pool of the HYPIR release (``RealESRGANBatchTransform._dequeue_and_enqueue``,
after Real-ESRGAN): degraded pairs are kept in a queue and handed out shuffled across batches.

A batch of degradations shares one resize scale and mode, one noise kind and one op order (the
batch keeps one shape); the pool is what mixes them inside a batch. While the pool fills, each
batch passes through unchanged and is copied in; once full, every batch shuffles the pool, takes
its first ``B`` pairs out and puts itself in their place. The shuffle is drawn from a seed, so a run
is reproducible, and the pool's contents are part of a training checkpoint (:meth:`state_dict`).
"""
from __future__ import annotations

import torch

from hypir_kernels.checks import check_int, check_seed


class PairPool:
    """A pool of ``size`` (ground truth, LQ, prompt) triples; ``size`` a multiple of the batch."""

    def __init__(self, size: int):
        self.size = check_int("queue_size", size, minimum=1)
        self.gt: torch.Tensor | None = None
        self.lq: torch.Tensor | None = None
        self.prompts: list[str] = []
        self.filled = 0

    def exchange(self, gt: torch.Tensor, lq: torch.Tensor, prompts: list[str], seed: int):
        """``gt [B, C, H, W]``, ``lq [B, C, h, w]``, ``B`` prompts -> the same shapes: these pairs
        while the pool fills, afterwards ``B`` pairs from earlier batches (the shuffle from ``seed``)."""
        if not (torch.is_tensor(gt) and torch.is_tensor(lq) and gt.dim() == 4 and lq.dim() == 4):
            raise ValueError(f"gt, lq: expected [B, C, H, W] tensors, got {getattr(gt, 'shape', type(gt))} "
                             f"and {getattr(lq, 'shape', type(lq))}")
        B = gt.shape[0]
        if B == 0:
            raise ValueError("gt: expected at least one pair, got an empty batch")
        if lq.shape[0] != B or len(prompts) != B:
            raise ValueError(f"gt, lq, prompts: expected one of each per sample, got {B}, {lq.shape[0]}, {len(prompts)}")
        if self.size % B:
            raise ValueError(f"queue_size: {self.size} is not a multiple of the batch size {B} "
                             f"(the pool hands out whole batches, as the release's)")
        if self.gt is None:
            self.gt = gt.new_zeros((self.size, *gt.shape[1:]))
            self.lq = lq.new_zeros((self.size, *lq.shape[1:]))
            self.prompts = [""] * self.size
        elif self.gt.shape[1:] != gt.shape[1:] or self.lq.shape[1:] != lq.shape[1:]:
            raise ValueError(f"gt, lq: the pool holds {tuple(self.gt.shape[1:])} / {tuple(self.lq.shape[1:])} "
                             f"pairs, got {tuple(gt.shape[1:])} / {tuple(lq.shape[1:])}")
        if self.filled < self.size:
            self.gt[self.filled:self.filled + B] = gt
            self.lq[self.filled:self.filled + B] = lq
            self.prompts[self.filled:self.filled + B] = prompts
            self.filled += B
            return gt, lq, list(prompts)
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(check_seed("seed", seed)))
        self.gt, self.lq = self.gt[order.to(self.gt.device)], self.lq[order.to(self.lq.device)]
        self.prompts = [self.prompts[i] for i in order.tolist()]
        out = self.gt[:B].clone(), self.lq[:B].clone(), self.prompts[:B]
        self.gt[:B], self.lq[:B] = gt, lq
        self.prompts[:B] = prompts
        return out

    def state_dict(self) -> dict:
        """Tensors (``gt``, ``lq``; empty before the first batch) and JSON-able state."""
        tensors = {} if self.gt is None else {"gt": self.gt, "lq": self.lq}
        return {"tensors": tensors, "prompts": list(self.prompts), "filled": self.filled, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        if state.get("size") != self.size:
            raise ValueError(f"resume: the checkpoint's pair pool holds {state.get('size')} pairs, "
                             f"this run's degradation.queue_size is {self.size}")
        t = state["tensors"]
        self.gt, self.lq = (t["gt"].clone(), t["lq"].clone()) if t else (None, None)
        self.prompts, self.filled = list(state["prompts"]), int(state["filled"])


__all__ = ["PairPool"]
