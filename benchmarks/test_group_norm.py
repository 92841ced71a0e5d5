"""GroupNorm + SiLU at the SD2 VAE decoder's levels (512 px tile, channels-last, fp32 and bf16) and
forward + backward at the SD2 UNet's first level (CPU).

    pytest benchmarks/test_group_norm.py --benchmark-only

Groups ``gn_silu_<C>x<side>_<dtype>`` and ``gn_silu_train``: ours (``hypir_kernels.group_norm_silu``)
vs ``F.silu(F.group_norm(...))``, the pair diffusers' resnet blocks run.
"""
import pytest
import torch

from hypir_kernels.bench import group_norm as case

ROUNDS, WARMUP = 11, 2
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("channels,side", case.VAE_LEVELS)
@pytest.mark.parametrize("impl", ["ours", "torch"])
def test_group_norm_silu_forward(benchmark, channels, side, dtype, impl):
    benchmark.group = f"gn_silu_{channels}x{side}_{dtype}"
    x, w, b = case.make_case(channels, side, DTYPES[dtype])
    fn = case.ours if impl == "ours" else case.torch_pair
    out = benchmark.pedantic(lambda: fn(x, w, b), rounds=ROUNDS, warmup_rounds=WARMUP)
    expected = case.torch_pair(x, w, b).float()
    tol = 5e-5 if dtype == "fp32" else 1.6e-2  # fp32: summation order; bf16: torch rounds between its two ops
    assert ((out.float() - expected).abs().max() / expected.abs().max()).item() <= tol


@pytest.mark.parametrize("impl", ["ours", "torch"])
def test_group_norm_silu_train_step(benchmark, impl):
    benchmark.group = "gn_silu_train"
    x, w, b, grad = case.make_train_case()
    fn = case.ours if impl == "ours" else case.torch_pair
    got = benchmark.pedantic(lambda: case.train_step(fn, x, w, b, grad), rounds=ROUNDS, warmup_rounds=WARMUP)
    for g, e in zip(got, case.train_step(case.torch_pair, x, w, b, grad)):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4 * e.abs().max().item())


@pytest.fixture(scope="module")
def cuda_cases():
    return {(c, s): [t.cuda() for t in case.make_case(c, s, torch.bfloat16, batch=4)] for c, s in case.VAE_LEVELS}


@pytest.mark.gpu
@pytest.mark.parametrize("channels,side", case.VAE_LEVELS)
@pytest.mark.parametrize("impl", ["ours", "torch"])
def test_group_norm_silu_forward_gpu_bf16(benchmark, cuda_cases, channels, side, impl):
    """Batch 4 (a VAE decode of 4 tiles), bf16, channels-last; ours is the Triton kernel."""
    benchmark.group = f"gn_silu_gpu_{channels}x{side}_bf16"
    x, w, b = cuda_cases[(channels, side)]
    fn = case.ours if impl == "ours" else case.torch_pair

    def run():
        out = fn(x, w, b)
        torch.cuda.synchronize()
        return out

    out = benchmark.pedantic(run, rounds=50, warmup_rounds=5)
    expected = case.torch_pair(x, w, b).float()
    assert ((out.float() - expected).abs().max() / expected.abs().max()).item() <= 1.6e-2
