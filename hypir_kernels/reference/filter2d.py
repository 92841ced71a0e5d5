"""Reference per-sample 2-D filtering: the torch formulation, also the path of every device without a
fused kernel (CUDA today) and of the CPU when ``kernels`` needs a gradient. Below
``FFT_MIN_KERNEL`` one grouped ``conv2d`` over the batch's channels (BasicSR's ``filter2D``),
from it on ``irfft2(rfft2(x_pad) * conj(rfft2(kernel)))`` cropped to the valid region; autograd
gives the gradients, and the adjoint is the vector-Jacobian product of the linear map."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .blur import PADDINGS, pad_index

# Smallest kernel size that takes the 2-D FFT instead of the grouped conv2d; measured on the 2-core
# CPU with [32, 3, 256, 256] float32: conv2d 26 / 78 / 279 ms at 13 / 21 / 41 px, 2-D FFT a
# near-constant 55-70 ms (cuFFT / cuDNN not measured).
FFT_MIN_KERNEL = 21

_TORCH_PAD = {"reflect": "reflect", "replicate": "replicate", "circular": "circular", "zeros": "constant"}


def pad(x: torch.Tensor, r: int, padding: str) -> torch.Tensor:
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


def fast_size(n: int) -> int:
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


def transform_ok(x: torch.Tensor) -> bool:
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


def filter2d(x: torch.Tensor, kernels: torch.Tensor, padding: str, adjoint: bool = False) -> torch.Tensor:
    """``[B, C, H, W]`` correlated per sample with ``kernels [B, k, k]`` (odd k), in x's dtype; with
    ``adjoint`` the exact adjoint in ``x`` instead: the vector-Jacobian product of the linear map
    (padded taps fold back onto the pixels they were read from). The direct formulation when
    ``x`` holds Inf/NaN on the CPU (see :func:`transform_ok`)."""
    direct = not transform_ok(x)
    if not adjoint:
        return _filter2d(x, kernels, padding, direct)
    x0 = torch.zeros_like(x, requires_grad=True)
    with torch.enable_grad():
        out = _filter2d(x0, kernels, padding, direct)
        (grad,) = torch.autograd.grad(out, x0, x, create_graph=torch.is_grad_enabled() and (x.requires_grad or kernels.requires_grad))
    return grad


def _filter2d(x: torch.Tensor, kernels: torch.Tensor, padding: str, direct: bool) -> torch.Tensor:
    B, C, H, W = x.shape
    k = kernels.shape[-1]
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    xp = pad(x.to(acc), k // 2, padding)
    w = kernels.to(acc)
    if k < FFT_MIN_KERNEL or direct:
        weight = w[:, None].expand(B, C, k, k).reshape(B * C, 1, k, k)
        y = F.conv2d(xp.reshape(1, B * C, *xp.shape[-2:]), weight, groups=B * C).reshape(B, C, H, W)
    else:
        size = (fast_size(xp.shape[-2]), fast_size(xp.shape[-1]))  # zero tail: no wrap-around reaches the outputs
        spectrum = torch.fft.rfft2(xp, s=size) * torch.fft.rfft2(w, s=size).conj()[:, None]
        y = torch.fft.irfft2(spectrum, s=size)[..., :H, :W]  # correlation: valid outputs start at 0
    return y.to(x.dtype)
