"""The parts of a diffusion model HYPIR restores and trains with, for each backbone of the paper
(SD2.x, SDXL, SD3/SD3.5, Flux.1): loaded from a local diffusers directory or built from in-memory
configs (tiny models for tests and benchmarks). Nothing is ever downloaded.

A diffusers directory holds one subfolder per part, each as written by ``save_pretrained``:

======  ====================================================================================
sd2     ``vae/ unet/ text_encoder/ tokenizer/ scheduler/``
sdxl    sd2's + ``text_encoder_2/ tokenizer_2/`` (OpenCLIP-bigG with its projection)
sd3     ``vae/ transformer/ text_encoder/ tokenizer/ text_encoder_2/ tokenizer_2/ scheduler/``
        and, optionally, ``text_encoder_3/ tokenizer_3/`` (T5; absent, its states are zeros,
        as diffusers' SD3 pipeline does without it)
flux    ``vae/ transformer/ text_encoder/ tokenizer/ text_encoder_2/ tokenizer_2/ scheduler/``
        (CLIP-L for the pooled text, T5 for the sequence)
======  ====================================================================================
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .backbones import NAMES, detect_backbone

_CLIP, _CLIP_PROJ, _T5 = "CLIPTextModel", "CLIPTextModelWithProjection", "T5EncoderModel"
_CLIP_TOK, _T5_TOK = "CLIPTokenizer", "T5TokenizerFast"
# Each backbone's parts: subfolder -> (class, library). Optional parts are in OPTIONAL.
LAYOUTS: dict[str, dict[str, str]] = {
    "sd2": {"vae": "AutoencoderKL", "unet": "UNet2DConditionModel", "text_encoder": _CLIP, "tokenizer": _CLIP_TOK,
            "scheduler": "DDPMScheduler"},
    "sd3": {"vae": "AutoencoderKL", "transformer": "SD3Transformer2DModel", "text_encoder": _CLIP_PROJ,
            "tokenizer": _CLIP_TOK, "text_encoder_2": _CLIP_PROJ, "tokenizer_2": _CLIP_TOK,
            "text_encoder_3": _T5, "tokenizer_3": _T5_TOK, "scheduler": "FlowMatchEulerDiscreteScheduler"},
    "flux": {"vae": "AutoencoderKL", "transformer": "FluxTransformer2DModel", "text_encoder": _CLIP,
             "tokenizer": _CLIP_TOK, "text_encoder_2": _T5, "tokenizer_2": _T5_TOK,
             "scheduler": "FlowMatchEulerDiscreteScheduler"},
}
# SD2.1-base ships a PNDM config, SDXL an Euler one; their betas are the DDPM ones the one-step
# formula needs, so both load as DDPMScheduler.
LAYOUTS["sdxl"] = {**LAYOUTS["sd2"], "text_encoder_2": _CLIP_PROJ, "tokenizer_2": _CLIP_TOK}
OPTIONAL = {"sd3": ("text_encoder_3", "tokenizer_3")}
SUBFOLDERS = tuple(LAYOUTS["sd2"])  # SD2's, the layout most messages name
# What each part's folder must contain for from_pretrained to load it without a network: any one
# of the alternatives (a CLIP tokenizer as released, vocab + merges, or as transformers 5 writes it).
_FILES = {"model": [("config.json",)], "scheduler": [("scheduler_config.json",)],
          _CLIP_TOK: [("vocab.json", "merges.txt"), ("tokenizer.json",)],
          _T5_TOK: [("tokenizer.json",), ("spiece.model",)]}

# SD2.1-base's noise schedule (DDPM, epsilon prediction).
SD21_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="epsilon", clip_sample=False,
)


def _required_files(cls: str, sub: str):
    return _FILES.get(cls) or _FILES["scheduler" if sub == "scheduler" else "model"]


@dataclass
class Components:
    """The parts of one backbone (diffusers / transformers objects; :data:`LAYOUTS`). The denoiser
    is ``unet`` (SD2, SDXL) or ``transformer`` (SD3, Flux); the parts a backbone lacks are None."""

    vae: torch.nn.Module
    unet: torch.nn.Module | None
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    text_encoder_2: torch.nn.Module | None = None
    tokenizer_2: object | None = None
    transformer: torch.nn.Module | None = None
    text_encoder_3: torch.nn.Module | None = None
    tokenizer_3: object | None = None

    @property
    def backbone(self) -> str:
        """``"sd2"``, ``"sdxl"``, ``"sd3"`` or ``"flux"`` (from the denoiser's class and the text encoders)."""
        if self.transformer is not None:
            return "flux" if type(self.transformer).__name__ == "FluxTransformer2DModel" else "sd3"
        return "sdxl" if self.text_encoder_2 is not None else "sd2"

    @property
    def denoiser(self) -> torch.nn.Module:
        """The network HYPIR's LoRA adapts: the UNet or the transformer."""
        return self.transformer if self.transformer is not None else self.unet

    @denoiser.setter
    def denoiser(self, module) -> None:
        if self.transformer is not None:
            self.transformer = module
        else:
            self.unet = module

    @property
    def vae_scale(self) -> int:
        """Pixels per latent pixel (8 for every backbone here)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def unet_align(self) -> int:
        """Latent sizes must be multiples of this for the denoiser: the UNet's down/up-sampling,
        SD3's patch size, Flux's 2x2 packing."""
        if self.transformer is not None:
            return 2
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write a diffusers-format directory (the layout :func:`load_components` reads)."""
        path = Path(path)
        for name in LAYOUTS[self.backbone]:
            part = getattr(self, name)
            if part is not None:
                part.save_pretrained(path / name)
        return path


def check_model_dir(path: str | os.PathLike) -> Path:
    """Raise ``FileNotFoundError`` naming what is missing from a diffusers directory of its backbone
    (:func:`hypir.models.backbones.detect_backbone`; a directory that does not say is taken as SD2's)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"base_model: {str(path)!r} is not a directory (expected a local diffusers "
                                f"SD2.1-base directory with {', '.join(s + '/' for s in SUBFOLDERS)}, or an SDXL, "
                                f"SD3 or Flux.1 one)")
    backbone = detect_backbone(path) or "sd2"
    layout, optional = LAYOUTS[backbone], OPTIONAL.get(backbone, ())
    missing = []
    for sub, cls in layout.items():
        if sub in optional and not (path / sub).exists():
            continue
        alternatives = _required_files(cls, sub)
        if not any(all((path / sub / f).is_file() for f in files) for files in alternatives):
            missing.append(" or ".join("+".join(f"{sub}/{f}" for f in files) for files in alternatives))
    if missing:
        raise FileNotFoundError(f"base_model: {str(path)!r} lacks {', '.join(missing)} (expected a diffusers "
                                f"{NAMES[backbone]} directory: {', '.join(s + '/' for s in layout)})")
    return path


def _class(name: str):
    import diffusers
    import transformers

    return getattr(diffusers, name, None) or getattr(transformers, name)


def load_components(path: str | os.PathLike) -> Components:
    """Load a backbone's parts from a local diffusers directory in float32 (no download: every
    ``from_pretrained`` runs with ``local_files_only=True``)."""
    from ..files import FileFormatError, check_safetensors

    path = check_model_dir(path)
    backbone = detect_backbone(path) or "sd2"
    name = NAMES[backbone]
    for weights in sorted(path.glob("*/*.safetensors")):  # a truncated part is named, not left to the loaders
        check_safetensors(weights, "base_model", f"the {weights.parent.name} weights of a diffusers {name} directory")

    def part(sub: str, cls_name: str):
        cls = _class(cls_name)
        kw = dict(local_files_only=True)
        if sub.startswith("text_encoder"):
            kw["dtype"] = torch.float32
        elif sub in ("vae", "unet", "transformer"):
            kw["torch_dtype"] = torch.float32
        try:
            module = cls.from_pretrained(path / sub, **kw)
        except (OSError, ValueError, RuntimeError) as e:
            raise FileFormatError("base_model", path / sub, f"the {sub} of a diffusers {name} directory",
                                  f"a part that does not load ({type(e).__name__}: {str(e).strip() or e!r})") from None
        return module.eval() if isinstance(module, torch.nn.Module) else module

    optional = OPTIONAL.get(backbone, ())
    parts = {sub: part(sub, cls) for sub, cls in LAYOUTS[backbone].items()
             if sub not in optional or (path / sub).exists()}
    parts.setdefault("unet", None)
    return Components(**parts)


def build_components(vae: dict, unet: dict | None, text_encoder: dict, tokenizer, scheduler: dict | None = None,
                     seed: int = 0, text_encoder_2: dict | None = None, tokenizer_2=None, *,
                     backbone: str | None = None, transformer: dict | None = None, text_encoder_3: dict | None = None,
                     tokenizer_3=None) -> Components:
    """Components with random weights from configs: diffusers model kwargs for ``vae``, ``unet``
    / ``transformer``, transformers config kwargs for the text encoders (``CLIPTextConfig``,
    ``T5Config``), tokenizer objects, scheduler kwargs (default: SD2.1-base's DDPM schedule, or
    flow matching for SD3/Flux). ``backbone`` (:data:`LAYOUTS`) defaults to "sdxl" with a second
    text encoder, else "sd2"; "sd3"/"flux" need ``transformer``."""
    import transformers

    backbone = backbone or ("sdxl" if text_encoder_2 is not None else "sd2")
    if backbone not in LAYOUTS:
        raise ValueError(f"backbone: expected one of {tuple(LAYOUTS)}, got {backbone!r}")
    layout = LAYOUTS[backbone]
    if (transformer is None) == ("transformer" in layout):
        raise ValueError(f"transformer: {backbone} {'needs' if 'transformer' in layout else 'has no'} a transformer config")

    def encoder(sub, cfg):
        if cfg is None:
            return None
        cls = _class(layout[sub])
        config_cls = transformers.T5Config if layout[sub] == _T5 else transformers.CLIPTextConfig
        return cls(config_cls(**cfg)).eval()

    torch.manual_seed(seed)
    sched_cls = _class(layout["scheduler"])
    return Components(
        vae=_class("AutoencoderKL")(**vae).eval(),
        unet=None if unet is None else _class("UNet2DConditionModel")(**unet).eval(),
        text_encoder=encoder("text_encoder", text_encoder),
        tokenizer=tokenizer,
        scheduler=sched_cls(**(scheduler or (SD21_SCHEDULER if sched_cls.__name__ == "DDPMScheduler" else {}))),
        text_encoder_2=encoder("text_encoder_2", text_encoder_2),
        tokenizer_2=tokenizer_2,
        transformer=None if transformer is None else _class(layout["transformer"])(**transformer).eval(),
        text_encoder_3=encoder("text_encoder_3", text_encoder_3),
        tokenizer_3=tokenizer_3,
    )
