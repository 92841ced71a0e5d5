"""SD2-specific pieces: the stage-1 encoder weights (degradation pre-removal), its
encode-decode network, and the UNet's attention blocks kept in channels-last. The components of
every backbone are in :mod:`hypir.models.components`.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

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
