"""HYPIR's LoRA on the transformer backbones (issue 24, first part): the SD3 and Flux.1 target sets
exist in the real diffusers classes, peft adds them, and hypir_kernels' fused linear LoRA
(``patch_peft``) gives peft's outputs and gradients; merged equals unmerged."""
import pytest
import torch

from hypir.models.lora import BACKBONE_TARGETS, LoraSpec, add_lora
from hypir.testing import randomize_lora, tiny_transformer, transformer_inputs
from hypir_kernels.lora import merge, patch_peft, unpatch_peft

pytest.importorskip("diffusers")
pytest.importorskip("peft")

BACKBONES = ["sd3", "flux"]


def _model(backbone, rank=4):
    model = tiny_transformer(backbone)
    add_lora(model, LoraSpec(rank=rank, targets=BACKBONE_TARGETS[backbone]))
    randomize_lora(model, std=0.05)
    return model


def _step(model, inputs):
    model.zero_grad(set_to_none=True)
    out = model(**inputs).sample
    out.square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_target_exists_and_only_block_layers_get_an_adapter(backbone):
    model = _model(backbone)
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    for target in BACKBONE_TARGETS[backbone]:
        assert any(n == target or n.endswith("." + target) for n in adapted), target
    # left out: embedders, input projection, adaLN modulation
    assert not [n for n in adapted if "embed" in n or n.startswith("x_embedder") or ".norm" in n]
    assert all(p.requires_grad == ("lora_" in n) for n, p in model.named_parameters())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_fused_lora_matches_peft_forward_and_backward(backbone):
    model = _model(backbone)
    inputs = transformer_inputs(backbone)
    expected = _step(model, inputs)
    patched = patch_peft(model)
    n_lora = sum(1 for n, _ in model.named_parameters() if ".lora_A." in n)
    assert len(patched) == n_lora > 0  # every adapted layer runs the fused op
    got = _step(model, inputs)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-4, atol=1e-5)
    assert got[1].keys() == expected[1].keys()
    for name in expected[1]:
        torch.testing.assert_close(got[1][name], expected[1][name], rtol=1e-4, atol=1e-5, msg=name)
    unpatch_peft(model)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_merged_equals_unmerged(backbone):
    model = _model(backbone)
    inputs = transformer_inputs(backbone)
    n_lora = sum(1 for n, _ in model.named_parameters() if ".lora_A." in n)
    with torch.no_grad():
        expected = model(**inputs).sample
        model.disable_adapters()
        base = model(**inputs).sample
        model.enable_adapters()
        assert (base - expected).abs().max() > 1e-3  # the adapter matters
        assert len(merge(model)) == n_lora
        torch.testing.assert_close(model(**inputs).sample, expected, rtol=1e-4, atol=1e-5)
