"""HYPIR's LoRA on the SD2 UNet and its checkpoint format.

As released: peft ``LoraConfig(r=256, lora_alpha=256, init_lora_weights="gaussian",
target_modules=HYPIR_TARGETS)`` added with ``unet.add_adapter``. A checkpoint is a state dict whose
keys are exactly the UNet's parameter names containing ``lora`` (adapter ``default``), stored as
``.safetensors`` or ``.pth``. Checkpoints of this project may also hold the texture-richness
embedding (keys under ``class_embedding.``, see :mod:`hypir.models.texture`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..files import FileFormatError, check_keys, read_state_dict, save_tensors
from .texture import TEXTURE_PREFIX, attach_texture_embedding, has_texture_embedding

HYPIR_TARGETS = ("to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut", "conv_out",
                 "proj_in", "proj_out", "ff.net.2", "ff.net.0.proj")

# Transformer backbones (issue 24): the released SD2 recipe carried over -- every layer of every
# block (attention and MLP, of the image and the text stream) and the output projection, not the
# time/text embedders or the input projection. adaLN modulation (``norm1.linear``,
# ``norm1_context.linear``, ``norm.linear``) is left out as SD2's time embedding is: at HYPIR's fixed
# noise level its input varies only with the pooled prompt. ``LoraSpec(targets=...)`` changes it.
SD3_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
               "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "proj_out")
FLUX_TARGETS = SD3_TARGETS + ("proj_mlp",)  # Flux's single-stream blocks: fused q/k/v + MLP in, proj_out out
# SDXL's UNet has SD2's module names.
BACKBONE_TARGETS = {"sd2": HYPIR_TARGETS, "sdxl": HYPIR_TARGETS, "sd3": SD3_TARGETS, "flux": FLUX_TARGETS}
_DENOISER_TARGETS = {"SD3Transformer2DModel": SD3_TARGETS, "FluxTransformer2DModel": FLUX_TARGETS}


def targets_for(denoiser: torch.nn.Module) -> tuple[str, ...]:
    """The LoRA targets of a denoiser's class (:data:`BACKBONE_TARGETS`; a UNet: the released ones)."""
    return _DENOISER_TARGETS.get(type(denoiser).__name__, HYPIR_TARGETS)


@dataclass(frozen=True)
class LoraSpec:
    """Rank, alpha and target module names; the defaults are the released HYPIR's."""

    rank: int = 256
    alpha: float | None = None  # None: equal to rank (scale 1), as released
    targets: tuple[str, ...] = HYPIR_TARGETS

    def config(self):
        from peft import LoraConfig

        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"rank: expected a positive int, got {self.rank!r}")
        return LoraConfig(r=self.rank, lora_alpha=self.rank if self.alpha is None else self.alpha,
                          init_lora_weights="gaussian", target_modules=list(self.targets))


def add_lora(unet: torch.nn.Module, spec: LoraSpec = LoraSpec()) -> torch.nn.Module:
    """Add the LoRA adapter to a diffusers UNet (or transformer: use the spec's targets from
    :data:`BACKBONE_TARGETS`) in place (``add_adapter``); returns it."""
    unet.add_adapter(spec.config())
    return unet


def lora_state_dict(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The released checkpoint content: every UNet state-dict entry whose name contains ``lora``,
    plus the texture embedding if the UNet has one."""
    return {k: v.detach().clone() for k, v in unet.state_dict().items() if "lora" in k or k.startswith(TEXTURE_PREFIX)}


def _write_state(state: dict[str, torch.Tensor], path: Path) -> Path:
    """``.safetensors`` or ``.pth`` (plain ``torch.save`` of a dict of tensors), atomically."""
    if path.suffix not in (".safetensors", ".pth", ".pt"):
        raise ValueError(f"path: expected a .safetensors or .pth file name, got {str(path)!r}")
    return save_tensors(path, state)


def save_checkpoint(unet: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write :func:`lora_state_dict` as ``.safetensors`` (or ``.pth``), atomically."""
    return _write_state(lora_state_dict(unet), Path(path))


def save_released(unet: torch.nn.Module, path: str | os.PathLike,
                  texture_path: str | os.PathLike | None = None) -> list[Path]:
    """Write the file the official HYPIR enhancer loads: a ``.pth`` (``torch.save``) of exactly the
    UNet's ``lora`` state-dict entries, in float32 -- the key set ``SD2Enhancer.init_generator``
    asserts equal to its own. The texture embedding, which the official code has no place for,
    goes to ``texture_path`` (``.safetensors``) when the UNet has one; refused without it.
    Returns the paths written."""
    path = Path(path)
    if path.suffix != ".pth":
        raise ValueError(f"path: the official loader reads a .pth file (torch.load), got {str(path)!r}")
    state = lora_state_dict(unet)
    lora = {k: v.float() for k, v in state.items() if not k.startswith(TEXTURE_PREFIX)}
    texture = {k: v for k, v in state.items() if k.startswith(TEXTURE_PREFIX)}
    if texture and texture_path is None:
        raise ValueError("texture_path: the UNet has a texture embedding, which the released format cannot hold; "
                         "give a .safetensors file for it")
    written = [_write_state(lora, path)]
    if texture:
        written.append(_write_state(texture, Path(texture_path)))
    return written


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint's tensors on the CPU, safetensors or torch file chosen by content
    (:func:`hypir.files.read_state_dict`): a pickle holding anything but tensors and containers is
    refused, never executed; a damaged file raises :class:`hypir.files.FileFormatError`."""
    return read_state_dict(path, "weights")


def checkpoint_rank(state: dict[str, torch.Tensor]) -> int:
    """The LoRA rank of a checkpoint (the rows of its ``lora_A`` weights)."""
    ranks = {v.shape[0] for k, v in state.items() if ".lora_A." in k}
    if len(ranks) != 1:
        raise ValueError(f"weights: expected one LoRA rank across the lora_A weights, found {sorted(ranks) or 'none'}")
    return ranks.pop()


def load_checkpoint(unet: torch.nn.Module, state: dict[str, torch.Tensor] | str | os.PathLike,
                    spec: LoraSpec | None = None, *, source: str | os.PathLike | None = None) -> LoraSpec:
    """Add the adapter to ``unet`` and load a HYPIR checkpoint into it; returns the spec used.

    ``spec`` defaults to the denoiser's targets (:func:`targets_for`: the released ones on a UNet)
    with the checkpoint's rank and alpha = rank. A
    checkpoint with texture-embedding keys attaches that embedding too. Any missing or unexpected
    key, or a shape mismatch, raises ``ValueError`` naming them, before ``unet`` is changed.
    """
    source = source or "<state dict>"  # the file a given state dict was read from, for the messages
    if not isinstance(state, dict):
        source, state = state, read_checkpoint(state)
    try:
        spec = spec or LoraSpec(rank=checkpoint_rank(state), targets=targets_for(unet))
    except ValueError as e:
        raise FileFormatError("weights", source, "a HYPIR checkpoint (LoRA weights of the UNet)",
                              str(e).removeprefix("weights: ")) from None
    with_texture = any(k.startswith(TEXTURE_PREFIX) for k in state)
    own = _expected_entries(unet, spec, with_texture)
    check_keys(state, own, "weights", source,
               f"a HYPIR checkpoint for this UNet (LoRA rank {spec.rank} on {len(spec.targets)} targets)")
    add_lora(unet, spec)
    if with_texture and not has_texture_embedding(unet):
        attach_texture_embedding(unet)
    unet.load_state_dict({k: state[k] for k in own}, strict=False)
    return spec


def _expected_entries(unet: torch.nn.Module, spec: LoraSpec, with_texture: bool) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the checkpoint entries ``unet`` would have with the adapter, computed on a
    weightless (meta-device) copy so a refused checkpoint leaves ``unet`` untouched."""
    with torch.device("meta"):
        skeleton = type(unet).from_config(unet.config)
        add_lora(skeleton, spec)
        if with_texture:
            attach_texture_embedding(skeleton)
    return {k: tuple(v.shape) for k, v in skeleton.state_dict().items() if "lora" in k or k.startswith(TEXTURE_PREFIX)}


def merge_and_unload(unet: torch.nn.Module) -> list[str]:
    """For inference: merge the LoRA into the base weights (:func:`hypir_kernels.lora.merge`, fp32
    accumulation, one rounding) and put each base layer back in place of its LoRA wrapper, so the
    UNet runs as a plain diffusers UNet -- no adapter weights in memory, no wrapper per call.
    Returns the merged layer names."""
    from hypir_kernels.lora import merge

    names = merge(unet)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = unet.get_submodule(parent_name) if parent_name else unet
        setattr(parent, child, getattr(parent, child).get_base_layer())
    return names
