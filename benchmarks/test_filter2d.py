"""Per-sample filter2d, [32, 3, 256, 256] float32, reflect (CPU).

    pytest benchmarks/test_filter2d.py --benchmark-only

Groups ``filter2d_{7,21,41}x..``: ours (the fused CPU kernel) vs the BasicSR grouped-conv2d
formulation; ``filter2d_adjoint_..``: our adjoint (the backward in x) vs autograd through it.
"""
import pytest
import torch

from hypir_kernels.bench import filter2d as case


# op -> (group prefix, {impl: function}); the anchor is always the BasicSR formulation.
_OPS = {
    "forward": ("filter2d", {"ours": case.ours, "basicsr_grouped_conv2d": case.basicsr_filter2d}),
    "adjoint": ("filter2d_adjoint", {"ours": case.ours_adjoint, "basicsr_autograd": case.basicsr_filter2d_adjoint}),
}


@pytest.mark.parametrize("k", case.SIZES)
@pytest.mark.parametrize("op,impl", [(op, impl) for op, (_, impls) in _OPS.items() for impl in impls])
def test_filter2d(benchmark, op, impl, k):
    prefix, impls = _OPS[op]
    benchmark.group = f"{prefix}_{k}x{k}"
    x, kernels = case.make_case(k)
    out = benchmark.pedantic(lambda: impls[impl](x, kernels), rounds=5, warmup_rounds=1)
    anchor = list(impls.values())[1]
    torch.testing.assert_close(out[:2], anchor(x[:2], kernels[:2]), rtol=1e-4, atol=1e-5)
