"""One HYPIR training step (G + D, degradation included) on the CPU at reduced width: ours
(hypir_kernels LoRA, our degradation ops) vs the released way (plain peft, BasicSR-style ops).
UNet width 64, LoRA rank 256 (released), batch 2 x 128 px; ``hypir.bench.train``. ``ours_bf16``: ours
with bf16 autocast (``run.mixed_precision: bf16``; what ``auto`` picks on CPUs with native bf16).

    pytest benchmarks/test_train_step.py --benchmark-only
"""
import pytest

from hypir.bench.train import batches, build


VARIANTS = {"ours": ("ours", "no"), "released": ("released", "no"), "ours_bf16": ("ours", "bf16")}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def trainer(request, tmp_path_factory):
    variant, mixed_precision = VARIANTS[request.param]
    t = build(variant, str(tmp_path_factory.mktemp(request.param)), mixed_precision=mixed_precision)
    return request.param, t, batches(t, 2)


def test_train_step(benchmark, trainer):
    name, t, data = trainer
    benchmark.group = "hypir_train_step_w64_r256_2x128"
    benchmark.name = name
    t.train_step(0, [data[0]])  # warm-up
    # every round repeats step 1 on one batch: the same degradation draws in every round and variant
    logs = benchmark.pedantic(lambda: t.train_step(1, [data[1]]), rounds=10, warmup_rounds=0)
    assert logs["loss_g"] > 0
