"""Scores of RSD models (paper §5.3): FID of samples against clean held-out images, and the
proximal FID -- the FID between the corrupted samples ``A(x_hat) + sigma_n e`` and the corrupted
training data, which needs no clean image and is what the paper selects checkpoints by.

Features come from a :class:`hypir.metrics.features.DigitFeatures` network (or any module with a
``features`` method); the FIDs are comparable only among themselves, not with Inception FIDs.
"""
from __future__ import annotations

import torch

from ..metrics.features import fid_score
from .config import TaskConfig
from .data import Observations, corrupt


def observe(x: torch.Tensor, task: TaskConfig, seed: int) -> torch.Tensor:
    """``A(x) + sigma_n e`` for the task, with fresh draws from ``seed`` (new masks for inpainting)."""
    if task.kind == "clean":
        return x
    return corrupt(x, task.kind, task.sigma_n, seed=seed, keep=task.keep, blur_sigma=task.blur_sigma,
                   blur_size=task.blur_size, sr_factor=task.sr_factor).y


def proximal_fid(net, samples: torch.Tensor, data: Observations, task: TaskConfig, seed: int = 12345) -> float:
    """FID between the samples seen through the task's corruption and the observations."""
    if data.task != task.kind:
        raise ValueError(f"data: observations of task {data.task!r}, but task.kind is {task.kind!r}")
    return fid_score(net, observe(samples, task, seed), data.y)
