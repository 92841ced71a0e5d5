"""hypir_kernels.filter2d: both paths (direct, FFT) against an explicit shift-and-add reference
for every padding, tiny images (kernel larger than the image), dtypes, the adjoint (dot test),
gradients in x and kernels, agreement with BasicSR's filter2D (reflect), bad input."""
import pytest
import torch
import torch.nn.functional as F

import hypir_kernels as hk
from hypir_kernels import filter2d_op as f2d
from hypir_kernels.reference.blur import PADDINGS, pad_index


def _reference(x, kernels, padding):
    B, C, H, W = x.shape
    k = kernels.shape[-1]
    r = k // 2
    mode = PADDINGS.index(padding)
    iy = pad_index(torch.arange(-r, H + r), H, mode)
    ix = pad_index(torch.arange(-r, W + r), W, mode)
    xp = x.double()[..., iy.clamp(min=0), :][..., ix.clamp(min=0)] * ((iy >= 0)[:, None] & (ix >= 0)[None, :])
    out = torch.zeros(B, C, H, W, dtype=torch.float64)
    for t in range(k):
        for s in range(k):
            out += kernels.double()[:, t, s][:, None, None, None] * xp[..., t:t + H, s:s + W]
    return out


@pytest.fixture(params=["direct", "fft"])
def path(request, monkeypatch):
    monkeypatch.setattr(f2d, "FFT_MIN_KERNEL", 10**6 if request.param == "direct" else 1)
    return request.param


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("shape,k", [((2, 3, 17, 23), 5), ((2, 1, 30, 26), 13), ((1, 2, 4, 6), 9), ((3, 1, 1, 5), 3)])
def test_matches_reference(path, padding, shape, k):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(shape, generator=g)
    kernels = torch.randn(shape[0], k, k, generator=g)
    out = hk.filter2d(x, kernels, padding)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out.double(), _reference(x, kernels, padding), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding", PADDINGS)
def test_adjoint_dot_test(path, padding):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 11, 14, dtype=torch.float64, generator=g)
    y = torch.randn(2, 2, 11, 14, dtype=torch.float64, generator=g)
    kernels = torch.randn(2, 7, 7, dtype=torch.float64, generator=g)
    lhs = (hk.filter2d(x, kernels, padding) * y).sum()
    rhs = (x * hk.filter2d_adjoint(y, kernels, padding)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_gradients_in_x_and_kernels(path):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 8, 9, dtype=torch.float64, generator=g, requires_grad=True)
    kernels = torch.randn(2, 5, 5, dtype=torch.float64, generator=g, requires_grad=True)
    torch.autograd.gradcheck(lambda a, b: hk.filter2d(a, b, "reflect"), (x, kernels))


@pytest.mark.parametrize("k", [7, 21, 41])
def test_matches_basicsr_filter2d(k):
    g = torch.Generator().manual_seed(k)
    x = torch.rand(2, 3, 64, 64, generator=g)
    kernels = torch.rand(2, k, k, generator=g)
    kernels /= kernels.sum((1, 2), keepdim=True)
    r = k // 2
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    basicsr = F.conv2d(xp.view(1, 6, 64 + 2 * r, 64 + 2 * r), kernels[:, None].repeat(1, 3, 1, 1).view(6, 1, k, k), groups=6).view(2, 3, 64, 64)
    torch.testing.assert_close(hk.filter2d(x, kernels), basicsr, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_16bit(dtype):
    x = torch.rand(2, 3, 20, 20)
    kernels = torch.rand(2, 5, 5)
    kernels /= kernels.sum((1, 2), keepdim=True)
    out = hk.filter2d(x.to(dtype), kernels.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), hk.filter2d(x, kernels), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    "args,match",
    [
        ((torch.zeros(1, 8, 8), torch.zeros(1, 3, 3)), "x: expected 4 dims"),
        ((torch.zeros(2, 1, 8, 8), torch.zeros(1, 3, 3)), "kernels: expected one kernel per sample"),
        ((torch.zeros(1, 1, 8, 8), torch.zeros(1, 4, 4)), "kernels: expected square odd-sized"),
        ((torch.zeros(1, 1, 8, 8), torch.zeros(1, 3, 5)), "kernels: expected square odd-sized"),
        ((torch.zeros(1, 1, 8, 8), torch.zeros(1, 3, 3), "mirror"), "padding"),
        ((torch.zeros(1, 1, 8, 8, dtype=torch.int32), torch.zeros(1, 3, 3)), "x: expected dtype"),
    ],
)
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        hk.filter2d(*args)
