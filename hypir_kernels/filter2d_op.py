"""Per-sample 2-D filtering ``y[b, c] = correlate(pad(x[b, c]), kernels[b])`` (Real-ESRGAN's
anisotropic / generalised-Gaussian / plateau / sinc blur kernels, 7-21 px, any odd size).

Padding (reflect, replicate, circular, zeros: the same semantics as :func:`gaussian_blur`, reflect
folding again past the far edge on tiny images) has an exact folded adjoint. Three paths:

* direct, ``k < ROWS_MIN_KERNEL`` (CPU) / ``k < FFT_MIN_KERNEL`` (other devices): one grouped
  ``conv2d`` over the batch's channels (the BasicSR ``filter2D`` formulation);
* row-spectral (CPU, ``k >= ROWS_MIN_KERNEL``): rows padded along W and transformed by one
  ``rfft`` each; in that domain the 2-D correlation is, per frequency, a k-tap correlation along
  H with the kernel rows' spectra as taps -- ``torch.ops.hypir_kernels._mix_rows`` (C++, reads
  the H padding through an index map, so only the W padding is materialised) -- then one
  ``irfft`` per row. Cost O(HW log W + HW k) instead of O(HW k^2); its backward in ``x`` is the
  same pipeline run as the exact adjoint;
* 2-D FFT (other devices, ``k >= FFT_MIN_KERNEL``; and any device when ``kernels`` needs a
  gradient): ``irfft2(rfft2(x_pad) * conj(rfft2(kernel)))`` cropped to the valid region, with
  autograd through torch's ops.

Accumulation in fp32 (fp64 for fp64). Differentiable in ``x`` and ``kernels``;
:func:`filter2d_adjoint` is the exact adjoint in ``x``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_tensor
from .reference.blur import PADDINGS, pad_index

# Smallest kernel sizes that leave the direct path, measured on the 2-core CPU with
# [32, 3, 256, 256] float32: direct 26 / 78 / 279 ms at 13 / 21 / 41 px, 2-D FFT a near-constant
# 55-70 ms; row-spectral see ROWS_MIN_KERNEL's measurement in the README.
FFT_MIN_KERNEL = 21
ROWS_MIN_KERNEL = 9
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check(x, kernels, padding):
    check_tensor("x", x, dims=4, dtypes=_DTYPES)
    check_tensor("kernels", kernels, dims=3, dtypes=_DTYPES)
    if kernels.shape[0] != x.shape[0]:
        raise ValueError(f"kernels: expected one kernel per sample ({x.shape[0]}), got {kernels.shape[0]}")
    k = kernels.shape[-1]
    if kernels.shape[-2] != k or k % 2 == 0:
        raise ValueError(f"kernels: expected square odd-sized kernels [B, k, k], got {tuple(kernels.shape)}")
    if kernels.device != x.device:
        raise ValueError(f"kernels: expected the device of x ({x.device}), got {kernels.device}")
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
    if padding == "zeros":
        out = out * ((iy >= 0)[:, None] & (ix >= 0)[None, :]).to(out.dtype)
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


def _cached(shape, dtype) -> torch.Tensor:
    """Uninitialised CPU tensor from the extension's output cache (no fresh page faults)."""
    return torch.ops.hypir_kernels._empty_like_cached(torch.empty((), dtype=dtype).expand(shape))


def _border_index(W: int, r: int, mode: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source columns of the r padded columns on each side (-1: zero padding)."""
    return pad_index(torch.arange(-r, 0), W, mode), pad_index(torch.arange(W, W + r), W, mode)


def _pad_columns(x: torch.Tensor, r: int, mode: int, out: torch.Tensor) -> None:
    """``out[..., :W + 2r]`` = x ``[..., W]`` padded by ``r`` columns per side, the rest zeros."""
    W = x.shape[-1]
    out[..., r:r + W].copy_(x)
    for cols, idx in zip((slice(0, r), slice(r + W, W + 2 * r)), _border_index(W, r, mode)):
        if r:
            out[..., cols].copy_(x.index_select(-1, idx.clamp(min=0)) * (idx >= 0))
    out[..., W + 2 * r:].zero_()


def _fold_columns(rows: torch.Tensor, r: int, mode: int, out: torch.Tensor) -> None:
    """Adjoint of the column padding: ``out [..., W]`` = rows ``[..., >= W + 2r]`` with the padded
    columns added onto the columns they were read from."""
    W = out.shape[-1]
    acc = rows[..., r:r + W].clone()
    for start, idx in zip((0, r + W), _border_index(W, r, mode)):
        keep = (idx >= 0).nonzero().flatten()
        if keep.numel():
            acc.index_add_(-1, idx[keep], rows[..., start + keep])
    out.copy_(acc)


# Samples per block of the row-spectral pipeline: a block's rows stay cache-resident between the
# stages (pad, rfft, mixing, irfft, crop) instead of streaming the whole batch through memory.
_BLOCK_BYTES = 8 << 20


@torch.library.custom_op("hypir_kernels::filter2d_rows", mutates_args=())
def _filter2d_rows(x: torch.Tensor, kernels: torch.Tensor, pad: int, adjoint: bool) -> torch.Tensor:
    """The row-spectral path on the CPU (or its exact adjoint in ``x``); see the module notes."""
    B, C, H, W = x.shape
    k = kernels.shape[-1]
    r = k // 2
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    n = _fast_size(W + 2 * r)  # the zero tail keeps circular wrap-around off the kept columns
    taps = torch.fft.rfft(kernels.to(acc), n=n).conj().resolve_conj()  # correlation along W
    out = _cached((B, C, H, W), x.dtype)
    block = max(1, min(B, _BLOCK_BYTES // (C * H * n * acc.itemsize)))
    rows = _cached((block, C, H, n), acc)
    spectra = _cached((block, C, H, n // 2 + 1), torch.complex128 if acc == torch.float64 else torch.complex64)
    for b0 in range(0, B, block):
        nb = min(block, B - b0)
        xb, rb, sb = x[b0:b0 + nb], rows[:nb], spectra[:nb]
        if adjoint:
            rb[..., :W].copy_(xb)
            rb[..., W:].zero_()
        else:
            _pad_columns(xb, r, pad, rb)
        torch.fft.rfft(rb, out=sb)
        mixed = torch.ops.hypir_kernels._mix_rows(sb, taps[b0:b0 + nb], pad, adjoint)
        torch.fft.irfft(mixed, n=n, out=rb)
        if adjoint:
            _fold_columns(rb, r, pad, out[b0:b0 + nb])
        else:
            out[b0:b0 + nb].copy_(rb[..., :W])
    return out


@_filter2d_rows.register_fake
def _(x, kernels, pad, adjoint):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


_filter2d_rows.register_autograd(
    lambda ctx, grad: (_filter2d_rows(grad.contiguous(), ctx.kernels, ctx.pad, not ctx.adjoint), None, None, None),
    setup_context=lambda ctx, inputs, output: ctx.__dict__.update(kernels=inputs[1], pad=inputs[2], adjoint=inputs[3]),
)


def _rows_path(x: torch.Tensor, kernels: torch.Tensor) -> bool:
    """Row-spectral path: CPU, large enough kernels, and no gradient wanted for the kernels."""
    return (x.device.type == "cpu" and kernels.shape[-1] >= ROWS_MIN_KERNEL
            and not (torch.is_grad_enabled() and kernels.requires_grad))


def filter2d(x: torch.Tensor, kernels: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """Correlate each sample's channels with its own kernel.

    Args:
        x: ``[B, C, H, W]``.
        kernels: ``[B, k, k]``, odd ``k`` (any size; 41 and beyond take the FFT path).
        padding: "reflect", "replicate", "circular" or "zeros".

    Returns ``[B, C, H, W]`` in ``x``'s dtype.
    """
    _check(x, kernels, padding)
    if _rows_path(x, kernels):
        return _filter2d_rows(x.contiguous(), kernels.contiguous(), PADDINGS.index(padding), False)
    B, C, H, W = x.shape
    k = kernels.shape[-1]
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    xp = _pad(x.to(acc), k // 2, padding)
    w = kernels.to(acc)
    if k < FFT_MIN_KERNEL:
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
    _check(y, kernels, padding)
    if _rows_path(y, kernels):
        return _filter2d_rows(y.contiguous(), kernels.contiguous(), PADDINGS.index(padding), True)
    x0 = torch.zeros_like(y, requires_grad=True)
    with torch.enable_grad():
        out = filter2d(x0, kernels, padding)
        (grad,) = torch.autograd.grad(out, x0, y, create_graph=torch.is_grad_enabled() and (y.requires_grad or kernels.requires_grad))
    return grad
