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

from hypir_kernels import mri_adjoint, mri_column_mask, mri_forward

from ..metrics.features import fid_score
from .config import TaskConfig
from .data import Observations, coil_maps, corrupt
from .teacher import displayable


def fid_view(x: torch.Tensor) -> torch.Tensor:
    """What FID features see of samples ``[N, C, S, S]``: the images, or for 2-channel complex MRI
    samples their magnitude mapped to [-1, 1] (``|x| * 2 - 1``, the digits' scale)."""
    return displayable(x)


def zero_filled(y: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``|A^H y| * 2 - 1`` ``[N, 1, S, S]`` of multi-coil k-space ``y [N, Nc, S, S]`` (column ``mask [N, S]``)."""
    x = mri_adjoint(y, maps.expand(y.shape[0], -1, -1, -1), mask)
    return (x.abs()[:, None] * 2 - 1).clamp(-1, 1)


def data_view(data: Observations) -> torch.Tensor:
    """What FID features see of the observations ``[N, C, S, S]``: the corrupted images, or for MRI
    the zero-filled magnitudes ``|A^H y| * 2 - 1`` (``[N, 1, S, S]``)."""
    if not isinstance(data, Observations):
        raise ValueError(f"data: expected hypir.rsd.data.Observations, got {type(data).__name__}")
    if data.task == "mri" and (data.maps is None or data.mask is None):
        raise ValueError("data: MRI observations need their coil maps and column masks")
    return zero_filled(data.y, data.maps, data.mask) if data.task == "mri" else data.y


def observe(x: torch.Tensor, task: TaskConfig, seed: int) -> torch.Tensor:
    """``A(x) + sigma_n e`` for the task, with fresh draws from ``seed`` (new masks for inpainting;
    for MRI the zero-filled reconstruction under fresh column masks)."""
    if task.kind == "clean":
        return x
    if task.kind == "mri":
        if x.shape[1] != 2:
            raise ValueError(f"x: expected 2-channel complex MRI samples [N, 2, S, S], got {tuple(x.shape)}")
        n, size = x.shape[0], x.shape[-1]
        maps = coil_maps(task.coils, size)
        mask = mri_column_mask(n, size, task.acceleration, seed, center_fraction=task.center_fraction,
                               offsets=list(range(n)))
        xc = torch.view_as_complex(x.float().permute(0, 2, 3, 1).contiguous())
        return zero_filled(mri_forward(xc, maps.expand(n, -1, -1, -1), mask), maps, mask)
    return corrupt(x, task.kind, task.sigma_n, seed=seed, keep=task.keep, blur_sigma=task.blur_sigma,
                   blur_size=task.blur_size, sr_factor=task.sr_factor).y


def proximal_fid(net, samples: torch.Tensor, data: Observations, task: TaskConfig, seed: int = 12345) -> float:
    """FID between the samples seen through the task's corruption and the observations."""
    if data.task != task.kind:
        raise ValueError(f"data: observations of task {data.task!r}, but task.kind is {task.kind!r}")
    return fid_score(net, observe(samples, task, seed), data_view(data))
