"""A phase-I teacher: the EDM-preconditioned ``UNet2DModel``, its one-file export (weights plus a
JSON description of the network and the task it learnt, so ``hypir rsd sample`` needs nothing
else), and sampling from it.

Sampling follows the objective: Heun (EDM, deterministic) for noiseless data, the truncated
Ambient-Tweedie sampler when the data had noise ``sigma_n``; an Ambient-inpainting teacher is
called with a further mask drawn once per sample from the training distribution (keep x (1 - delta)),
the "fixed mask" sampler of Ambient Diffusion; an MRI teacher likewise with a further column mask,
on ``A~^H A~ x_t`` (our choice; the paper does not spell its sampler out). MRI samples are
2-channel complex images ``[N, 2, S, S]``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from ..files import FileFormatError, check_keys, read_state_dict, safetensors_metadata, save_tensors
from .config import NetConfig, TaskConfig
from .edm import EDMPrecond, ambient_tweedie_sample, heun_sample
from .tasks import Task, make_task


def build_denoiser(net: NetConfig, image_channels: int, cond_channels: int, size: int, seed: int = 0) -> EDMPrecond:
    """``EDMPrecond(UNet2DModel)`` taking ``image_channels + cond_channels`` inputs."""
    from diffusers import UNet2DModel

    levels = len(net.channels)
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    if net.attention and levels > 1:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=size, in_channels=image_channels + cond_channels, out_channels=image_channels,
                       block_out_channels=tuple(net.channels), layers_per_block=net.layers_per_block,
                       down_block_types=tuple(down), up_block_types=tuple(up), norm_num_groups=8,
                       dropout=net.dropout, attention_head_dim=8)
    return EDMPrecond(unet)


def displayable(x: torch.Tensor) -> torch.Tensor:
    """Samples for a grid: 2-channel complex images as their magnitude, mapped to [-1, 1]."""
    if x.shape[1] == 2:
        return (torch.linalg.vector_norm(x, dim=1, keepdim=True) * 2 - 1).clamp(-1, 1)
    return x


# Written into every export; an inpainting teacher without it was trained with EDM's plain coefficients
# on unseen pixels (before ``seen``, see hypir.rsd.edm) and is refused.
PRECONDITIONING = "edm+seen"


def write_described(path: str | os.PathLike, module: torch.nn.Module, key: str, meta: dict) -> Path:
    """``module``'s state dict and a JSON ``meta`` (under metadata ``key``) as one safetensors file,
    written atomically (:func:`hypir.files.save_tensors`)."""
    return save_tensors(path, module.state_dict(), metadata={key: json.dumps(meta)})


def save_teacher(model: EDMPrecond, path: str | os.PathLike, net: NetConfig, task: TaskConfig, image_channels: int,
                 size: int, **info) -> Path:
    meta = {"net": asdict(net), "task": asdict(task), "image_channels": image_channels, "size": size,
            "preconditioning": PRECONDITIONING, **info}
    return write_described(path, model, "hypir_rsd_teacher", meta)


def read_description(path: str | os.PathLike, key: str) -> dict | None:
    """The JSON description under metadata ``key`` of a safetensors file (``None`` when the file has
    none); a missing, damaged or non-safetensors file is an error naming ``checkpoint``."""
    wanted = "an RSD teacher or student (.safetensors from `hypir rsd pretrain|distill`)"
    meta = safetensors_metadata(path, "checkpoint", wanted).get(key)
    if meta is None:
        return None
    try:
        meta = json.loads(meta)
        meta["net"] = NetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["net"].items()})
        meta["task"] = TaskConfig(**meta["task"])
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise FileFormatError("checkpoint", path, wanted, f"a damaged {key} description ({e})") from None
    return meta


def load_described(path: str | os.PathLike, module: torch.nn.Module) -> None:
    """Load the tensors of a :func:`write_described` file into ``module``, naming any key or shape
    that does not fit (a damaged or foreign file) instead of torch's multi-line message."""
    state = read_state_dict(path, "checkpoint")
    check_keys(state, {k: tuple(v.shape) for k, v in module.state_dict().items()}, "checkpoint", path,
               "the tensors its description promises")
    module.load_state_dict(state)


def load_teacher(path: str | os.PathLike) -> tuple[EDMPrecond, dict]:
    """``(model in eval mode, description)`` of a file written by :func:`save_teacher`."""
    meta = read_description(path, "hypir_rsd_teacher")
    if meta is None:
        raise ValueError(f"checkpoint: {str(path)!r} is not an RSD teacher (written by `hypir rsd pretrain`)")
    task = make_task(meta["task"])
    if task.masked_pixels and meta.get("preconditioning") != PRECONDITIONING:
        raise ValueError(f"checkpoint: {str(path)!r} is an inpainting teacher from before the masked preconditioning "
                         "(its samples collapse to the masked input); retrain it with `hypir rsd pretrain`")
    model = build_denoiser(meta["net"], meta["image_channels"], task.cond_channels, meta["size"])
    load_described(path, model)
    return model.eval().requires_grad_(False), meta


@torch.no_grad()
def sample(model: EDMPrecond, task: TaskConfig | Task, shape: tuple[int, int, int, int], seed: int = 0, steps: int = 18,
           device: str | torch.device = "cpu", progress: bool = False) -> torch.Tensor:
    """``shape = (N, C, S, S)`` samples in [-1, 1] (see the module doc for the sampler used); a
    masked teacher sees them through the task's fixed masks (:meth:`Task.denoise_fixed`)."""
    task = make_task(task)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
    cond = task.fixed_conditioning(shape[0], shape[-1], seed + 1, device)

    def denoise(x, sigma):
        return task.denoise_fixed(model, cond, x, sigma)

    if task.sigma_n > 0:
        out = ambient_tweedie_sample(denoise, noise, task.sigma_n, steps=steps)
    else:
        out = heun_sample(denoise, noise, steps=steps, progress=progress)
    return out.clamp(-1, 1)
