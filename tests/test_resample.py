"""hypir_kernels.downsample: agrees with torch's area and antialiased-bicubic interpolation,
exact adjoint (dot test, autograd), 16-bit accumulation, bad input."""
import pytest
import torch
import torch.nn.functional as F

import hypir_kernels as hk
from hypir_kernels.resample import resample_matrix


@pytest.fixture(params=["auto", "reference"])
def resample_backend(request):
    """Torch's banded kernels (``cpu``) and the registry's dense-matrix ``reference``."""
    with hk.use_backend(request.param):
        yield request.param


@pytest.mark.parametrize("mode", ["area", "bicubic"])
@pytest.mark.parametrize("factor", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(2, 3, 24, 36), (1, 1, 12, 12), (1, 2, 48, 12)])
def test_matches_torch_interpolate_and_adjoint(shape, factor, mode, resample_backend):
    x = torch.randn(shape, dtype=torch.float64)
    y = hk.downsample(x, factor, mode)
    if factor == 1:
        assert torch.equal(y, x)
    else:
        kw = dict(antialias=True) if mode == "bicubic" else {}
        torch.testing.assert_close(y, F.interpolate(x, scale_factor=1 / factor, mode=mode, **kw), rtol=1e-12, atol=1e-12)
    z = torch.randn_like(y)
    lhs, rhs = (y * z).sum(), (x * hk.downsample_adjoint(z, factor, mode)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["area", "bicubic"])
def test_gradient_is_the_adjoint(mode, resample_backend):
    x = torch.randn(1, 2, 12, 18, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: hk.downsample(t, 3, mode), (x,))
    g = torch.randn(1, 2, 4, 6, dtype=torch.float64)
    hk.downsample(x, 3, mode).backward(g)
    torch.testing.assert_close(x.grad, hk.downsample_adjoint(g, 3, mode))


@pytest.mark.parametrize("mode", ["area", "bicubic"])
def test_adjoint_is_twice_differentiable(mode):
    y = torch.randn(1, 2, 4, 6, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: hk.downsample_adjoint(t, 3, mode), (y,))
    torch.autograd.gradgradcheck(lambda t: hk.downsample(t, 3, mode), (torch.randn(1, 1, 12, 6, dtype=torch.float64, requires_grad=True),))


@pytest.mark.parametrize("factor", [2, 3])
def test_banded_operator_equals_the_dense_matrices(factor):
    x = torch.randn(2, 1, 18, 30, dtype=torch.float64)
    rh, rw = (resample_matrix(n, factor, "bicubic", torch.float64) for n in (18, 30))
    torch.testing.assert_close(hk.downsample(x, factor, "bicubic"), rh @ x @ rw.t(), rtol=1e-12, atol=1e-12)
    y = torch.randn(2, 1, 18 // factor, 30 // factor, dtype=torch.float64)
    torch.testing.assert_close(hk.downsample_adjoint(y, factor, "bicubic"), rh.t() @ y @ rw, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode,window", [("area", 1), ("bicubic", 4)])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_stays_local(mode, window, bad):
    """A bad pixel reaches only the outputs whose window holds it (dense matrices spread it everywhere)."""
    x = torch.rand(1, 1, 64, 64)
    x[0, 0, 30, 31] = bad
    y = hk.downsample(x, 2, mode)
    assert 0 < (~y.isfinite()).sum() <= window * window
    assert y[0, 0, :10].isfinite().all() and y[0, 0, 25:].isfinite().all()
    g = torch.zeros(1, 1, 32, 32)
    g[0, 0, 3, 4] = bad
    assert 0 < (~hk.downsample_adjoint(g, 2, mode).isfinite()).sum() <= (2 * window) ** 2


def test_adjoint_rejects_an_output_too_large_to_store():
    for y in (torch.zeros(1, 1, 1, 1), torch.zeros(0, 0, 1, 2)):
        with pytest.raises(ValueError, match="^factor: .* too large"):
            hk.downsample_adjoint(y, 2**31, "area")


def test_empty_batches_and_planes():
    for mode in ("area", "bicubic"):
        assert hk.downsample(torch.zeros(0, 3, 8, 8), 2, mode).shape == (0, 3, 4, 4)
        assert hk.downsample(torch.zeros(1, 3, 0, 8), 2, mode).shape == (1, 3, 0, 4)
        assert hk.downsample_adjoint(torch.zeros(1, 0, 4, 4), 2, mode).shape == (1, 0, 8, 8)


def test_rows_are_normalised_and_constant_images_stay_constant():
    for mode in ("area", "bicubic"):
        r = resample_matrix(40, 4, mode, torch.float64)
        torch.testing.assert_close(r.sum(1), torch.ones(10, dtype=torch.float64))
        c = torch.full((1, 1, 40, 40), 0.7)
        torch.testing.assert_close(hk.downsample(c, 4, mode), torch.full((1, 1, 10, 10), 0.7))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_16bit_accumulates_in_fp32(dtype, resample_backend):
    x = torch.randn(1, 3, 32, 32)
    ref = hk.downsample(x, 2, "bicubic")
    out = hk.downsample(x.to(dtype), 2, "bicubic")
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    "args,match",
    [((torch.zeros(1, 1, 10, 9), 2), "multiples of factor"), ((torch.zeros(1, 10, 10), 2), "x: expected 4 dims"),
     ((torch.zeros(1, 1, 8, 8), 0), "factor"), ((torch.zeros(1, 1, 8, 8, dtype=torch.int32), 2), "x: expected dtype")],
)
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        hk.downsample(*args)
    with pytest.raises(ValueError, match="mode"):
        hk.downsample(torch.zeros(1, 1, 8, 8), 2, "nearest")
