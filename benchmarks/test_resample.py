"""``downsample(x, 2, "bicubic")`` on one 4096x4096 RGB float32 image (CPU) vs torch's antialiased
``interpolate``, which it runs: the check is that our wrapper (argument checks, fp32 accumulation,
exact-adjoint plumbing) costs nothing measurable and that the cost is linear in pixels (the former
dense matrices took 17.9 s at 8192^2).

    pytest benchmarks/test_resample.py --benchmark-only
"""
import pytest
import torch
import torch.nn.functional as F

import hypir_kernels as hk

SIZE, FACTOR = 4096, 2


@pytest.fixture(scope="module")
def x():
    return torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("impl", ["ours", "torch_interpolate"])
def test_downsample_bicubic(benchmark, x, impl):
    benchmark.group = "downsample bicubic x2, 4096^2 RGB"
    if impl == "ours":
        fn = lambda: hk.downsample(x, FACTOR, "bicubic")  # noqa: E731
    else:
        fn = lambda: F.interpolate(x, scale_factor=1 / FACTOR, mode="bicubic", antialias=True)  # noqa: E731
    y = benchmark.pedantic(fn, rounds=5, warmup_rounds=1)
    assert y.shape == (1, 3, SIZE // FACTOR, SIZE // FACTOR)
    assert torch.equal(y, F.interpolate(x, scale_factor=1 / FACTOR, mode="bicubic", antialias=True))
