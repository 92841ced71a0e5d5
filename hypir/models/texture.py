"""Texture richness (HYPIR paper §5.2): a scalar from the statistics of an image's Laplacian that
conditions the UNet, so users can ask for smoother or richer textures.

* :func:`texture_richness` -- the variance of the 4-neighbour Laplacian of the image's luma in
  0..255 units (the classic "variance of the Laplacian" sharpness measure; a few tens for
  smooth or blurry images, thousands for dense texture). Training feeds the ground truth's value.
* :class:`TextureEmbedding` -- ``log1p(richness)`` through a sinusoidal projection and a 2-layer
  MLP whose last layer is zero-initialised, installed as the denoiser's ``class_embedding`` (a UNet
  adds it to the time embedding; SD3/Flux transformers get it added to theirs by hooks). Zero-initialised, a released checkpoint behaves exactly as
  before until training moves the weights.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hypir_kernels import filter2d

TEXTURE_PREFIX = "class_embedding."
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def texture_richness(image: torch.Tensor) -> torch.Tensor:
    """Variance of the Laplacian of the luma of ``image``.

    Args:
        image: ``[B, C, H, W]`` with C = 1 (grey) or 3 (RGB), values in ``[0, 1]``.

    Returns:
        ``[B]`` float32: per image, the variance over pixels of the 3x3 4-neighbour Laplacian
        (reflect padding) of ``255 * luma``. 0 for a constant image.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image: expected [B, 1 or 3, H, W], got {shape}")
    if not image.is_floating_point():
        raise ValueError(f"image: expected a floating-point tensor in [0, 1], got {image.dtype}")
    if image.shape[-2] == 0 or image.shape[-1] == 0:
        raise ValueError(f"image: empty image {tuple(image.shape)} has no texture to measure")
    x = image.float()
    if x.shape[1] == 3:
        x = sum(w * x[:, i : i + 1] for i, w in enumerate(_LUMA))
    kernel = torch.tensor(_LAPLACIAN, device=x.device).expand(x.shape[0], 3, 3)
    lap = filter2d(x * 255.0, kernel, padding="reflect")
    return lap.flatten(1).var(dim=1, unbiased=False)


class TextureEmbedding(torch.nn.Module):
    """``[B]`` texture richness -> ``[B, embed_dim]`` added to the UNet's time embedding."""

    def __init__(self, embed_dim: int, channels: int = 256):
        super().__init__()
        self.channels = channels
        self.linear_1 = torch.nn.Linear(channels, embed_dim)
        self.linear_2 = torch.nn.Linear(embed_dim, embed_dim)
        torch.nn.init.zeros_(self.linear_2.weight)
        torch.nn.init.zeros_(self.linear_2.bias)

    def forward(self, richness: torch.Tensor) -> torch.Tensor:
        if not isinstance(richness, torch.Tensor) or richness.dim() != 1:
            shape = tuple(richness.shape) if isinstance(richness, torch.Tensor) else type(richness).__name__
            raise ValueError(f"richness: expected a [B] tensor, got {shape}")
        # log1p spreads the useful range (tens to thousands) over a few units; x100 so that the
        # sinusoids' highest frequencies resolve differences of ~1 % in richness.
        r = torch.log1p(richness.float().clamp_min(0)) * 100.0
        half = self.channels // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=r.device, dtype=torch.float32) / half)
        angles = r[:, None] * freqs[None]
        feats = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(feats)))


def has_texture_embedding(model: torch.nn.Module) -> bool:
    return isinstance(getattr(model, "class_embedding", None), TextureEmbedding)


def _time_embedding_out(model: torch.nn.Module) -> torch.nn.Linear:
    """The last layer of the denoiser's timestep embedding: a UNet's ``time_embedding``, an SD3 or
    Flux transformer's ``time_text_embed.timestep_embedder``."""
    if hasattr(model, "time_embedding"):
        return model.time_embedding.linear_2
    if hasattr(model, "time_text_embed"):
        return model.time_text_embed.timestep_embedder.linear_2
    raise ValueError(f"model: {type(model).__name__} has no timestep embedding to add the texture embedding to")


def _take_class_labels(model, args, kwargs):
    """Forward pre-hook of a transformer with the texture embedding: ``class_labels`` (the richness)
    is taken out of the call (the transformers' ``forward`` has no such argument) for
    :func:`_add_texture`."""
    model._texture_labels = kwargs.pop("class_labels", None)
    return args, kwargs


def _add_texture(model):
    def hook(embedder, args, output):
        labels = getattr(model, "_texture_labels", None)
        if labels is None:
            raise ValueError("class_labels: this transformer has the texture embedding; pass the richness [B]")
        return output + model.class_embedding(labels).to(output.dtype)

    return hook


def attach_texture_embedding(model: torch.nn.Module) -> TextureEmbedding:
    """Install a zero-initialised :class:`TextureEmbedding` as ``model.class_embedding`` (state-dict
    keys ``class_embedding.*`` on every backbone). A UNet adds it to its time embedding itself
    (``class_labels``); an SD3/Flux transformer gets hooks that take ``class_labels=`` from the call
    and add the embedding to ``time_text_embed``'s output (the vector every block's adaLN reads)."""
    if getattr(model, "class_embedding", None) is not None and not has_texture_embedding(model):
        raise ValueError("unet: already has a class embedding of its own; cannot add the texture embedding")
    if getattr(model.config, "class_embeddings_concat", False):
        raise ValueError("unet: class_embeddings_concat is set; the texture embedding must be added, not concatenated")
    ref = _time_embedding_out(model)
    model.class_embedding = TextureEmbedding(ref.out_features).to(device=ref.weight.device, dtype=ref.weight.dtype)
    if hasattr(model, "time_text_embed") and not getattr(model, "_texture_hooks", False):
        model.register_forward_pre_hook(_take_class_labels, with_kwargs=True)
        model.time_text_embed.register_forward_hook(_add_texture(model))
        model._texture_hooks = True
    return model.class_embedding
