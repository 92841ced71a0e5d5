"""Real-ESRGAN degradation of a [8, 3, 256, 256] batch (CPU), three seeds per round, both presets:
ours (``hypir.data.degrade`` on hypir_kernels' ops) vs the same pipeline and draws on BasicSR's ops
(``hypir.bench.degrade``).

    pytest benchmarks/test_degrade.py --benchmark-only
"""
import pytest

from hypir.bench.degrade import BASICSR_OPS, FAST_OPS, make_batch
from hypir.data.realesrgan import DegradationConfig, degrade


@pytest.fixture(scope="module")
def gt():
    return make_batch(8, 256)


@pytest.mark.parametrize("preset", ["ours", "released"])
@pytest.mark.parametrize("impl", ["ours", "basicsr_style"])
def test_degrade(benchmark, gt, impl, preset):
    """Both presets on hypir_kernels' ops vs the BasicSR ops (the "released" preset's default ops
    are the latter: ``DegradationConfig.ops``)."""
    benchmark.group = f"realesrgan_degrade_8x256_{preset}"
    ops = FAST_OPS if impl == "ours" else BASICSR_OPS
    cfg = DegradationConfig(preset=preset)
    lq, _ = benchmark.pedantic(lambda: [degrade(gt, s, cfg, ops=ops) for s in range(3)][-1], rounds=3, warmup_rounds=1)
    assert lq.shape == ((8, 3, 64, 64) if preset == "ours" else (8, 3, 256, 256))
