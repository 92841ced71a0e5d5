"""Real-ESRGAN degradation of a [8, 3, 256, 256] batch (CPU), three seeds per round: ours
(``hypir.data.degrade``) vs the same pipeline and draws on BasicSR's ops (``hypir.bench_degrade``).

    pytest benchmarks/test_degrade.py --benchmark-only
"""
import pytest

from hypir.bench_degrade import BASICSR_OPS, make_batch
from hypir.data.realesrgan import degrade


@pytest.fixture(scope="module")
def gt():
    return make_batch(8, 256)


@pytest.mark.parametrize("impl", ["ours", "basicsr_style"])
def test_degrade(benchmark, gt, impl):
    benchmark.group = "realesrgan_degrade_8x256"
    ops = None if impl == "ours" else BASICSR_OPS
    lq, _ = benchmark.pedantic(lambda: [degrade(gt, s, ops=ops) for s in range(3)][-1], rounds=3, warmup_rounds=1)
    assert lq.shape == (8, 3, 64, 64)
