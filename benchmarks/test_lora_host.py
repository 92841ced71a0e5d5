"""Host time of one patched LoRA layer (tiny shapes, so all time is host time: Python, dispatch,
autograd glue): forward + backward through ``hypir_kernels.lora.patch_peft`` vs plain peft.

    pytest benchmarks/test_lora_host.py --benchmark-only

Groups ``lora_host_linear`` (Linear 16 -> 16, 8 tokens, rank 4) and ``lora_host_conv``
(Conv2d 8 -> 8, 3x3, 8x8 pixels, rank 4). On a GPU a whole SD2 layer's work is a few us, so this
overhead is what a training step pays per layer (../shared/gpu-runs/2026-11-23-h100.md).
"""
import copy

import pytest
import torch

from hypir_kernels import lora

peft = pytest.importorskip("peft")


class _Holder(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer


def _models(kind):
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 16) if kind == "linear" else torch.nn.Conv2d(8, 8, 3, padding=1)
    model = peft.inject_adapter_in_model(
        peft.LoraConfig(r=4, lora_alpha=4, target_modules=["layer"], init_lora_weights="gaussian"), _Holder(layer))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    patched = copy.deepcopy(model)
    lora.patch_peft(patched)
    x = torch.randn(8, 16) if kind == "linear" else torch.randn(1, 8, 8, 8)
    return {"peft": model, "ours": patched}, x.requires_grad_()


@pytest.mark.parametrize("impl", ["ours", "peft"])
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_lora_layer_host_time(benchmark, kind, impl):
    benchmark.group = f"lora_host_{kind}"
    models, x = _models(kind)
    model = models[impl]
    want = models["peft"].layer(x)
    assert torch.allclose(model.layer(x), want, atol=1e-5)

    def step():
        model.layer(x).sum().backward()

    benchmark.pedantic(step, rounds=2000, iterations=1, warmup_rounds=200)
