"""Gaussian blur: every backend vs the reference, exact adjoint, gradients, anchors, bad input."""
import pytest
import torch

import hypir_kernels as hk
from hypir_kernels.testing import assert_close, compare_backends

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SHAPES = [(2, 3, 16, 19), (1, 2, 1, 1), (2, 1, 3, 2), (1, 1, 7, 40), (3, 2, 33, 8)]


def _sigma(kind, B):
    if kind == "float":
        return 1.3
    if kind == "per-sample":
        return torch.linspace(0.6, 2.5, B)
    return torch.stack([torch.linspace(0.6, 2.0, B), torch.linspace(2.2, 0.9, B)], dim=1)


@pytest.mark.parametrize("padding", hk.PADDINGS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sigma_kind", ["float", "per-sample", "anisotropic"])
def test_forward_and_adjoint_match_reference(shape, padding, sigma_kind):
    x = torch.randn(shape)
    sigma = _sigma(sigma_kind, shape[0])
    for k in (1, 5, 9, 21):  # 21 > every tiny image here: folds more than once
        compare_backends("separable_filter", lambda: hk.gaussian_blur(x, sigma, k, padding), msg=f"fwd k={k}")
        compare_backends("separable_filter", lambda: hk.gaussian_blur_adjoint(x, sigma, k, padding), msg=f"adj k={k}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", hk.PADDINGS)
def test_dtypes(dtype, padding):
    x = torch.randn(2, 3, 20, 23).to(dtype)
    out = compare_backends("separable_filter", lambda: hk.gaussian_blur(x, torch.tensor([1.0, 2.0]), 9, padding))
    assert out["cpu"].dtype == dtype


@pytest.mark.parametrize("padding", hk.PADDINGS)
@pytest.mark.parametrize("shape,k", [((2, 2, 11, 13), 5), ((1, 1, 3, 4), 9), ((1, 2, 1, 6), 7)])
def test_adjoint_dot_product(shape, k, padding):
    x = torch.randn(shape, dtype=torch.float64)
    y = torch.randn(shape, dtype=torch.float64)
    sigma = torch.rand(shape[0], 2, dtype=torch.float64) * 2 + 0.5
    for name in ("cpu", "reference"):
        with hk.use_backend(name):
            lhs = (hk.gaussian_blur(x, sigma, k, padding) * y).sum()
            rhs = (x * hk.gaussian_blur_adjoint(y, sigma, k, padding)).sum()
        assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs)), (name, lhs, rhs)


def test_adjoint_of_reflect_folds_not_reflects():
    # Column 1 of a reflect-padded blur is read by the padding as the mirror of column -1, so
    # the adjoint must add that tap back onto column 1 (not onto a mirrored position).
    y = torch.zeros(1, 1, 1, 6, dtype=torch.float64)
    y[..., 0] = 1.0
    out = hk.gaussian_blur_adjoint(y, torch.tensor([[1e-3, 1.0]], dtype=torch.float64), 3, "reflect")
    w = hk.blur.gaussian_taps(torch.tensor(1.0, dtype=torch.float64), 3)
    expected = torch.tensor([w[1], w[0] + w[2], 0, 0, 0, 0], dtype=torch.float64)
    assert_close(out[0, 0, 0], expected)


@pytest.mark.parametrize("padding", hk.PADDINGS)
def test_gradcheck_and_linearity(padding):
    x = torch.randn(2, 2, 7, 9, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([[0.8, 1.7], [1.2, 0.5]], dtype=torch.float64)
    torch.autograd.gradcheck(lambda t: hk.gaussian_blur(t, sigma, 5, padding), (x,))
    torch.autograd.gradgradcheck(lambda t: hk.gaussian_blur(t, sigma, 5, padding), (x,))
    a, b = torch.randn(2, 2, 7, 9, dtype=torch.float64), torch.randn(2, 2, 7, 9, dtype=torch.float64)
    f = lambda t: hk.gaussian_blur(t, sigma, 5, padding)  # noqa: E731
    assert_close(f(2 * a - 3 * b), 2 * f(a) - 3 * f(b))


def test_non_contiguous_input():
    base = torch.randn(3, 2, 30, 20)
    x = base.permute(1, 0, 3, 2)[:, :, 3:25]  # [2, 3, 22, 30] with odd strides
    assert not x.is_contiguous()
    out = compare_backends("separable_filter", lambda: hk.gaussian_blur(x, torch.tensor([1.0, 2.0]), 7))
    assert_close(out["cpu"], hk.gaussian_blur(x.contiguous(), torch.tensor([1.0, 2.0]), 7))


def test_constant_image_is_preserved_except_zero_padding():
    x = torch.full((1, 1, 12, 12), 2.5, dtype=torch.float64)
    for padding in ("reflect", "replicate", "circular"):
        assert_close(hk.gaussian_blur(x, 1.5, 9, padding), x)
    assert hk.gaussian_blur(x, 1.5, 9, "zeros")[0, 0, 0, 0] < 2.5


def test_default_kernel_size_and_paper_setting():
    x = torch.zeros(1, 1, 31, 31, dtype=torch.float64)
    x[..., 15, 15] = 1
    psf = hk.gaussian_blur(x, 2.0)  # default 13 taps
    assert (psf[0, 0, 15] > 0).sum() == 13
    psf9 = hk.gaussian_blur(x, 2.0, kernel_size=9)  # the RSD paper's 9x9, std 2
    assert (psf9[0, 0] > 0).sum() == 81 and abs(psf9.sum().item() - 1) < 1e-12


def test_matches_deepinv_blur_reflect():
    dinv = pytest.importorskip("deepinv")
    x = torch.rand(2, 3, 40, 37)
    taps = hk.blur.gaussian_taps(torch.tensor(2.0, dtype=torch.float64), 9).float()
    physics = dinv.physics.Blur(filter=(taps[:, None] * taps[None, :])[None, None], padding="reflect")
    assert_close(hk.gaussian_blur(x, 2.0, 9, "reflect"), physics.A(x))
    y = torch.rand(2, 3, 40, 37)
    assert_close(hk.gaussian_blur_adjoint(y, 2.0, 9, "reflect"), physics.A_adjoint(y))


def test_torch_compile_fullgraph():
    x = torch.randn(2, 3, 16, 16)
    f = lambda t: hk.gaussian_blur(t * 2, 1.5, 7) + 1  # noqa: E731
    assert_close(torch.compile(f, fullgraph=True, backend="eager")(x), f(x))


@pytest.mark.parametrize("kwargs,arg", [
    (dict(x=torch.randn(3, 8, 8), sigma=1.0), "x"),
    (dict(x=torch.randn(1, 1, 8, 8, dtype=torch.complex64), sigma=1.0), "x"),
    (dict(x=torch.randint(0, 5, (1, 1, 8, 8)), sigma=1.0), "x"),
    (dict(x=torch.randn(1, 1, 8, 8), sigma=0.0), "sigma"),
    (dict(x=torch.randn(1, 1, 8, 8), sigma=-1.0), "sigma"),
    (dict(x=torch.randn(2, 1, 8, 8), sigma=torch.ones(3)), "sigma"),
    (dict(x=torch.randn(2, 1, 8, 8), sigma=torch.ones(2, 3)), "sigma"),
    (dict(x=torch.randn(1, 1, 8, 8), sigma=torch.ones(1, dtype=torch.complex64)), "sigma"),
    (dict(x=torch.randn(1, 1, 8, 8), sigma=torch.ones(1, requires_grad=True)), "sigma"),
    (dict(x=torch.randn(1, 1, 8, 8), sigma=1.0, kernel_size=4), "kernel_size"),
    (dict(x=torch.randn(1, 1, 8, 8), sigma=1.0, kernel_size=0), "kernel_size"),
    (dict(x=torch.randn(1, 1, 8, 8), sigma=1.0, padding="mirror"), "padding"),
])
def test_bad_input(kwargs, arg):
    with pytest.raises(ValueError, match=f"^{arg}"):
        hk.gaussian_blur(**kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", hk.PADDINGS)
def test_cuda_matches_reference(dtype, padding):
    x = torch.randn(3, 2, 61, 45, device="cuda").to(dtype)
    sigma = torch.tensor([[0.7, 2.0], [1.5, 1.5], [3.0, 0.9]])
    for adjoint in (False, True):
        fn = hk.gaussian_blur_adjoint if adjoint else hk.gaussian_blur
        with hk.use_backend("reference"):
            ref = fn(x, sigma, 11, padding)
        with hk.use_backend("cuda"):
            assert_close(fn(x, sigma, 11, padding), ref)


def test_portable_float32_path_matches_reference():
    """On AVX2 machines float32 takes the FMA path; HYPIR_KERNELS_NO_AVX2 forces the portable loops
    (what other CPUs run), checked here in a fresh process against the reference."""
    import os
    import subprocess
    import sys

    code = (
        "import torch, hypir_kernels as hk\n"
        "x = torch.randn(2, 3, 40, 37, generator=torch.Generator().manual_seed(0))\n"
        "for pad in hk.PADDINGS:\n"
        "    for k, s in ((9, 2.0), (21, 3.0)):\n"
        "        out = hk.gaussian_blur(x, torch.tensor([s, s / 2]), k, pad)\n"
        "        with hk.use_backend('reference'):\n"
        "            ref = hk.gaussian_blur(x, torch.tensor([s, s / 2]), k, pad)\n"
        "        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, HYPIR_KERNELS_NO_AVX2="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stdout + res.stderr


@pytest.mark.parametrize("no_avx2", [False, True])
def test_zero_size_images_return_empty_on_every_path(no_avx2):
    """Zero-size images (H, W, B or C of 0) return an empty result on every padding, dtype and
    SIMD path, forward, adjoint and the direct kernel op -- never a signal (the float32 AVX2
    loops once indexed a padded row of a zero-width image). Run in a fresh process so a crash
    fails this test instead of ending the session."""
    import os
    import subprocess
    import sys

    code = (
        "import torch, hypir_kernels as hk\n"
        "for shape in ((1, 3, 8, 0), (1, 3, 0, 8), (1, 3, 0, 0), (0, 3, 8, 8), (2, 0, 5, 5)):\n"
        "    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):\n"
        "        x = torch.rand(shape, dtype=dtype)\n"
        "        for pad in hk.PADDINGS:\n"
        "            for fn in (hk.gaussian_blur, hk.gaussian_blur_adjoint):\n"
        "                assert fn(x, 1.0, 5, pad).shape == shape\n"
        "            for code in range(4):\n"
        "                taps = torch.ones(shape[0], 3, dtype=torch.float64 if dtype == torch.float64 else torch.float32)\n"
        "                for adjoint in (False, True):\n"
        "                    assert torch.ops.hypir_kernels._separable_filter(x, taps, taps, code, adjoint).shape == shape\n"
        "print('ok')\n"
    )
    env = dict(os.environ)
    if no_avx2:
        env["HYPIR_KERNELS_NO_AVX2"] = "1"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), f"rc {res.returncode}: {res.stdout}{res.stderr}"


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_zeros_padding_keeps_non_finite_values_local_on_every_backend(value):
    """A non-finite pixel spreads only as far as the kernel reaches; zero padding never reads it
    (the reference once multiplied the padded taps' gathered pixel by 0: inf * 0 = nan)."""
    x = torch.zeros(1, 1, 12, 12, dtype=torch.float64)
    x[0, 0, 0, 0] = value
    outs = {}
    for name in ("cpu", "reference"):
        with hk.use_backend(name):
            outs[name] = (hk.gaussian_blur(x, 1.0, 3, "zeros"), hk.gaussian_blur_adjoint(x, 1.0, 3, "zeros"))
    for out, adj in outs.values():
        for t in (out, adj):
            bad = ~torch.isfinite(t[0, 0])
            assert bad[:2, :2].all() and not bad[2:, :].any() and not bad[:, 2:].any()
    assert torch.equal(torch.isnan(outs["cpu"][0]), torch.isnan(outs["reference"][0]))


def test_kernel_length_is_bounded():
    """A huge sigma is a clear error, not minutes and gigabytes of taps."""
    x = torch.rand(1, 1, 8, 8)
    for sigma in (2e7, 1e300, torch.tensor([1.0e6])):
        with pytest.raises(ValueError, match="^sigma: .* longer than"):
            hk.gaussian_blur(x, sigma)
    with pytest.raises(ValueError, match="^kernel_size: expected at most"):
        hk.gaussian_blur(x, 1.0, kernel_size=2**17 + 1)
    assert hk.gaussian_blur(x, 10000.0).shape == x.shape  # within the limit it still works
