"""The backbones HYPIR runs on (paper §4.3: SD2, SDXL, SD3, Flux.1) behind one interface.

:func:`detect_backbone` says which one a local diffusers directory holds. :class:`Backbone` (made by
:func:`make_backbone` from :class:`hypir.models.components.Components`) is everything the restorer
and the trainer do differently per backbone:

* the text conditioning of a prompt (:meth:`Backbone.encode_text`: the states the denoiser
  attends to and, except SD2, a pooled embedding), encoded as diffusers' pipelines do;
* the latent space (:meth:`~Backbone.to_latent` / :meth:`~Backbone.from_latent`: the VAE's
  ``scaling_factor`` and, SD3/Flux, ``shift_factor``);
* the one step (:meth:`Backbone.__call__`): SD2/SDXL the DDPM formula
  (:class:`hypir.models.onestep.OneStep`), SD3/Flux the flow-matching one
  (:class:`hypir.models.flow.FlowOneStep`) at ``sigma = model_t / 1000``, with the denoiser's
  inputs in each backbone's form (SDXL's added text/time embedding; Flux's packed 2x2 latents,
  RoPE ids and guidance);
* the texture-richness embedding's place (``class_labels``: the UNet's class embedding, the
  transformers' time embedding, :func:`hypir.models.texture.attach_texture_embedding`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

# model_index.json's pipeline class -> backbone
PIPELINES = {
    "StableDiffusionPipeline": "sd2", "StableDiffusionImg2ImgPipeline": "sd2", "StableDiffusionUpscalePipeline": "sd2",
    "StableDiffusionXLPipeline": "sdxl", "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3", "StableDiffusion3Img2ImgPipeline": "sd3",
    "FluxPipeline": "flux", "FluxImg2ImgPipeline": "flux",
}
TRANSFORMERS = {"SD3Transformer2DModel": "sd3", "FluxTransformer2DModel": "flux"}
NAMES = {"sd2": "SD2.x", "sdxl": "SDXL", "sd3": "SD3/SD3.5", "flux": "Flux.1"}


def _class_name(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def detect_backbone(path: str | os.PathLike) -> str | None:
    """``"sd2"``, ``"sdxl"``, ``"sd3"`` or ``"flux"`` for a diffusers directory, or None when it
    does not say: from ``model_index.json``'s pipeline class, else from the denoiser's config (a
    ``transformer/`` of SD3's or Flux's class; a ``unet/`` with SDXL's text-time embedding)."""
    path = Path(path)
    pipeline = _class_name(path / "model_index.json")
    if pipeline in PIPELINES:
        return PIPELINES[pipeline]
    transformer = _class_name(path / "transformer" / "config.json")
    if transformer in TRANSFORMERS:
        return TRANSFORMERS[transformer]
    try:
        unet = json.loads((path / "unet" / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(unet, dict):
        return None
    return "sdxl" if unet.get("addition_embed_type") == "text_time" else "sd2"


FLUX_GUIDANCE = 3.5  # diffusers' FluxPipeline default, for guidance-distilled Flux.1 [dev] models


@dataclass
class TextConditioning:
    """A prompt's conditioning: ``text`` ``[B, L, D]`` states the denoiser attends to; ``pooled``
    ``[B, P]`` (SDXL, SD3, Flux) or None (SD2)."""

    text: torch.Tensor
    pooled: torch.Tensor | None = None

    def to(self, *args, **kwargs) -> TextConditioning:
        return TextConditioning(self.text.to(*args, **kwargs), None if self.pooled is None else self.pooled.to(*args, **kwargs))

    def expand(self, n: int) -> TextConditioning:
        """Batch ``n`` from batch 1 (or n)."""
        return TextConditioning(self.text.expand(n, -1, -1), None if self.pooled is None else self.pooled.expand(n, -1))

    @staticmethod
    def cat(items: list[TextConditioning]) -> TextConditioning:
        pooled = None if items[0].pooled is None else torch.cat([c.pooled for c in items])
        return TextConditioning(torch.cat([c.text for c in items]), pooled)


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _token_ids(tokenizer, prompt: str, max_length: int, device) -> torch.Tensor:
    return tokenizer(prompt, padding="max_length", max_length=max_length, truncation=True,
                     return_tensors="pt").input_ids.to(device)


def _clip_states(encoder, tokenizer, prompt: str):
    """(penultimate hidden states, first output) of a CLIP text encoder, as diffusers' SDXL/SD3 pipelines take them."""
    out = encoder(_token_ids(tokenizer, prompt, tokenizer.model_max_length, _device(encoder)), output_hidden_states=True)
    return out.hidden_states[-2], out[0]


class Backbone:
    """One backbone's conditioning, latent space and one step (see the module docstring).

    Args:
        components: the backbone's parts.
        model_t: the timestep the denoiser is called at (SD2/SDXL: of 1000 DDPM steps; SD3/Flux:
            ``sigma = model_t / 1000``).
        coeff_t: SD2/SDXL: the timestep whose ``abar`` turns the prediction into ``x0``; SD3/Flux
            have no such choice and require ``coeff_t == model_t``.
    """

    name = "sd2"

    def __init__(self, components, model_t: int = 200, coeff_t: int = 200):
        self.components = components
        self.model_t, self.coeff_t = model_t, coeff_t

    # ---- the denoiser and the latent space ----------------------------------------------------

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.components.denoiser

    @property
    def latent_channels(self) -> int:
        return self.components.vae.config.latent_channels

    @property
    def native_size(self) -> int:
        """The short side in pixels the model works best at (images smaller are enlarged to it)."""
        return self.components.unet.config.sample_size * self.components.vae_scale

    @property
    def max_latent(self) -> int | None:
        """The largest latent side the denoiser takes (SD3's position embedding), or None."""
        return None

    def to_latent(self, z: torch.Tensor) -> torch.Tensor:
        """VAE latent -> the denoiser's: ``(z - shift_factor) * scaling_factor``."""
        cfg = self.components.vae.config
        shift = getattr(cfg, "shift_factor", None)
        return (z if shift is None else z - shift) * cfg.scaling_factor

    def from_latent(self, z: torch.Tensor) -> torch.Tensor:
        """The denoiser's latent -> the VAE's: ``z / scaling_factor + shift_factor``."""
        cfg = self.components.vae.config
        shift = getattr(cfg, "shift_factor", None)
        z = z / cfg.scaling_factor
        return z if shift is None else z + shift

    def check_latent(self, z) -> None:
        """``z``: a floating ``[B, latent_channels, h, w]`` tensor, B, h, w > 0 (flow models: h, w even)."""
        c = self.latent_channels
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or z.shape[1] != c or not z.is_floating_point() or 0 in z.shape:
            shape = f"{tuple(z.shape)} {z.dtype}" if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z: expected a floating [B, {c}, h, w] latent of the {NAMES[self.name]} VAE, got {shape}")

    def add_noise(self, z: torch.Tensor, eps: torch.Tensor, strength: float) -> torch.Tensor:
        """The restorer's generativity control: ``z + strength * eps`` before the one step."""
        return z + strength * eps

    # ---- conditioning -------------------------------------------------------------------------

    def encode_text(self, prompt: str) -> TextConditioning:
        """Batch-1 conditioning of ``prompt`` on the text encoders' device and dtype."""
        c = self.components
        return TextConditioning(c.text_encoder(_token_ids(c.tokenizer, prompt, c.tokenizer.model_max_length,
                                                          _device(c.text_encoder)))[0])

    @property
    def text_encoders(self) -> list[torch.nn.Module]:
        c = self.components
        return [m for m in (c.text_encoder, c.text_encoder_2, c.text_encoder_3) if m is not None]

    # ---- the one step -------------------------------------------------------------------------

    def __call__(self, denoiser: torch.nn.Module, z: torch.Tensor, cond: TextConditioning,
                 texture: torch.Tensor | None = None) -> torch.Tensor:
        """``z [B, C, h, w]`` (the denoiser's latent of the LQ image) -> ``x0 [B, C, h, w]`` in z's
        dtype. ``cond`` batch 1 or B; ``texture`` ``[1 or B]`` richness or None."""
        raise NotImplementedError


class SD2Backbone(Backbone):
    """SD2.x: one UNet call at ``model_t``, the DDPM formula at ``coeff_t`` (as released)."""

    name = "sd2"

    def __init__(self, components, model_t: int = 200, coeff_t: int = 200):
        from .onestep import OneStep

        super().__init__(components, model_t, coeff_t)
        self.one_step = OneStep(components.scheduler, model_t, coeff_t)

    def _added(self, z: torch.Tensor, cond: TextConditioning) -> dict | None:
        return None

    def __call__(self, denoiser, z, cond, texture=None):
        self.check_latent(z)
        return self.one_step(denoiser, z, cond.text, texture, self._added(z, cond))


class SDXLBackbone(SD2Backbone):
    """SDXL: both CLIP encoders' penultimate states side by side, the second's pooled projection
    and the micro-conditioning ``(h, w, 0, 0, h, w)`` (the latent's own pixel size: each tile's,
    uncropped) in the UNet's added embedding; SD2's one-step formula (SDXL's betas are SD's)."""

    name = "sdxl"

    def encode_text(self, prompt):
        c = self.components
        first, _ = _clip_states(c.text_encoder, c.tokenizer, prompt)
        second, pooled = _clip_states(c.text_encoder_2, c.tokenizer_2, prompt)
        return TextConditioning(torch.cat([first, second], dim=-1), pooled)

    def _added(self, z, cond):
        scale = self.components.vae_scale
        h, w = z.shape[-2] * scale, z.shape[-1] * scale
        return {"text_embeds": cond.pooled,
                "time_ids": torch.tensor([[h, w, 0, 0, h, w]], device=z.device, dtype=cond.pooled.dtype)}


class FlowBackbone(Backbone):
    """SD3/Flux: flow matching, one velocity evaluation at ``sigma = model_t / 1000``."""

    def __init__(self, components, model_t: int = 200, coeff_t: int = 200):
        from .flow import FlowOneStep

        if coeff_t != model_t:
            raise ValueError(f"coeff_t: a flow-matching backbone ({NAMES[self.name]}) has one noise level; "
                             f"expected coeff_t == model_t ({model_t}), got {coeff_t!r}")
        if isinstance(model_t, bool) or not isinstance(model_t, int) or not 0 < model_t < 1000:
            raise ValueError(f"model_t: expected an int in (0, 1000) (sigma = model_t / 1000), got {model_t!r}")
        super().__init__(components, model_t, coeff_t)
        self.flow = FlowOneStep(model_t / 1000, self.name)

    def check_latent(self, z) -> None:
        super().check_latent(z)
        if z.shape[-2] % 2 or z.shape[-1] % 2:
            raise ValueError(f"z: expected even latent sizes ({NAMES[self.name]}: 2x2 patches), got {tuple(z.shape)}")

    def add_noise(self, z, eps, strength):
        """``z_s = (1 - s) z + s * strength * eps`` after :meth:`__call__`'s ``(1 - s)`` scaling:
        ``strength = 1`` is the flow's own noise at ``s``."""
        s = self.flow.sigma
        return z + (strength * s / (1 - s)) * eps

    def _texture_kwargs(self, n: int, texture):
        return {} if texture is None else {"class_labels": texture.expand(n)}


class SD3Backbone(FlowBackbone):
    """SD3/SD3.5: conditioning as diffusers' SD3 pipeline (both CLIPs' penultimate states side by
    side, zero-padded to T5's width, then T5's states -- zeros when T5 is absent --; pooled: both
    CLIP projections); ``SD3Transformer2DModel`` takes ``1000 s`` as its timestep."""

    name = "sd3"
    T5_TOKENS = 256  # diffusers' SD3 default max_sequence_length

    @property
    def native_size(self):
        return self.components.transformer.config.sample_size * self.components.vae_scale

    @property
    def max_latent(self):
        cfg = self.components.transformer.config
        return None if cfg.pos_embed_max_size is None else cfg.pos_embed_max_size * cfg.patch_size

    def encode_text(self, prompt):
        c = self.components
        first, pooled_1 = _clip_states(c.text_encoder, c.tokenizer, prompt)
        second, pooled_2 = _clip_states(c.text_encoder_2, c.tokenizer_2, prompt)
        clip = torch.cat([first, second], dim=-1)
        width = c.transformer.config.joint_attention_dim
        if c.text_encoder_3 is None:
            t5 = clip.new_zeros(1, self.T5_TOKENS, width)
        else:
            n = min(self.T5_TOKENS, c.tokenizer_3.model_max_length)
            t5 = c.text_encoder_3(_token_ids(c.tokenizer_3, prompt, n, _device(c.text_encoder_3)))[0].to(clip)
        clip = torch.nn.functional.pad(clip, (0, width - clip.shape[-1]))
        return TextConditioning(torch.cat([clip, t5], dim=-2), torch.cat([pooled_1, pooled_2], dim=-1))

    def __call__(self, denoiser, z, cond, texture=None):
        self.check_latent(z)
        n, flow = z.shape[0], self.flow
        z_s = flow.model_input(z)
        cond = cond.expand(n)
        v = denoiser(hidden_states=z_s, encoder_hidden_states=cond.text, pooled_projections=cond.pooled,
                     timestep=flow.timestep(n, z.device, z.dtype), **self._texture_kwargs(n, texture)).sample
        return flow.x0(z_s, v)


def _check_even(name: str, h, w) -> None:
    for side in (h, w):
        if isinstance(side, bool) or not isinstance(side, int) or side < 2 or side % 2:
            raise ValueError(f"{name}: expected even latent sizes >= 2 (Flux packs 2x2 patches), got {h} x {w}")


def pack_latents(z: torch.Tensor) -> torch.Tensor:
    """Flux's packing: ``[B, C, h, w]`` -> ``[B, (h/2)(w/2), 4C]`` (2x2 patches, as ``FluxPipeline._pack_latents``)."""
    if not isinstance(z, torch.Tensor) or z.dim() != 4:
        raise ValueError(f"z: expected a [B, C, h, w] tensor, got {tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
    _check_even("z", z.shape[-2], z.shape[-1])
    b, c, h, w = z.shape
    return z.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`pack_latents` for an ``h x w`` latent."""
    _check_even("h, w", h, w)
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[1] != (h // 2) * (w // 2) or x.shape[2] % 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x: expected packed latents [B, {(h // 2) * (w // 2)}, 4C] for {h} x {w}, got {shape}")
    b, _, c4 = x.shape
    return x.reshape(b, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c4 // 4, h, w)


def latent_ids(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Flux's RoPE ids of an ``h x w`` latent's packed tokens: ``[(h/2)(w/2), 3]`` = (0, row, column)."""
    _check_even("h, w", h, w)
    ids = torch.zeros(h // 2, w // 2, 3, device=device, dtype=dtype)
    ids[..., 1] = torch.arange(h // 2, device=device, dtype=dtype)[:, None]
    ids[..., 2] = torch.arange(w // 2, device=device, dtype=dtype)[None, :]
    return ids.reshape(-1, 3)


class FluxBackbone(FlowBackbone):
    """Flux.1: conditioning as diffusers' Flux pipeline (T5 states; CLIP-L's pooled output), packed
    2x2 latents with their RoPE ids (text ids zero), the guidance embedding (``guidance``, when the
    model has one: Flux.1 [dev]); ``FluxTransformer2DModel`` takes ``s`` as its timestep."""

    name = "flux"
    T5_TOKENS = 512  # diffusers' Flux default max_sequence_length

    def __init__(self, components, model_t: int = 200, coeff_t: int = 200, guidance: float = FLUX_GUIDANCE):
        import math

        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) or guidance <= 0:
            raise ValueError(f"guidance: expected a positive number, got {guidance!r}")
        super().__init__(components, model_t, coeff_t)
        self.guidance = float(guidance)

    @property
    def native_size(self):
        return self.components.vae.config.sample_size  # Flux.1's VAE: 1024

    def encode_text(self, prompt):
        c = self.components
        ids = _token_ids(c.tokenizer, prompt, c.tokenizer.model_max_length, _device(c.text_encoder))
        pooled = c.text_encoder(ids, output_hidden_states=False).pooler_output
        n = min(self.T5_TOKENS, c.tokenizer_2.model_max_length)
        text = c.text_encoder_2(_token_ids(c.tokenizer_2, prompt, n, _device(c.text_encoder_2)))[0]
        return TextConditioning(text, pooled.to(text))

    def __call__(self, denoiser, z, cond, texture=None):
        self.check_latent(z)
        (n, _, h, w), flow = z.shape, self.flow
        z_s = flow.model_input(z)
        cond = cond.expand(n)
        guidance = None
        if denoiser.config.guidance_embeds:
            guidance = torch.full((n,), self.guidance, device=z.device, dtype=torch.float32)
        v = denoiser(hidden_states=pack_latents(z_s), encoder_hidden_states=cond.text, pooled_projections=cond.pooled,
                     timestep=flow.timestep(n, z.device, z.dtype), img_ids=latent_ids(h, w, z.device, z.dtype),
                     txt_ids=torch.zeros(cond.text.shape[1], 3, device=z.device, dtype=z.dtype), guidance=guidance,
                     **self._texture_kwargs(n, texture)).sample
        return flow.x0(z_s, unpack_latents(v, h, w))


BACKBONES = {"sd2": SD2Backbone, "sdxl": SDXLBackbone, "sd3": SD3Backbone, "flux": FluxBackbone}


def make_backbone(components, model_t: int = 200, coeff_t: int = 200, **kwargs) -> Backbone:
    """The :class:`Backbone` of ``components`` (its :attr:`~hypir.models.components.Components.backbone`).
    ``kwargs``: Flux's ``guidance``."""
    if not hasattr(components, "backbone") or not hasattr(components, "denoiser"):
        raise ValueError(f"components: expected hypir.models.components.Components, got {type(components).__name__}")
    return BACKBONES[components.backbone](components, model_t, coeff_t, **kwargs)
