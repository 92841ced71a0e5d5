"""Bernoulli inpainting mask + Ambient further mask on [32, 3, 256, 256] float32 (CPU).

    pytest benchmarks/test_masks.py --benchmark-only

Group ``masks``: ours (one pass, masks drawn in-kernel, never stored) vs torch rand-compare-multiply.
"""
import pytest

from hypir_kernels.bench import masks as case


@pytest.fixture(scope="module")
def x():
    return case.make_input()


@pytest.mark.parametrize("impl", ["ours", "torch_rand_compare_multiply"])
def test_masks(benchmark, x, impl):
    benchmark.group = "masks"
    fn = case.ours if impl == "ours" else case.torch_rand_compare_multiply
    y, y2 = benchmark.pedantic(lambda: fn(x), rounds=15, warmup_rounds=3)
    kept = (y != 0).float().mean().item()
    assert abs(kept - case.KEEP) < 0.01 and abs((y2 != 0).float().mean().item() - case.KEEP * (1 - case.DELTA)) < 0.01
