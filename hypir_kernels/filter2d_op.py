"""Per-sample 2-D filtering ``y[b, c] = correlate(pad(x[b, c]), kernels[b])`` (Real-ESRGAN's
anisotropic / generalised-Gaussian / plateau / sinc blur kernels, 7-21 px, any odd size).

Padding (reflect, replicate, circular, zeros: the same semantics as :func:`gaussian_blur`, reflect
folding again past the far edge on tiny images) has an exact folded adjoint. Paths:

* CPU: one fused C++ kernel (``torch.ops.hypir_kernels._filter2d_fft``, csrc/cpu/filter2d_fft.cpp)
  per (sample, channel) plane: FFT along H of the H-padded columns, then per frequency a k-tap
  complex correlation along W of the W-padded spectra with the kernel columns' spectra as taps,
  then the inverse FFT -- O(HW log H + HW k) instead of O(HW k^2), no padded copy, SIMD lanes over
  image columns (AVX-512 / AVX2 / portable). Faster than the grouped convolution at every kernel
  size measured (3 to 41 px). Its backward in ``x`` is the same kernel run as the exact adjoint.
* Other devices, and the CPU when ``kernels`` needs a gradient (torch autograd then gives it):
  below ``FFT_MIN_KERNEL`` one grouped ``conv2d`` over the batch's channels (the BasicSR
  ``filter2D`` formulation), from it on ``irfft2(rfft2(x_pad) * conj(rfft2(kernel)))`` cropped to
  the valid region.

Non-finite input: on the CPU an Inf/NaN in ``x`` stays within the kernel's reach (such inputs
take the direct path; not under torch.compile); on other devices the FFT path (kernels from
``FFT_MIN_KERNEL``) spreads it over its whole (sample, channel) plane.

Accumulation in fp32 (fp64 for fp64). Differentiable in ``x`` and ``kernels``;
:func:`filter2d_adjoint` is the exact adjoint in ``x``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import check_int, check_tensor
from .reference.blur import PADDINGS, pad_index

# Smallest kernel size that takes the 2-D FFT instead of the grouped conv2d off the fused CPU
# kernel; measured on the 2-core CPU with [32, 3, 256, 256] float32: conv2d 26 / 78 / 279 ms at
# 13 / 21 / 41 px, 2-D FFT a near-constant 55-70 ms (cuFFT / cuDNN not measured).
FFT_MIN_KERNEL = 21
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check(x, kernels, padding, name: str = "x"):
    check_tensor(name, x, dims=4, dtypes=_DTYPES)
    check_tensor("kernels", kernels, dims=3, dtypes=_DTYPES)
    if kernels.shape[0] != x.shape[0]:
        raise ValueError(f"kernels: expected one kernel per sample ({name}'s {x.shape[0]}), got {kernels.shape[0]}")
    k = kernels.shape[-1]
    if kernels.shape[-2] != k or k % 2 == 0:
        raise ValueError(f"kernels: expected square odd-sized kernels [B, k, k], got {tuple(kernels.shape)}")
    if kernels.device != x.device:
        raise ValueError(f"kernels: expected the device of {name} ({x.device}), got {kernels.device}")
    if padding not in PADDINGS:
        raise ValueError(f"padding: expected one of {PADDINGS}, got {padding!r}")


_TORCH_PAD = {"reflect": "reflect", "replicate": "replicate", "circular": "circular", "zeros": "constant"}


def _pad(x: torch.Tensor, r: int, padding: str) -> torch.Tensor:
    """Pad H and W by ``r`` on both sides; autograd gives the exact (folded) adjoint. ``F.pad``
    where its semantics equal ours (pad smaller than the image), index maps otherwise."""
    H, W = x.shape[-2:]
    if r < min(H, W):
        return F.pad(x, (r, r, r, r), mode=_TORCH_PAD[padding])
    mode = PADDINGS.index(padding)
    iy = pad_index(torch.arange(-r, H + r), H, mode).to(x.device)
    ix = pad_index(torch.arange(-r, W + r), W, mode).to(x.device)
    out = x.index_select(-2, iy.clamp(min=0)).index_select(-1, ix.clamp(min=0))
    if padding == "zeros":  # where, not a product: Inf/NaN pixels must not leak into padded zeros
        out = torch.where((iy >= 0)[:, None] & (ix >= 0)[None, :], out, 0)
    return out


def _fast_size(n: int) -> int:
    """Smallest 5-smooth length >= n (FFTs of sizes with large prime factors are several times slower)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _fft_length(m: int) -> int:
    """Smallest 2^a 3^b >= m: the lengths the fused CPU kernel's FFT handles."""
    best = 1 << max(m - 1, 0).bit_length()
    p3 = 1
    while p3 < best:
        n = p3
        while n < m:
            n *= 2
        best = min(best, n)
        p3 *= 3
    return best


@torch.library.custom_op("hypir_kernels::filter2d_cpu", mutates_args=())
def _filter2d_cpu(x: torch.Tensor, kernels: torch.Tensor, pad: int, adjoint: bool) -> torch.Tensor:
    """The fused CPU kernel (or its exact adjoint in ``x``); see the module notes. ``pad`` is the
    index of the padding mode in ``PADDINGS``. Public as torch.ops.hypir_kernels.filter2d_cpu, so
    it checks its own arguments."""
    check_int("pad", pad, minimum=0, maximum=len(PADDINGS) - 1)
    _check(x, kernels, PADDINGS[pad])
    check_tensor("x", x, device="cpu")
    if x.numel() == 0:  # no FFT plan for empty planes
        return torch.zeros_like(x, memory_format=torch.contiguous_format)
    H, k = x.shape[-2], kernels.shape[-1]
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    n = _fft_length(H + k - 1)
    # taps[b, t, f] = conj(FFT_n(kernel[b, :, t]))[f] / n: correlation along H, 1/n of the inverse.
    taps = (torch.fft.rfft(kernels.to(acc).transpose(1, 2), n=n).conj() / n).contiguous()
    out = torch.ops.hypir_kernels._filter2d_fft(x.to(acc).contiguous(), taps, n, pad, adjoint)
    return out.to(x.dtype)


@_filter2d_cpu.register_fake
def _(x, kernels, pad, adjoint):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


_filter2d_cpu.register_autograd(
    lambda ctx, grad: (_filter2d_cpu(grad.contiguous(), ctx.kernels, ctx.pad, not ctx.adjoint), None, None, None),
    setup_context=lambda ctx, inputs, output: ctx.__dict__.update(kernels=inputs[1], pad=inputs[2], adjoint=inputs[3]),
)


def _cpu_path(x: torch.Tensor, kernels: torch.Tensor) -> bool:
    """The fused CPU kernel: CPU tensors, unless the kernels want a gradient (the 2-D FFT path's
    autograd gives that) or ``x`` holds Inf/NaN (see :func:`_transform_ok`)."""
    return x.device.type == "cpu" and not (torch.is_grad_enabled() and kernels.requires_grad) and _transform_ok(x)


def _transform_ok(x: torch.Tensor) -> bool:
    """False for CPU inputs holding Inf/NaN: a transform spreads one non-finite value over its whole
    plane, the direct path keeps it within the kernel's reach (one cheap pass to check). Not
    checked on other devices, where reading the answer would synchronise every call, nor under
    torch.compile (a data-dependent branch would break the graph)."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return True
    # the sum is non-finite iff an element is (or, harmlessly, if finite values overflow it);
    # one reduction pass: 0.65 ms on [32, 3, 256, 256] against 14 ms for isfinite(x).all()
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    return bool(torch.isfinite(x.sum(dtype=acc)))


def filter2d(x: torch.Tensor, kernels: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """Correlate each sample's channels with its own kernel.

    Args:
        x: ``[B, C, H, W]``.
        kernels: ``[B, k, k]``, odd ``k`` (any size).
        padding: "reflect", "replicate", "circular" or "zeros".

    Returns ``[B, C, H, W]`` in ``x``'s dtype.
    """
    _check(x, kernels, padding)
    if x.numel() == 0:  # nothing to filter (the FFT and conv libraries reject empty extents)
        return x.clone()
    if _cpu_path(x, kernels):
        return _filter2d_cpu(x, kernels, PADDINGS.index(padding), False)
    return _filter2d_torch(x, kernels, padding, direct=not _transform_ok(x))


def _filter2d_torch(x: torch.Tensor, kernels: torch.Tensor, padding: str, direct: bool) -> torch.Tensor:
    """The torch formulation (autograd gives its adjoint): grouped conv2d below ``FFT_MIN_KERNEL``
    or when ``direct``, else the padded 2-D FFT product."""
    B, C, H, W = x.shape
    k = kernels.shape[-1]
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    xp = _pad(x.to(acc), k // 2, padding)
    w = kernels.to(acc)
    if k < FFT_MIN_KERNEL or direct:
        weight = w[:, None].expand(B, C, k, k).reshape(B * C, 1, k, k)
        y = F.conv2d(xp.reshape(1, B * C, *xp.shape[-2:]), weight, groups=B * C).reshape(B, C, H, W)
    else:
        size = (_fast_size(xp.shape[-2]), _fast_size(xp.shape[-1]))  # zero tail: no wrap-around reaches the outputs
        spectrum = torch.fft.rfft2(xp, s=size) * torch.fft.rfft2(w, s=size).conj()[:, None]
        y = torch.fft.irfft2(spectrum, s=size)[..., :H, :W]  # correlation: valid outputs start at 0
    return y.to(x.dtype)


def filter2d_adjoint(y: torch.Tensor, kernels: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """The exact adjoint of :func:`filter2d` in ``x`` (padded taps fold back onto the pixels they
    were read from), computed as the vector-Jacobian product of the linear map."""
    _check(y, kernels, padding, "y")
    if y.numel() == 0:
        return y.clone()
    if _cpu_path(y, kernels):
        return _filter2d_cpu(y, kernels, PADDINGS.index(padding), True)
    x0 = torch.zeros_like(y, requires_grad=True)
    with torch.enable_grad():  # the VJP of the torch formulation; direct when y holds Inf/NaN
        out = _filter2d_torch(x0, kernels, padding, direct=not _transform_ok(y))
        (grad,) = torch.autograd.grad(out, x0, y, create_graph=torch.is_grad_enabled() and (y.requires_grad or kernels.requires_grad))
    return grad
