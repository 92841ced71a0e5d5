"""diffusers integration: an attention processor that runs :func:`hypir_kernels.attention`, and
GroupNorm (+ SiLU) through :func:`hypir_kernels.group_norm_silu`.

    from hypir_kernels.diffusers import use_attention, use_group_norm_silu
    use_attention(unet)          # every Attention module of the model now calls our op
    use_group_norm_silu(vae)     # every GroupNorm (-> SiLU) of the model runs as one op

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

import types

import torch
import torch.nn.functional as F

from .attention_op import HEAD_DIMS, attention
from .group_norm import GroupNormSiLU, group_norm_silu


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


# ---- GroupNorm (+ SiLU) ------------------------------------------------------------------------


def _norm_silu(norm: torch.nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    return group_norm_silu(x, norm.num_groups, norm.weight, norm.bias, norm.eps)


def _fused_resnet_forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None, *args, **kwargs) -> torch.Tensor:
    """diffusers' ``ResnetBlock2D.forward`` without scale-shift time conditioning (diffusers 0.3x-0.4x;
    the tests compare it with the original), each ``norm -> nonlinearity`` pair one fused op."""
    hidden = _norm_silu(self.norm1, input_tensor)
    if self.upsample is not None:
        if hidden.shape[0] >= 64:  # as diffusers: upsample_nearest_nhwc fails on large batches
            input_tensor, hidden = input_tensor.contiguous(), hidden.contiguous()
        input_tensor, hidden = self.upsample(input_tensor), self.upsample(hidden)
    elif self.downsample is not None:
        input_tensor, hidden = self.downsample(input_tensor), self.downsample(hidden)
    hidden = self.conv1(hidden)
    if self.time_emb_proj is not None:
        if not self.skip_time_act:
            temb = self.nonlinearity(temb)
        temb = self.time_emb_proj(temb)[:, :, None, None]
    if temb is not None and self.time_embedding_norm == "default":  # other norms ignore temb, as diffusers
        hidden = hidden + temb
    hidden = self.conv2(self.dropout(_norm_silu(self.norm2, hidden)))
    if self.conv_shortcut is not None:
        input_tensor = self.conv_shortcut(input_tensor.contiguous() if self.training else input_tensor)
    return (input_tensor + hidden) / self.output_scale_factor


def _fusable_resnet(module) -> bool:
    from diffusers.models.resnet import ResnetBlock2D

    if type(module) is not ResnetBlock2D:
        return False
    # "default", or a norm name without time projection ("group" in VAE decoders: temb unused)
    plain = module.time_embedding_norm == "default" or (module.time_embedding_norm != "scale_shift"
                                                         and module.time_emb_proj is None)
    return (plain
            and type(module.norm1) is torch.nn.GroupNorm and type(module.norm2) is torch.nn.GroupNorm
            and type(module.nonlinearity) is torch.nn.SiLU)


def _fused_norm(norm: torch.nn.GroupNorm, silu: bool) -> GroupNormSiLU:
    """A :class:`GroupNormSiLU` holding ``norm``'s own parameters (optimisers and LoRA keep them)."""
    fused = GroupNormSiLU(norm.num_groups, norm.num_channels, eps=norm.eps, affine=False, silu=silu)
    fused.affine = norm.affine
    fused.weight, fused.bias = norm.weight, norm.bias
    return fused.train(norm.training)


def use_group_norm_silu(model: torch.nn.Module) -> dict[str, int]:
    """Run every GroupNorm of a diffusers UNet or VAE through :func:`hypir_kernels.group_norm_silu`,
    fusing the SiLU that follows it where there is one:

    * ``ResnetBlock2D`` (SiLU, no scale-shift time conditioning): its forward runs ``norm1``/``norm2``
      and the SiLU after each as one op (the modules stay, so state dicts and LoRA are unchanged);
    * ``conv_norm_out`` followed by a SiLU ``conv_act`` (UNet, VAE encoder and decoder): one op;
    * every other ``nn.GroupNorm`` (attention blocks): the op without SiLU.

    Same parameters (the same ``Parameter`` objects), same state-dict keys; outputs equal up to
    float rounding (fp32 statistics). Idempotent. Returns the counts ``{"resnet_blocks",
    "norm_out", "group_norms"}`` of what it changed.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module (a diffusers UNet or VAE), got {type(model).__name__}")
    counts = {"resnet_blocks": 0, "norm_out": 0, "group_norms": 0}
    resnets = set()
    for module in list(model.modules()):
        if _fusable_resnet(module) and getattr(module.forward, "__func__", None) is not _fused_resnet_forward:
            module.forward = types.MethodType(_fused_resnet_forward, module)
            counts["resnet_blocks"] += 1
        if _fusable_resnet(module):
            resnets.update((id(module.norm1), id(module.norm2)))
        norm, act = getattr(module, "conv_norm_out", None), getattr(module, "conv_act", None)
        if type(norm) is torch.nn.GroupNorm and type(act) is torch.nn.SiLU:
            module.conv_norm_out, module.conv_act = _fused_norm(norm, silu=True), torch.nn.Identity()
            counts["norm_out"] += 1
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.GroupNorm and id(child) not in resnets:
                setattr(parent, name, _fused_norm(child, silu=False))
                counts["group_norms"] += 1
    return counts
