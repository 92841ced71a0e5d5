"""A LoRA training step (forward + backward) of the SD3 and Flux.1 denoisers at reduced width (256,
2 layers, rank 64, batch 2, 32x32 latents, 77 text tokens; CPU): ours (hypir_kernels' fused linear
LoRA) vs peft's layers, same model, inputs and attention; ``hypir.bench.backbones``.

    pytest benchmarks/test_backbone_lora_step.py --benchmark-only

Both variants of a backbone are built and warmed up, interleaved, before either is timed: on this
VM whichever ran first otherwise paid ~10-40 % for memory the process had not touched yet.
"""
import pytest

from hypir.bench.backbones import BACKBONES, build, inputs, step


@pytest.fixture(scope="module", params=BACKBONES)
def case(request):
    backbone = request.param
    models, kwargs = {v: build(backbone, v) for v in ("ours", "peft")}, inputs(backbone)
    for _ in range(3):
        losses = {v: step(m, kwargs) for v, m in models.items()}
    assert losses["ours"] == pytest.approx(losses["peft"], rel=1e-5)  # the same step on both sides
    return backbone, models, kwargs


@pytest.mark.parametrize("variant", ["ours", "peft"])
def test_backbone_lora_step(benchmark, case, variant):
    backbone, models, kwargs = case
    benchmark.group = f"lora_step_{backbone}_w256_r64"
    benchmark.pedantic(lambda: step(models[variant], kwargs), rounds=11, warmup_rounds=1)
