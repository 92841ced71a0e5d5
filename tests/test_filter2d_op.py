"""hypir_kernels.filter2d: every path (direct, 2-D FFT, row-spectral) against an explicit
shift-and-add reference for every padding, tiny images (kernel larger than the image), dtypes, the
adjoint (dot test), gradients in x and kernels, agreement with BasicSR's filter2D (reflect), bad
input; the row-mixing kernel op (every SIMD variant) against its torch reference."""
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


@pytest.fixture(params=["direct", "fft", "rows"])
def path(request, monkeypatch):
    monkeypatch.setattr(f2d, "FFT_MIN_KERNEL", 1 if request.param == "fft" else 10**6)
    monkeypatch.setattr(f2d, "ROWS_MIN_KERNEL", 1 if request.param == "rows" else 10**6)
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


def test_x_gradient_through_the_row_path(monkeypatch):
    """With kernels fixed the row-spectral op runs in forward and backward (its backward is the
    same pipeline as the exact adjoint); with kernels requiring grad the 2-D FFT path takes over."""
    monkeypatch.setattr(f2d, "ROWS_MIN_KERNEL", 1)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 9, 12, dtype=torch.float64, generator=g, requires_grad=True)
    kernels = torch.randn(2, 7, 7, dtype=torch.float64, generator=g)
    assert f2d._rows_path(x, kernels)
    out = hk.filter2d(x, kernels, "reflect")
    assert "filter2d_rows" in str(out.grad_fn.name())
    torch.autograd.gradcheck(lambda a: hk.filter2d(a, kernels, "reflect"), (x,))
    torch.autograd.gradcheck(lambda a: hk.filter2d_adjoint(a, kernels, "zeros"), (x,))
    assert not f2d._rows_path(x, kernels.requires_grad_())


def test_row_path_default_by_size():
    x = torch.zeros(1, 1, 8, 8)
    assert not f2d._rows_path(x, torch.zeros(1, f2d.ROWS_MIN_KERNEL - 2, f2d.ROWS_MIN_KERNEL - 2))
    assert f2d._rows_path(x, torch.zeros(1, f2d.ROWS_MIN_KERNEL, f2d.ROWS_MIN_KERNEL))


_MIX_CASES = [  # B, C, H, F, k: channel groups of 3 and a rest, bins off every vector width, k > H
    (2, 3, 13, 17, 5), (1, 5, 9, 70, 7), (3, 1, 4, 33, 9), (2, 2, 1, 1, 3), (1, 4, 6, 145, 1),
]


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128], ids=str)
@pytest.mark.parametrize("adjoint", [False, True], ids=["forward", "adjoint"])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("B,C,H,F,k", _MIX_CASES)
def test_mix_rows_matches_reference(B, C, H, F, k, padding, adjoint, dtype):
    g = torch.Generator().manual_seed(B * 100 + F)
    x = torch.randn(B, C, H, F, dtype=dtype, generator=g)
    taps = torch.randn(B, k, F, dtype=dtype, generator=g)
    mode = PADDINGS.index(padding)
    out = torch.ops.hypir_kernels._mix_rows(x, taps, mode, adjoint)
    tol = 1e-12 if dtype == torch.complex128 else 1e-5
    torch.testing.assert_close(out, ref_f2d.mix_rows(x, taps, mode, adjoint), rtol=tol, atol=tol)


@pytest.mark.parametrize("padding", PADDINGS)
def test_mix_rows_adjoint_dot_test(padding):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 11, 20, dtype=torch.complex128, generator=g)
    y = torch.randn(2, 3, 11, 20, dtype=torch.complex128, generator=g)
    taps = torch.randn(2, 7, 20, dtype=torch.complex128, generator=g)
    mode = PADDINGS.index(padding)
    lhs = torch.vdot(y.flatten(), torch.ops.hypir_kernels._mix_rows(x, taps, mode, False).flatten())
    rhs = torch.vdot(torch.ops.hypir_kernels._mix_rows(y, taps, mode, True).flatten(), x.flatten())
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("env", ["HYPIR_KERNELS_NO_AVX512", "HYPIR_KERNELS_NO_AVX2"])
def test_mix_rows_simd_fallbacks_match_reference(env):
    """float32 takes AVX-512 where the CPU has it; these variables force the AVX2 loops and the
    portable loops (what other CPUs run), checked in a fresh process against the reference."""
    code = (
        "import torch, hypir_kernels\n"
        "from hypir_kernels.reference.filter2d import mix_rows\n"
        f"for B, C, H, F, k in {_MIX_CASES!r}:\n"
        "    for mode in range(4):\n"
        "        for adjoint in (False, True):\n"
        "            g = torch.Generator().manual_seed(F)\n"
        "            x = torch.randn(B, C, H, F, dtype=torch.complex64, generator=g)\n"
        "            taps = torch.randn(B, k, F, dtype=torch.complex64, generator=g)\n"
        "            out = torch.ops.hypir_kernels._mix_rows(x, taps, mode, adjoint)\n"
        "            torch.testing.assert_close(out, mix_rows(x, taps, mode, adjoint), rtol=1e-5, atol=1e-5)\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **{env: "1"}), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stdout + res.stderr


@pytest.mark.parametrize(
    "x,taps,match",
    [
        (torch.zeros(1, 1, 4, 5), torch.zeros(1, 3, 5, dtype=torch.complex64), "x: expected a contiguous complex"),
        (torch.zeros(1, 1, 4, 5, dtype=torch.complex64), torch.zeros(1, 2, 5, dtype=torch.complex64), "taps"),
        (torch.zeros(1, 1, 4, 5, dtype=torch.complex64), torch.zeros(1, 3, 6, dtype=torch.complex64), "taps"),
        (torch.zeros(1, 1, 4, 5, dtype=torch.complex64), torch.zeros(1, 3, 5, dtype=torch.complex128), "taps"),
    ],
)
def test_mix_rows_bad_input(x, taps, match):
    with pytest.raises(ValueError, match=match):
        torch.ops.hypir_kernels._mix_rows(x, taps, 0, False)


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
