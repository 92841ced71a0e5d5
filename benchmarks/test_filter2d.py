"""Per-sample filter2d, [32, 3, 256, 256] float32, reflect (CPU).

    pytest benchmarks/test_filter2d.py --benchmark-only

Groups ``filter2d_{7,21,41}x..``: ours (the fused CPU kernel) vs the BasicSR grouped-conv2d
formulation; ``filter2d_adjoint_..``: our adjoint (the backward in x) vs autograd through it.
"""
import pytest
import torch

from hypir_kernels.bench import filter2d as case


@pytest.mark.parametrize("k", case.SIZES)
@pytest.mark.parametrize("impl", ["ours", "basicsr_grouped_conv2d"])
def test_filter2d(benchmark, k, impl):
    benchmark.group = f"filter2d_{k}x{k}"
    x, kernels = case.make_case(k)
    fn = case.ours if impl == "ours" else case.basicsr_filter2d
    out = benchmark.pedantic(lambda: fn(x, kernels), rounds=5, warmup_rounds=1)
    torch.testing.assert_close(out[:2], case.basicsr_filter2d(x[:2], kernels[:2]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k", case.SIZES)
@pytest.mark.parametrize("impl", ["ours", "basicsr_autograd"])
def test_filter2d_adjoint(benchmark, k, impl):
    """The backward in x: our adjoint op vs autograd through the BasicSR formulation."""
    benchmark.group = f"filter2d_adjoint_{k}x{k}"
    y, kernels = case.make_case(k)
    fn = case.ours_adjoint if impl == "ours" else case.basicsr_filter2d_adjoint
    out = benchmark.pedantic(lambda: fn(y, kernels), rounds=5, warmup_rounds=1)
    torch.testing.assert_close(out[:2], case.basicsr_filter2d_adjoint(y[:2], kernels[:2]), rtol=1e-4, atol=1e-5)
