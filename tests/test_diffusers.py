"""hypir_kernels.diffusers: the attention processor on a tiny UNet2DConditionModel gives the same
output and gradients as diffusers' default processor, through the Triton kernels (interpreted
here) and with peft LoRA on the attention projections."""
import pytest
import torch

import hypir_kernels as hk
from hypir_kernels.testing import runnable_backends

diffusers = pytest.importorskip("diffusers")
from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.models.attention_processor import Attention, AttnProcessor2_0  # noqa: E402

from hypir_kernels.diffusers import AttnProcessor, attention_modules, use_attention  # noqa: E402

# Head dims 32 (heads 1 at 32 channels) and 32 (heads 2 at 64 channels); self-attention over
# 64 and 16 tokens, cross-attention over 7 text tokens.
TINY_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32, attention_head_dim=(1, 2), norm_num_groups=8,
)


def _unet(seed=0, **overrides):
    torch.manual_seed(seed)
    return UNet2DConditionModel(**{**TINY_UNET, **overrides})


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 4, 8, 8, generator=g), torch.tensor([10, 700]), torch.randn(2, 7, 32, generator=g)


def _forward_backward(unet, backend):
    x, t, ctx = _inputs()
    x.requires_grad_()
    unet.zero_grad(set_to_none=True)
    with hk.use_backend(backend):
        out = unet(x, t, ctx).sample
        out.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in unet.named_parameters() if p.grad is not None}
    return out.detach(), x.grad.clone(), grads


def _assert_same(ours, theirs, atol):
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-4, atol=atol)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-4, atol=atol)
    assert ours[2].keys() == theirs[2].keys() and len(ours[2]) > 0
    for name in theirs[2]:
        torch.testing.assert_close(ours[2][name], theirs[2][name], rtol=1e-4, atol=atol, msg=name)


@pytest.mark.parametrize("backend", ["auto", "triton"])
def test_unet_matches_default_processor(backend):
    if backend == "triton" and "triton" not in runnable_backends("attention"):
        pytest.skip("triton backend not runnable here")
    unet = _unet()
    unet.set_attn_processor(AttnProcessor2_0())
    expected = _forward_backward(unet, "auto")
    use_attention(unet)
    assert all(isinstance(p, AttnProcessor) for p in unet.attn_processors.values())
    _assert_same(_forward_backward(unet, backend), expected, atol=1e-5)


def test_unet_with_peft_lora_on_attention_projections():
    peft = pytest.importorskip("peft")
    if "triton" not in runnable_backends("attention"):
        pytest.skip("triton backend not runnable here")
    unet = _unet()
    config = peft.LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    unet = peft.inject_adapter_in_model(config, unet)
    lora_params = [n for n, _ in unet.named_parameters() if "lora_" in n]
    assert lora_params
    unet.set_attn_processor(AttnProcessor2_0())
    expected = _forward_backward(unet, "auto")
    use_attention(unet)
    ours = _forward_backward(unet, "triton")
    _assert_same(ours, expected, atol=1e-5)
    assert all(n in ours[2] for n in lora_params)  # LoRA weights received gradients


def test_attention_mask_falls_back_to_sdpa_with_the_mask():
    torch.manual_seed(0)
    attn = Attention(query_dim=64, heads=2, dim_head=32, cross_attention_dim=32)
    x, ctx = torch.randn(2, 10, 64), torch.randn(2, 7, 32)
    mask = torch.ones(2, 7)
    mask[0, 4:] = 0  # hide the last three text tokens of the first sample
    expected = AttnProcessor2_0()(attn, x, ctx, attention_mask=mask)
    torch.testing.assert_close(AttnProcessor()(attn, x, ctx, attention_mask=mask), expected)
    unmasked = AttnProcessor()(attn, x, ctx)
    assert not torch.allclose(unmasked[0], expected[0])  # the mask mattered


def test_use_attention_rejects_unsupported_head_dims_before_changing_anything():
    unet = _unet(attention_head_dim=(4, 8))  # head dim 8
    before = {k: type(v) for k, v in unet.attn_processors.items()}
    with pytest.raises(ValueError, match="head dim 8"):
        use_attention(unet)
    assert {k: type(v) for k, v in unet.attn_processors.items()} == before


def test_use_attention_rejects_non_diffusers_models():
    with pytest.raises(ValueError, match="model: expected a diffusers model"):
        use_attention(torch.nn.Linear(2, 2))


def test_attention_modules_lists_self_and_cross_attention():
    names = list(attention_modules(_unet()))
    assert any(n.endswith("attn1") for n in names) and any(n.endswith("attn2") for n in names)


# ---- use_group_norm_silu ---------------------------------------------------------------------

TINY_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64), latent_channels=4,
                norm_num_groups=8, layers_per_block=1)


def _vae_step(vae, x):
    vae.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    out = vae.decode(vae.encode(x).latent_dist.mode()).sample
    out.square().mean().backward()
    return out.detach(), x.grad, {n: p.grad.clone() for n, p in vae.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("channels_last", [False, True])
def test_group_norm_silu_patch_keeps_vae_outputs_and_gradients(channels_last):
    from diffusers import AutoencoderKL

    from hypir_kernels.diffusers import use_group_norm_silu

    torch.manual_seed(0)
    vae = AutoencoderKL(**TINY_VAE)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    if channels_last:
        vae = vae.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    expected = _vae_step(vae, x)
    keys, params = set(vae.state_dict()), {n: p for n, p in vae.named_parameters()}
    counts = use_group_norm_silu(vae)
    # encoder: 2 blocks x 1 layer + mid 2; decoder: 2 blocks x 2 layers + mid 2: 10 resnets;
    # conv_norm_out of encoder and decoder; the two mid-block attentions' group norms
    assert counts == {"resnet_blocks": 10, "norm_out": 2, "group_norms": 2}
    assert set(vae.state_dict()) == keys
    assert all(p is params[n] for n, p in vae.named_parameters())  # the same Parameter objects
    assert use_group_norm_silu(vae) == {"resnet_blocks": 0, "norm_out": 0, "group_norms": 0}  # idempotent
    calls = []
    handle = torch.nn.functional.group_norm  # no unfused GroupNorm is left to call it
    torch.nn.functional.group_norm = lambda *a, **k: calls.append(1) or handle(*a, **k)
    try:
        got = _vae_step(vae, x)
    finally:
        torch.nn.functional.group_norm = handle
    assert calls == []
    _assert_same(got, expected, atol=2e-5)


def test_group_norm_silu_patch_keeps_unet_outputs_and_gradients():
    from hypir_kernels.diffusers import use_group_norm_silu

    unet = _unet()
    expected = _forward_backward(unet, "auto")
    counts = use_group_norm_silu(unet)
    # every ResnetBlock2D, the conv_norm_out, and the one GroupNorm of each Transformer2DModel
    n_resnets = sum(type(m).__name__ == "ResnetBlock2D" for m in unet.modules())
    assert counts["resnet_blocks"] == n_resnets > 0 and counts["norm_out"] == 1
    assert counts["group_norms"] == sum(type(m).__name__ == "Transformer2DModel" for m in unet.modules())
    _assert_same(_forward_backward(unet, "auto"), expected, atol=2e-5)


def test_group_norm_silu_patch_rejects_a_non_module():
    from hypir_kernels.diffusers import use_group_norm_silu

    with pytest.raises(ValueError, match="^model"):
        use_group_norm_silu({"unet": None})
