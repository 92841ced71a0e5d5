"""Stable Diffusion 2.1-base components: loaded from a local diffusers directory or built from
in-memory configs (tiny models for tests and benchmarks). Nothing is ever downloaded.

A diffusers SD2.1-base directory holds ``vae/``, ``unet/``, ``text_encoder/``, ``tokenizer/`` and
``scheduler/``, each as written by ``save_pretrained`` (a ``config.json`` /
``scheduler_config.json`` and weights; the tokenizer's ``vocab.json`` and ``merges.txt``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .backbones import check_supported, detect_backbone

SUBFOLDERS = ("vae", "unet", "text_encoder", "tokenizer", "scheduler")
SDXL_SUBFOLDERS = SUBFOLDERS + ("text_encoder_2", "tokenizer_2")  # SDXL adds OpenCLIP-bigG and its tokenizer
# What each subfolder must contain for from_pretrained to load it without a network: any one of
# the alternatives (the tokenizer as released, vocab + merges, or as transformers 5 writes it).
_REQUIRED_FILES = {
    "vae": [("config.json",)],
    "unet": [("config.json",)],
    "text_encoder": [("config.json",)],
    "tokenizer": [("vocab.json", "merges.txt"), ("tokenizer.json",)],
    "scheduler": [("scheduler_config.json",)],
}
_REQUIRED_FILES_SDXL = {**_REQUIRED_FILES, "text_encoder_2": _REQUIRED_FILES["text_encoder"],
                        "tokenizer_2": _REQUIRED_FILES["tokenizer"]}

# SD2.1-base's noise schedule (DDPM, epsilon prediction).
SD21_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="epsilon", clip_sample=False,
)


@dataclass
class Components:
    """The five SD2 parts a restorer needs (diffusers / transformers objects); SDXL adds its second
    text encoder (``CLIPTextModelWithProjection``) and tokenizer, and a UNet with SDXL's added
    text/time embedding."""

    vae: torch.nn.Module
    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    text_encoder_2: torch.nn.Module | None = None
    tokenizer_2: object | None = None

    @property
    def backbone(self) -> str:
        """``"sdxl"`` with a second text encoder, else ``"sd2"``."""
        return "sdxl" if self.text_encoder_2 is not None else "sd2"

    @property
    def vae_scale(self) -> int:
        """Pixels per latent pixel (8 for SD)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def unet_align(self) -> int:
        """Latent sizes must be multiples of this for the UNet's down/up-sampling to line up."""
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write a diffusers-format directory (the layout :func:`load_components` reads)."""
        path = Path(path)
        for name in SDXL_SUBFOLDERS if self.backbone == "sdxl" else SUBFOLDERS:
            getattr(self, name).save_pretrained(path / name)
        return path


def check_model_dir(path: str | os.PathLike) -> Path:
    """Raise ``FileNotFoundError`` naming what is missing from a diffusers SD2 directory (``ValueError``
    for a directory of another backbone, :func:`hypir.models.backbones.check_supported`)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"base_model: {str(path)!r} is not a directory (expected a local diffusers "
                                f"SD2.1-base directory with {', '.join(s + '/' for s in SUBFOLDERS)})")
    check_supported(path)  # an SD3/Flux directory is named as such, not as one lacking unet/
    missing = []
    required = _REQUIRED_FILES_SDXL if detect_backbone(path) == "sdxl" else _REQUIRED_FILES
    for sub, alternatives in required.items():
        if not any(all((path / sub / f).is_file() for f in files) for files in alternatives):
            missing.append(" or ".join("+".join(f"{sub}/{f}" for f in files) for files in alternatives))
    if missing:
        raise FileNotFoundError(f"base_model: {str(path)!r} lacks {', '.join(missing)} (expected a diffusers "
                                f"SD2.1-base directory: {', '.join(s + '/' for s in SUBFOLDERS)})")
    return path


def load_components(path: str | os.PathLike) -> Components:
    """Load the SD2 components from a local diffusers directory in float32 (no download: every
    ``from_pretrained`` runs with ``local_files_only=True``)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from ..files import FileFormatError, check_safetensors

    path = check_model_dir(path)
    sdxl = detect_backbone(path) == "sdxl"
    for weights in sorted(path.glob("*/*.safetensors")):  # a truncated part is named, not left to the loaders
        check_safetensors(weights, "base_model", f"the {weights.parent.name} weights of a diffusers SD2.1-base directory")
    kw = dict(local_files_only=True)

    def part(sub, load):
        try:
            return load(path / sub)
        except (OSError, ValueError, RuntimeError) as e:
            raise FileFormatError("base_model", path / sub, f"the {sub} of a diffusers SD2.1-base directory",
                                  f"a part that does not load ({type(e).__name__}: {str(e).strip() or e!r})") from None

    return Components(
        vae=part("vae", lambda p: AutoencoderKL.from_pretrained(p, torch_dtype=torch.float32, **kw).eval()),
        unet=part("unet", lambda p: UNet2DConditionModel.from_pretrained(p, torch_dtype=torch.float32, **kw).eval()),
        text_encoder=part("text_encoder", lambda p: CLIPTextModel.from_pretrained(p, dtype=torch.float32, **kw).eval()),
        tokenizer=part("tokenizer", lambda p: CLIPTokenizer.from_pretrained(p, **kw)),
        # SD2.1-base ships a PNDM config, SDXL an Euler one; their betas are the DDPM ones the
        # one-step formula needs.
        scheduler=part("scheduler", lambda p: DDPMScheduler.from_pretrained(p, **kw)),
        text_encoder_2=part("text_encoder_2", lambda p: CLIPTextModelWithProjection.from_pretrained(
            p, dtype=torch.float32, **kw).eval()) if sdxl else None,
        tokenizer_2=part("tokenizer_2", lambda p: CLIPTokenizer.from_pretrained(p, **kw)) if sdxl else None,
    )


def build_components(vae: dict, unet: dict, text_encoder: dict, tokenizer, scheduler: dict | None = None,
                     seed: int = 0, text_encoder_2: dict | None = None, tokenizer_2=None) -> Components:
    """Components with random weights from configs (diffusers ``AutoencoderKL`` /
    ``UNet2DConditionModel`` kwargs, a transformers ``CLIPTextConfig`` kwargs dict) and a
    tokenizer object; ``scheduler`` defaults to SD2.1-base's. SDXL: ``text_encoder_2`` (a
    ``CLIPTextConfig`` dict for ``CLIPTextModelWithProjection``) and ``tokenizer_2``."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    return Components(
        vae=AutoencoderKL(**vae).eval(),
        unet=UNet2DConditionModel(**unet).eval(),
        text_encoder=CLIPTextModel(CLIPTextConfig(**text_encoder)).eval(),
        tokenizer=tokenizer,
        scheduler=DDPMScheduler(**(scheduler or SD21_SCHEDULER)),
        text_encoder_2=None if text_encoder_2 is None else CLIPTextModelWithProjection(
            CLIPTextConfig(**text_encoder_2)).eval(),
        tokenizer_2=tokenizer_2,
    )


# The VAE parts stage 1 (degradation pre-removal) fine-tunes: the encoder and its quant_conv.
ENCODER_PREFIXES = ("encoder.", "quant_conv.")


def encoder_state(vae: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The VAE's encoder weights (``encoder.*``, ``quant_conv.*``, AutoencoderKL names)."""
    return {k: v for k, v in vae.state_dict().items() if k.startswith(ENCODER_PREFIXES)}


def save_encoder(vae: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write the VAE's encoder weights (a stage-1 result) as a safetensors file."""
    from ..files import save_tensors

    return save_tensors(path, encoder_state(vae))


def load_encoder(vae: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load a stage-1 encoder file (:func:`save_encoder`) into ``vae`` in place; the decoder is kept.
    Raises ``ValueError`` naming the keys when the file is not this VAE's encoder."""
    from ..files import check_keys, read_state_dict

    state = read_state_dict(path, "encoder")
    own = encoder_state(vae)
    check_keys(state, {k: tuple(v.shape) for k, v in own.items()}, "encoder", path,
               "the VAE encoder of a stage-1 `hypir train` run for this model")
    with torch.no_grad():
        params = dict(vae.named_parameters()) | dict(vae.named_buffers())
        for k, v in state.items():
            params[k].copy_(v)


class EncodeDecode(torch.nn.Module):
    """Stage 1's network ``D(E(x))`` on images in [-1, 1]: the VAE's posterior mean, or a sample
    drawn from ``seed``, decoded."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        dist = self.vae.encode(x).latent_dist
        if seed is None:
            z = dist.mode()
        else:
            z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=torch.Generator().manual_seed(seed)).to(dist.mean)
        return self.vae.decode(z).sample


def _continuous_output_channels_last(self, hidden_states, residual, batch_size, height, width, inner_dim):
    """diffusers' ``Transformer2DModel._get_output_for_continuous_inputs`` without its
    ``.contiguous()``: the ``[B, H, W, C] -> [B, C, H, W]`` permutation is already a channels-last
    view, so the block hands channels-last on (diffusers copies it to NCHW, and every resnet and
    up-block after an attention block then ran NCHW)."""
    if not self.use_linear_projection:
        hidden_states = self.proj_out(hidden_states.reshape(batch_size, height, width, inner_dim).permute(0, 3, 1, 2))
    else:
        hidden_states = self.proj_out(hidden_states).reshape(batch_size, height, width, inner_dim).permute(0, 3, 1, 2)
    return hidden_states + residual


def keep_channels_last(unet: torch.nn.Module) -> int:
    """Make every continuous-input ``Transformer2DModel`` of ``unet`` return channels-last outputs
    (same values; run the UNet with channels-last inputs and weights). Returns how many blocks were
    changed; 0 when this diffusers version has no such method (the UNet then runs as before)."""
    import types

    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    if not hasattr(Transformer2DModel, "_get_output_for_continuous_inputs"):
        return 0
    n = 0
    for m in unet.modules():
        if isinstance(m, Transformer2DModel) and getattr(m, "is_input_continuous", False):
            m._get_output_for_continuous_inputs = types.MethodType(_continuous_output_channels_last, m)
            n += 1
    return n
