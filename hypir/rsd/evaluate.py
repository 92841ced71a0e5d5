"""Scores of RSD models (paper §5.3): FID of samples against clean held-out images, and the
proximal FID -- the FID between the corrupted samples ``A(x_hat) + sigma_n e`` and the corrupted
training data, which needs no clean image and is what the paper selects checkpoints by.

Features come from a :class:`hypir.metrics.features.DigitFeatures` network (or any module with a
``features`` method); the FIDs are comparable only among themselves, not with Inception FIDs.

MRI: samples are 2-channel complex images; :func:`fid_view` scores their magnitude (the digits'
intensities), and the proximal FID compares zero-filled reconstructions ``|A^H y|`` of the
samples' k-space (fresh column masks) with those of the data.
"""
from __future__ import annotations

import torch

from ..metrics.features import fid_score
from .config import TaskConfig
from .data import Observations
from .tasks import TASKS, make_task
from .teacher import displayable


def fid_view(x: torch.Tensor) -> torch.Tensor:
    """What FID features see of samples ``[N, C, S, S]``: the images, or for 2-channel complex MRI
    samples their magnitude mapped to [-1, 1] (``|x| * 2 - 1``, the digits' scale)."""
    return displayable(x)


def data_view(data: Observations) -> torch.Tensor:
    """What FID features see of the observations ``[N, C, S, S]``: the corrupted images, or for MRI
    the zero-filled magnitudes ``|A^H y| * 2 - 1`` (``[N, 1, S, S]``)."""
    if not isinstance(data, Observations):
        raise ValueError(f"data: expected hypir.rsd.data.Observations, got {type(data).__name__}")
    return TASKS[data.task].data_view(data)


def observe(x: torch.Tensor, task: TaskConfig, seed: int) -> torch.Tensor:
    """``A(x) + sigma_n e`` for the task, with fresh draws from ``seed`` (new masks for inpainting;
    for MRI the zero-filled reconstruction under fresh column masks)."""
    return make_task(task).proximal_view(x, seed)


def proximal_fid(net, samples: torch.Tensor, data: Observations, task: TaskConfig, seed: int = 12345) -> float:
    """FID between the samples seen through the task's corruption and the observations."""
    if data.task != task.kind:
        raise ValueError(f"data: observations of task {data.task!r}, but task.kind is {task.kind!r}")
    return fid_score(net, observe(samples, task, seed), data_view(data))
