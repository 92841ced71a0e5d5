"""diffusers integration: an attention processor that runs :func:`hypir_kernels.attention`.

    from hypir_kernels.diffusers import use_attention
    use_attention(unet)          # every Attention module of the model now calls our op

The processor follows diffusers' ``AttnProcessor2_0`` contract (spatial norm, group norm, norm_q /
norm_k, cross-attention through ``encoder_hidden_states`` and ``norm_cross``, output projection,
residual connection, ``rescale_output_factor``), so LoRA-patched ``to_q``/``to_k``/``to_v``/
``to_out`` layers (peft, or :mod:`hypir_kernels` patches) work unchanged. Two differences:

* the softmax scale is the module's ``attn.scale`` (``AttnProcessor2_0`` ignores it and always
  uses ``1/sqrt(head_dim)``; the two agree for every model with ``scale_qk=True``, SD included);
* a call with an ``attention_mask`` falls back to ``scaled_dot_product_attention`` with the mask
  (our kernel has no mask input; diffusion UNets do not pass masks).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .attention_op import HEAD_DIMS, attention


class AttnProcessor:
    """diffusers attention processor calling :func:`hypir_kernels.attention`."""

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)

        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)

        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch, key_len, _ = context.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, key_len, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])

        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        head_dim = key.shape[-1] // attn.heads
        # [B, S, H*D] -> [B, H, S, D] views; the kernel takes the strides as they are.
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        if attention_mask is None:
            hidden_states = attention(query, key, value, scale=attn.scale)
        else:
            hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=attn.scale)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def attention_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The diffusers ``Attention`` modules of ``model`` by qualified name."""
    from diffusers.models.attention_processor import Attention

    return {name: m for name, m in model.named_modules() if isinstance(m, Attention)}


def use_attention(model: torch.nn.Module) -> torch.nn.Module:
    """Install :class:`AttnProcessor` on every attention module of ``model`` (a diffusers model
    with ``set_attn_processor``, e.g. ``UNet2DConditionModel``); returns ``model``.

    Raises ``ValueError`` naming the first module whose head dim is not in
    :data:`hypir_kernels.HEAD_DIMS`, before anything is changed.
    """
    if not hasattr(model, "set_attn_processor"):
        raise ValueError(f"model: expected a diffusers model with set_attn_processor, got {type(model).__name__}")
    for name, module in attention_modules(model).items():
        head_dim = module.inner_dim // module.heads
        if head_dim not in HEAD_DIMS:
            raise ValueError(f"model: attention module {name!r} has head dim {head_dim}, not one of {HEAD_DIMS}")
    model.set_attn_processor(AttnProcessor())
    return model
