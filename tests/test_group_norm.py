"""GroupNorm + SiLU: every backend against the reference (forward and backward, every dtype, NCHW,
channels-last and other layouts), the reference against torch's own ops, the statistics'
numerics, the AVX-512 and portable CPU loops against each other, bad input, torch.compile."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import hypir_kernels as hk
from hypir_kernels import backend
from hypir_kernels.reference import group_norm as ref
from hypir_kernels.testing import assert_close, runnable_backends, tolerances

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
# (shape, groups): channels per group below, at and above the Triton channel blocks (8, 32);
# rows (L) and channels-last rows (C) that are not multiples of the 16 AVX-512 lanes.
CASES = [
    ((2, 64, 5, 3), 4),
    ((1, 12, 7, 5), 4),
    ((2, 80, 3, 2), 2),
    ((3, 6, 7), 3),
    ((1, 40, 4, 4, 2), 5),
]


def _input(shape, dtype, layout, scale=3.0, offset=5.0):
    x = (torch.randn(shape, dtype=torch.float64) * scale + offset).to(dtype)
    if layout == "channels_last":
        order = (0,) + tuple(range(2, x.dim())) + (1,)
        inverse = [order.index(d) for d in range(x.dim())]
        x = x.permute(order).contiguous().permute(inverse)
    elif layout == "strided":  # neither layout: a slice along the last axis
        x = torch.cat([x, x], dim=-1)[..., ::2]
    return x


def _run(x, groups, weight, bias, silu, grad):
    """Output and gradients (x, then weight and bias when given) of one call."""
    x = x.detach().requires_grad_(True)
    params = [t.detach().requires_grad_(True) for t in (weight, bias) if t is not None]
    it = iter(params)
    w = next(it) if weight is not None else None
    b = next(it) if bias is not None else None
    y = hk.group_norm_silu(x, groups, w, b, eps=1e-6, silu=silu)
    return (y,) + torch.autograd.grad(y, [x] + params, grad)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,groups", CASES)
def test_backends_match_reference_forward_and_backward(shape, groups, dtype, layout):
    x = _input(shape, dtype, layout)
    C = shape[1]
    for affine, silu in ((True, True), (False, False)):
        weight = torch.randn(C, dtype=dtype) if affine else None
        bias = torch.randn(C, dtype=torch.float32) if affine else None  # a different dtype from x: allowed
        grad = torch.randn(shape, dtype=torch.float64).to(dtype)
        with backend.use_backend("reference"):
            expected = _run(x, groups, weight, bias, silu, grad)
        for name in runnable_backends("group_norm_silu"):
            with backend.use_backend(name):
                got = _run(x, groups, weight, bias, silu, grad)
            for what, a, e in zip(("y", "dx", "dweight", "dbias"), got, expected):
                assert a.dtype == e.dtype and a.shape == e.shape, (name, what)
                if what in ("y", "dx") and layout != "strided":
                    assert a.stride() == x.stride(), (name, what, a.stride(), x.stride())  # layout kept
                if what in ("dweight", "dbias"):  # sums over N * L terms of both signs: scale by the largest
                    rtol, atol = tolerances(dtype)
                    torch.testing.assert_close(a, e, rtol=rtol, atol=atol + 4 * rtol * float(e.abs().max()))
                else:
                    assert_close(a, e, msg=f"{name} {what} affine={affine} silu={silu}")


def test_reference_matches_torch_group_norm_and_silu_with_autograd():
    """The oracle itself: forward vs F.group_norm + F.silu, backward vs autograd through them (fp64)."""
    for silu in (True, False):
        x = _input((2, 12, 5, 4), torch.float64, "contiguous").requires_grad_(True)
        w = torch.randn(12, dtype=torch.float64, requires_grad=True)
        b = torch.randn(12, dtype=torch.float64, requires_grad=True)
        y_torch = F.group_norm(x, 3, w, b, 1e-6)
        y_torch = F.silu(y_torch) if silu else y_torch
        grad = torch.randn_like(y_torch)
        expected = torch.autograd.grad(y_torch, (x, w, b), grad)
        y, mean, rstd = ref.group_norm_silu(x.detach(), w.detach(), b.detach(), 3, 1e-6, silu)
        torch.testing.assert_close(y, y_torch.detach(), rtol=1e-12, atol=1e-12)
        got = ref.group_norm_silu_backward(grad, x.detach(), w.detach(), b.detach(), mean, rstd, 3, 1e-6, silu)
        for a, e in zip(got, expected):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_autograd_gradcheck_float64():
    x = _input((2, 6, 3, 2), torch.float64, "channels_last").requires_grad_(True)
    w = torch.randn(6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: hk.group_norm_silu(x, 2, w, b, 1e-3), (x, w, b))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_statistics_survive_a_large_mean_in_float32(layout):
    """|mean| = 1e4 * std: E[x^2] - E[x]^2 in fp32 would lose every digit of the variance; the
    kernels sum x - K (K the group's first value) and keep it."""
    x = _input((1, 32, 64, 64), torch.float32, layout, scale=1.0, offset=1e4)
    x64 = x.double()
    _, mean64, rstd64 = ref.group_norm_silu(x64, None, None, 8, 0.0, False)
    for name in runnable_backends("group_norm_silu"):
        if name == "triton" and layout == "channels_last":
            continue  # the interpreter is slow; the contiguous case exercises the same sums
        with backend.use_backend(name):
            _, mean, rstd = torch.ops.hypir_kernels.group_norm_silu(x, None, None, 8, 0.0, False)
        torch.testing.assert_close(mean.double(), mean64, rtol=1e-6, atol=0)
        torch.testing.assert_close(rstd.double(), rstd64, rtol=1e-4, atol=0)


def test_float32_output_agrees_with_torch_at_sd_vae_shape():
    """A VAE decoder shape (512 channels, 32 groups), both layouts, CPU kernel vs torch's ops."""
    for layout in ("contiguous", "channels_last"):
        x = _input((1, 512, 32, 32), torch.float32, layout, scale=2.0, offset=0.5)
        w, b = torch.randn(512), torch.randn(512)
        torch.testing.assert_close(hk.group_norm_silu(x, 32, w, b, 1e-6), F.silu(F.group_norm(x, 32, w, b, 1e-6)),
                                   rtol=1e-5, atol=1e-5)


_PORTABLE = """
import torch, hypir_kernels as hk
torch.manual_seed(0)
out = []
for shape, fmt in (((2, 40, 9, 7), torch.contiguous_format), ((2, 40, 9, 7), torch.channels_last)):
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = (torch.randn(shape) * 2 + 1).to(dtype).contiguous(memory_format=fmt).requires_grad_(True)
        w = torch.randn(40, requires_grad=True)
        b = torch.randn(40, requires_grad=True)
        y = hk.group_norm_silu(x, 8, w, b, 1e-6)
        out += [y.detach().float()] + [g.float() for g in torch.autograd.grad(y, (x, w, b), torch.cos(y.detach()))]
torch.save(out, {path!r})
"""


def test_avx512_and_portable_loops_agree(tmp_path):
    """The CPU kernel's two builds of the same loops: AVX-512 (when this CPU has it) and the
    portable one (HYPIR_KERNELS_NO_AVX512=1 and NO_AVX2=1), each in its own process."""
    outputs = []
    for disable in ("", "1"):
        path = str(tmp_path / f"out{disable}.pt")
        env = dict(os.environ, HYPIR_KERNELS_NO_AVX512=disable, HYPIR_KERNELS_NO_AVX2=disable)
        if not disable:
            env.pop("HYPIR_KERNELS_NO_AVX512")
            env.pop("HYPIR_KERNELS_NO_AVX2")
        subprocess.run([sys.executable, "-c", _PORTABLE.format(path=path)], env=env, check=True, timeout=300)
        outputs.append(torch.load(path))
    for a, b in zip(*outputs):
        # exp is a polynomial in one and libm's in the other; 16-bit outputs may round apart by an ulp
        torch.testing.assert_close(a, b, rtol=8e-3, atol=8e-3)


def test_group_norm_silu_module_is_a_drop_in_group_norm():
    gn = torch.nn.GroupNorm(4, 16, eps=1e-6)
    with torch.no_grad():
        gn.weight.normal_()
        gn.bias.normal_()
    fused = hk.GroupNormSiLU(4, 16, eps=1e-6)
    fused.load_state_dict(gn.state_dict())
    assert set(fused.state_dict()) == set(gn.state_dict())
    x = torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(fused(x), F.silu(gn(x)), rtol=1e-5, atol=1e-6)
    plain = hk.GroupNormSiLU(4, 16, eps=1e-6, silu=False)
    plain.load_state_dict(gn.state_dict())
    torch.testing.assert_close(plain(x), gn(x), rtol=1e-5, atol=1e-6)
    assert "silu=False" in repr(plain)


def test_empty_input():
    x = torch.randn(0, 8, 4, 4, requires_grad=True)
    y = hk.group_norm_silu(x, 2)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("kwargs,arg", [
    (dict(x=torch.randn(2, 6, 4), num_groups=4), "num_groups"),
    (dict(x=torch.randn(2, 6, 4), num_groups=0), "num_groups"),
    (dict(x=torch.randn(2, 6, 4), num_groups=2.0), "num_groups"),
    (dict(x=torch.randn(6), num_groups=2), "x"),
    (dict(x=torch.randint(0, 5, (2, 6, 4)), num_groups=2), "x"),
    (dict(x=torch.randn(2, 6, 4), num_groups=2, weight=torch.randn(5)), "weight"),
    (dict(x=torch.randn(2, 6, 4), num_groups=2, bias=torch.randn(6, 1)), "bias"),
    (dict(x=torch.randn(2, 6, 4), num_groups=2, eps=-1.0), "eps"),
    (dict(x=torch.randn(2, 6, 4), num_groups=2, eps=float("nan")), "eps"),
    (dict(x=torch.randn(2, 6, 4), num_groups=2, silu="yes"), "silu"),
    ([torch.randn(2, 6, 4), 2], None),
])
def test_bad_input_names_the_argument(kwargs, arg):
    if arg is None:  # positional form works
        hk.group_norm_silu(*kwargs)
        return
    with pytest.raises(ValueError, match=f"^{arg}"):
        hk.group_norm_silu(**kwargs)


def test_library_backward_op_checks_its_saved_tensors():
    x = torch.randn(2, 6, 4)
    y, mean, rstd = torch.ops.hypir_kernels.group_norm_silu(x, None, None, 2, 1e-5, True)
    with pytest.raises(ValueError, match="^mean"):
        torch.ops.hypir_kernels.group_norm_silu_backward(y, x, None, None, mean[:1], rstd, 2, 1e-5, True)
    with pytest.raises(ValueError, match="^grad"):
        torch.ops.hypir_kernels.group_norm_silu_backward(y[:1], x, None, None, mean, rstd, 2, 1e-5, True)
    with pytest.raises(ValueError, match="^groups"):  # the C++ kernel op checks too
        torch.ops.hypir_kernels._group_norm_silu(x, None, None, 4, 1e-5, True)


def test_opcheck_schema_fake_and_autograd():
    x = torch.randn(2, 8, 3, 3).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(8, requires_grad=True), torch.randn(8, requires_grad=True)
    torch.library.opcheck(torch.ops.hypir_kernels.group_norm_silu.default, (x.requires_grad_(True), w, b, 4, 1e-5, True))
    y, mean, rstd = torch.ops.hypir_kernels.group_norm_silu(x.detach(), w.detach(), b.detach(), 4, 1e-5, True)
    torch.library.opcheck(torch.ops.hypir_kernels.group_norm_silu_backward.default,
                          (torch.randn_like(y), x.detach(), w.detach(), None, mean, rstd, 4, 1e-5, True))


def test_torch_compile_fullgraph():
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    w = torch.randn(8, requires_grad=True)

    def f(x, w):
        return hk.group_norm_silu(x, 4, w, None, 1e-5).square().sum()

    got = torch.autograd.grad(torch.compile(f, fullgraph=True, backend="aot_eager")(x, w), (x, w))
    expected = torch.autograd.grad(f(x, w), (x, w))
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e)


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_triton_matches_reference_at_sd_shapes(dtype, layout):
    """Compiled Triton kernels on a GPU (the SD2 VAE's 512 and 128 channels, UNet's 320), forward and backward."""
    for shape in ((2, 512, 32, 32), (1, 128, 96, 64), (2, 320, 16, 16)):
        x = _input(shape, dtype, "contiguous").cuda()
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        weight, bias = torch.randn(shape[1], device="cuda"), torch.randn(shape[1], device="cuda")
        grad = torch.randn(shape, device="cuda").to(dtype)
        with backend.use_backend("reference"):
            expected = _run(x, 32, weight, bias, True, grad)
        with backend.use_backend("triton"):
            got = _run(x, 32, weight, bias, True, grad)
        for what, a, e in zip(("y", "dx", "dweight", "dbias"), got, expected):
            rtol, atol = tolerances(dtype)
            torch.testing.assert_close(a, e, rtol=rtol, atol=atol + (4 * rtol * float(e.abs().max()) if what[0] == "d" else 0),
                                       msg=what)
