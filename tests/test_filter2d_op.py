"""hypir_kernels.filter2d: every path (the fused CPU kernel in each SIMD variant, grouped conv2d,
2-D FFT) against an explicit shift-and-add reference for every padding, tiny images (kernel larger
than the image), dtypes, the adjoint (dot test), gradients in x and kernels, agreement with
BasicSR's filter2D (reflect), bad input."""
import inspect
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import hypir_kernels as hk
from hypir_kernels import filter2d_op as f2d
from hypir_kernels.reference import filter2d as ref_f2d
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


@pytest.fixture(params=["fused", "direct", "fft2d"])
def path(request, monkeypatch):
    if request.param == "fused":
        yield request.param
        return
    # the reference backend: the paths other devices take
    monkeypatch.setattr(ref_f2d, "FFT_MIN_KERNEL", 1 if request.param == "fft2d" else 10**6)
    with hk.use_backend("reference"):
        yield request.param


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("shape,k", [((2, 3, 17, 23), 5), ((2, 1, 30, 26), 13), ((1, 2, 4, 6), 9), ((3, 1, 1, 5), 3),
                                     ((1, 1, 37, 29), 7)])
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


def test_x_gradient_through_the_fused_kernel():
    """With kernels fixed the fused CPU kernel runs in forward and backward (its backward is the
    same kernel as the exact adjoint); with kernels requiring grad the torch paths take over."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 9, 12, dtype=torch.float64, generator=g, requires_grad=True)
    kernels = torch.randn(2, 7, 7, dtype=torch.float64, generator=g)
    assert f2d._cpu_path(x, kernels)
    assert "filter2d_cpu" in hk.filter2d(x, kernels, "reflect").grad_fn.name()
    torch.autograd.gradcheck(lambda a: hk.filter2d(a, kernels, "reflect"), (x,))
    torch.autograd.gradcheck(lambda a: hk.filter2d_adjoint(a, kernels, "zeros"), (x,))
    assert not f2d._cpu_path(x, kernels.requires_grad_())


def test_torch_compile_fullgraph():
    """The fused CPU op traces as one opaque custom op (fake impl gives shape and dtype), forward
    and backward."""
    x = torch.randn(2, 3, 12, 10, requires_grad=True)
    kernels = torch.rand(2, 5, 5)
    f = lambda a: hk.filter2d(a, kernels, "reflect").square().sum()  # noqa: E731
    (g_eager,) = torch.autograd.grad(f(x), x)
    (g_compiled,) = torch.autograd.grad(torch.compile(f, fullgraph=True, backend="eager")(x), x)
    torch.testing.assert_close(g_compiled, g_eager)


@pytest.mark.parametrize("shape", [(0, 3, 8, 8), (2, 0, 8, 8), (1, 1, 0, 5), (1, 1, 5, 0)])
def test_empty_inputs(path, shape):
    x = torch.randn(shape)
    kernels = torch.rand(shape[0], 5, 5)
    assert hk.filter2d(x, kernels).shape == x.shape
    assert hk.filter2d_adjoint(x, kernels).shape == x.shape


def test_fft_length_is_the_smallest_2a3b():
    lengths = sorted(2**a * 3**b for a in range(12) for b in range(8))
    for m in range(1, 700):
        assert f2d._fft_length(m) == next(n for n in lengths if n >= m), m


_SIMD_CASES = [((2, 3, 17, 23), 5), ((1, 5, 40, 37), 21), ((3, 1, 1, 5), 3), ((1, 2, 4, 6), 9), ((1, 1, 33, 70), 1)]


@pytest.mark.parametrize("env", ["HYPIR_KERNELS_NO_AVX512", "HYPIR_KERNELS_NO_AVX2"])
def test_fused_kernel_simd_fallbacks(env):
    """The fused kernel takes AVX-512 where the CPU has it; these variables force the AVX2 loops and
    the portable loops (what other CPUs run): each checked in a fresh process against the
    explicit reference (float32 and float64) and by the dot test of its adjoint."""
    code = (
        "import torch, hypir_kernels as hk\n"
        "from hypir_kernels.reference.blur import PADDINGS, pad_index\n"
        + inspect.getsource(_reference)
        + f"for shape, k in {_SIMD_CASES!r}:\n"
        "    for padding in hk.PADDINGS:\n"
        "        g = torch.Generator().manual_seed(k)\n"
        "        x = torch.randn(shape, dtype=torch.float64, generator=g)\n"
        "        y = torch.randn(shape, dtype=torch.float64, generator=g)\n"
        "        w = torch.randn(shape[0], k, k, dtype=torch.float64, generator=g)\n"
        "        ref = _reference(x, w, padding)\n"
        "        torch.testing.assert_close(hk.filter2d(x, w, padding), ref, rtol=1e-12, atol=1e-12)\n"
        "        out32 = hk.filter2d(x.float(), w.float(), padding).double()\n"
        # fp32 FFT rounding grows with the signal's magnitude (not each element's): scale atol by it
        "        torch.testing.assert_close(out32, ref, rtol=1e-5, atol=max(1e-5, 5e-7 * float(ref.abs().max())))\n"
        "        for dt, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):\n"
        "            lhs = (hk.filter2d(x.to(dt), w.to(dt), padding).double() * y).sum()\n"
        "            rhs = (x * hk.filter2d_adjoint(y.to(dt), w.to(dt), padding).double()).sum()\n"
        "            torch.testing.assert_close(lhs, rhs, rtol=tol, atol=tol)\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **{env: "1"}), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stdout + res.stderr


def _taps(kernels, n):
    return (torch.fft.rfft(kernels.transpose(1, 2), n=n).conj() / n).contiguous()


@pytest.mark.parametrize(
    "x,taps,n,match",
    [
        (torch.zeros(1, 1, 4, 5, dtype=torch.float16), _taps(torch.zeros(1, 3, 3), 6), 6, "x: expected a contiguous float32"),
        (torch.zeros(1, 1, 4, 5), _taps(torch.zeros(1, 3, 3, dtype=torch.float64), 6), 6, "taps"),
        (torch.zeros(1, 1, 4, 5), _taps(torch.zeros(1, 3, 3), 8), 6, "taps"),
        (torch.zeros(1, 1, 4, 5), _taps(torch.zeros(1, 3, 3), 10), 10, "n: expected 2\\^a 3\\^b"),
        (torch.zeros(1, 1, 6, 5), _taps(torch.zeros(1, 3, 3), 6), 6, "n: expected 2\\^a 3\\^b >= H"),
    ],
)
def test_fused_kernel_bad_input(x, taps, n, match):
    with pytest.raises(ValueError, match=match):
        torch.ops.hypir_kernels._filter2d_fft(x, taps, n, 0, False)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_16bit(path, dtype):
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


@pytest.mark.parametrize("k", [3, 21])
@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_non_finite_input_stays_local_on_the_cpu(k, padding):
    """A NaN pixel changes only the outputs within the kernel's reach (the fused kernel's
    transform would spread it over the plane; such inputs take the direct path)."""
    x = torch.rand(2, 2, 40, 40)
    x[0, 1, 5, 6] = float("nan")
    kernels = torch.rand(2, k, k)
    y = hk.filter2d(x, kernels, padding)
    bad = torch.isnan(y)
    r = k // 2
    assert bad[0, 1, 5, 6] and bad.sum() <= (2 * r + 1) ** 2 * (4 if padding == "reflect" else 1)
    assert not bad[1].any() and not bad[0, 0].any()
    assert not bad[0, 1, 5 + r + 1 :, :].any()
    clean = x.clone()
    clean[0, 1, 5, 6] = 0.0
    far = torch.ones_like(bad)
    far[0, 1, : 5 + r + 1, : 6 + r + 1] = False
    assert torch.allclose(y[far], hk.filter2d(clean, kernels, padding)[far], atol=1e-5)
    adj = torch.isnan(hk.filter2d_adjoint(x, kernels, padding))
    assert adj[0, 1, 5, 6] and adj.sum() <= (2 * r + 1) ** 2 * 4 and not adj[1].any()


@pytest.mark.parametrize("shape", [(0, 4, 4, 0), (2, 1, 0, 5), (2, 1, 5, 0), (0, 0, 0, 0)])
def test_cpu_ops_take_empty_images(shape):
    """The fused FFT kernel divided by zero (SIGFPE) on an empty plane; the library op hit MKL errors."""
    x = torch.zeros(shape, dtype=torch.float64)
    k = 3
    taps = torch.zeros(shape[0], k, 12 // 2 + 1, dtype=torch.complex128)
    assert torch.ops.hypir_kernels._filter2d_fft(x, taps, 12, 2, True).shape == shape
    assert torch.ops.hypir_kernels.filter2d_cpu(x, torch.zeros(shape[0], k, k, dtype=torch.float64), 0, False).shape == shape


def test_filter2d_cpu_op_checks_its_arguments():
    ops = torch.ops.hypir_kernels
    with pytest.raises(ValueError, match="^pad:"):
        ops.filter2d_cpu(torch.zeros(1, 1, 4, 4), torch.zeros(1, 3, 3), 7, False)
    with pytest.raises(ValueError, match="^kernels:"):
        ops.filter2d_cpu(torch.zeros(1, 1, 4, 4), torch.zeros(2, 3, 3), 0, False)
    with pytest.raises(ValueError, match="^pad:"):
        ops.separable_filter(torch.zeros(1, 1, 4, 4), torch.zeros(1, 3), torch.zeros(1, 3), -1, False)
    with pytest.raises(ValueError, match="^y: expected 4 dims"):  # the adjoint names its own argument
        hk.filter2d_adjoint(torch.zeros(4, 4), torch.zeros(1, 3, 3))
