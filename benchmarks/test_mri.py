"""Multi-coil MRI, B=4, Nc=16, 320x320 complex64, R=4 column masks (+24 ACS columns), CPU.

    pytest benchmarks/test_mri.py --benchmark-only

Groups ``mri_forward`` and ``mri_adjoint``: ours (column-mask fast path, shift-free centring)
vs deepinv ``MultiCoilMRI`` and the plain torch formula, all on deepinv's real-view layout.
"""
import pytest
import torch

from hypir_kernels.bench import mri as case

ROUNDS, WARMUP = 9, 2


@pytest.fixture(scope="module")
def data():
    x, maps, cols = case.make_case()
    return x, maps, cols, case.full_mask(cols)


@pytest.mark.parametrize("impl", ["ours", "deepinv", "torch"])
@pytest.mark.parametrize("direction", ["forward", "adjoint"])
def test_mri(benchmark, data, direction, impl):
    x, maps, cols, mask = data
    benchmark.group = f"mri_{direction}"
    y = case.ours_forward(x, maps, cols)
    arg = x if direction == "forward" else y
    if impl == "ours":
        fn = (case.ours_forward if direction == "forward" else case.ours_adjoint)
        run = lambda: fn(arg, maps, cols)  # noqa: E731
    elif impl == "torch":
        fn = (case.torch_forward if direction == "forward" else case.torch_adjoint)
        run = lambda: fn(arg, maps, mask)  # noqa: E731
    else:
        pytest.importorskip("deepinv")
        physics = case.deepinv_physics(maps, mask)
        run = lambda: (physics.A if direction == "forward" else physics.A_adjoint)(arg)  # noqa: E731
    out = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=WARMUP)
    expected = case.torch_forward(x, maps, mask) if direction == "forward" else case.torch_adjoint(y, maps, mask)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-3)
