"""Per-sample 2-D filtering ``y[b, c] = correlate(pad(x[b, c]), kernels[b])`` (Real-ESRGAN's
anisotropic / generalised-Gaussian / plateau / sinc blur kernels, 7-21 px, any odd size).

Padding (reflect, replicate, circular, zeros: the same semantics as :func:`gaussian_blur`, reflect
folding again past the far edge on tiny images) has an exact folded adjoint. Backends (op
``filter2d`` in :data:`hypir_kernels.backend.REGISTRY`):

* ``cpu``: one fused C++ kernel (``torch.ops.hypir_kernels._filter2d_fft``, csrc/cpu/filter2d_fft.cpp)
  per (sample, channel) plane: FFT along H of the H-padded columns, then per frequency a k-tap
  complex correlation along W of the W-padded spectra with the kernel columns' spectra as taps,
  then the inverse FFT -- O(HW log H + HW k) instead of O(HW k^2), no padded copy, SIMD lanes over
  image columns (AVX-512 / AVX2 / portable). Faster than the grouped convolution at every kernel
  size measured (3 to 41 px). Its backward in ``x`` is the same kernel run as the exact adjoint.
  When ``kernels`` needs a gradient, or ``x`` holds Inf/NaN, it hands the call to the reference.
* ``reference`` (every other device): :mod:`hypir_kernels.reference.filter2d`, the torch
  formulation -- grouped ``conv2d`` below ``FFT_MIN_KERNEL``, a padded 2-D FFT product from it on.

Non-finite input: on the CPU an Inf/NaN in ``x`` stays within the kernel's reach (such inputs
take the direct path; not under torch.compile); on other devices the FFT path (kernels from
``FFT_MIN_KERNEL``) spreads it over its whole (sample, channel) plane.

Accumulation in fp32 (fp64 for fp64). Differentiable in ``x`` and ``kernels``;
:func:`filter2d_adjoint` is the exact adjoint in ``x``.
"""
from __future__ import annotations

import torch

from . import backend
from .checks import check_int, check_tensor
from .reference import filter2d as ref
from .reference.blur import PADDINGS

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
    """The fused CPU kernel: CPU tensors, unless the kernels want a gradient (the reference's
    autograd gives that) or ``x`` holds Inf/NaN (see :func:`reference.filter2d.transform_ok`)."""
    return x.device.type == "cpu" and not (torch.is_grad_enabled() and kernels.requires_grad) and ref.transform_ok(x)


def _fused_cpu(x: torch.Tensor, kernels: torch.Tensor, padding: str, adjoint: bool) -> torch.Tensor:
    if not _cpu_path(x, kernels):
        return ref.filter2d(x, kernels, padding, adjoint)
    return _filter2d_cpu(x, kernels, PADDINGS.index(padding), adjoint)


backend.register("filter2d", kernel_op="_filter2d_fft", cpu=_fused_cpu, reference=ref.filter2d)


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
    return backend.dispatch("filter2d", x.device)(x, kernels, padding, False)


def filter2d_adjoint(y: torch.Tensor, kernels: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """The exact adjoint of :func:`filter2d` in ``x`` (padded taps fold back onto the pixels they
    were read from)."""
    _check(y, kernels, padding, "y")
    if y.numel() == 0:
        return y.clone()
    return backend.dispatch("filter2d", y.device)(y, kernels, padding, True)
