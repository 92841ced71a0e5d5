"""Gaussian blur, [32, 3, 256, 256] float32, reflect padding (CPU).

    pytest benchmarks/test_blur.py --benchmark-only

Groups ``blur_9x9_s2`` and ``blur_21x21_s3``: ours vs deepinv ``Blur`` (same filter, reflect)
and torch ``conv2d`` depthwise after a reflect pad.
"""
import pytest
import torch

from hypir_kernels.bench import blur as case

ROUNDS, WARMUP = 9, 2


@pytest.fixture(scope="module")
def x():
    return case.make_input()


def _group(k, sigma):
    return f"blur_{k}x{k}_s{sigma:g}"


@pytest.mark.parametrize("k,sigma", case.CASES)
@pytest.mark.parametrize("impl", ["ours", "deepinv", "conv2d_depthwise"])
def test_blur(benchmark, x, k, sigma, impl):
    benchmark.group = _group(k, sigma)
    expected = case.ours(x[:2], k, sigma)
    if impl == "ours":
        fn = lambda: case.ours(x, k, sigma)  # noqa: E731
    elif impl == "deepinv":
        pytest.importorskip("deepinv")
        physics = case.deepinv_blur(k, sigma)
        fn = lambda: physics.A(x)  # noqa: E731
    else:
        weight = case.filter_2d(k, sigma).expand(x.shape[1], 1, k, k).contiguous()
        fn = lambda: case.conv2d_depthwise(x, weight)  # noqa: E731
    out = benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=WARMUP)
    torch.testing.assert_close(out[:2], expected, rtol=1e-5, atol=1e-5)  # all compute the same blur
