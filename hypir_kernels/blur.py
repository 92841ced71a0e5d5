"""Gaussian blur with per-sample (and per-axis) sigma: a separable, exactly linear operator
whose backward is its exact adjoint (the adjoint of reflect padding folds the border back)."""
from __future__ import annotations

import math

import torch

from . import backend
from .checks import check_int, check_tensor
from .reference import blur as ref

PADDINGS = ref.PADDINGS
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _sigmas(sigma, batch: int) -> torch.Tensor:
    """``sigma`` as a float64 CPU tensor [B, 2] of (sigma_y, sigma_x)."""
    if isinstance(sigma, torch.Tensor):
        if sigma.dtype.is_complex or not (sigma.dtype.is_floating_point or sigma.dtype in (torch.int32, torch.int64)):
            raise ValueError(f"sigma: expected a real tensor, got {sigma.dtype}")
        if sigma.requires_grad:
            raise ValueError("sigma: gradients with respect to sigma are not supported; pass a detached tensor")
        s = sigma.detach().to("cpu", torch.float64)
        if s.dim() == 0:
            s = s.expand(batch, 2)
        elif s.dim() == 1 and s.shape[0] == batch:
            s = s[:, None].expand(batch, 2)
        elif not (s.dim() == 2 and s.shape == (batch, 2)):
            raise ValueError(f"sigma: expected a float, [B] or [B, 2] with B={batch}, got shape {tuple(sigma.shape)}")
    elif isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        # Checked as a Python number: no tensor reads, so torch.compile(fullgraph) can trace it.
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma: must be finite and > 0, got {sigma}")
        return torch.full((batch, 2), float(sigma), dtype=torch.float64)
    else:
        raise ValueError(f"sigma: expected a float or a tensor, got {type(sigma).__name__}")
    if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
        raise ValueError(f"sigma: every value must be finite and > 0, got min {s.min().item()}")
    return s.contiguous()


def gaussian_taps(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Normalised 1-D Gaussian taps ``[..., kernel_size]`` (float64) for sigmas ``[...]``."""
    t = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    w = torch.exp(-0.5 * (t / sigma[..., None]) ** 2)
    return w / w.sum(-1, keepdim=True)


# Taps per axis at most: bounds the taps' memory and the work per pixel (an 8x8 image with
# sigma 2e7 once asked for 1.2e8 taps: 41 s and 5.4 GB). The default size reaches it at sigma ~10922.
MAX_KERNEL_SIZE = 65537


def default_kernel_size(sigma_max: float) -> int:
    """2 * ceil(3 sigma) + 1: covers +-3 sigma."""
    return 2 * math.ceil(3 * sigma_max) + 1


def gaussian_blur(x: torch.Tensor, sigma, kernel_size: int | None = None, padding: str = "reflect") -> torch.Tensor:
    """Separable Gaussian blur of ``x`` [B, C, H, W].

    Args:
        x: real floating tensor [B, C, H, W] (float32/64, float16, bfloat16; any strides).
        sigma: standard deviation in pixels: a float, a [B] tensor (per sample) or a [B, 2]
            tensor of (sigma_y, sigma_x) (axis-aligned anisotropic). Not differentiable. Under
            ``torch.compile(fullgraph=True)`` pass a float (a tensor's values are checked on the host).
        kernel_size: odd taps per axis; default ``2 * ceil(3 * max(sigma)) + 1``. The RSD paper's
            blur is ``sigma=2, kernel_size=9``.
        padding: ``"reflect"`` (no edge repeat, folds again past the far edge), ``"replicate"``,
            ``"circular"`` or ``"zeros"``.

    Returns:
        [B, C, H, W] in the dtype of ``x`` (fp32 accumulation for 16-bit inputs; fp64 for fp64).
        Differentiable in ``x``; the gradient is the exact adjoint of the blur.
    """
    wy, wx, pad = _taps_for(x, "x", sigma, kernel_size, padding)
    return torch.ops.hypir_kernels.separable_filter(x, wy, wx, pad, False)


def gaussian_blur_adjoint(y: torch.Tensor, sigma, kernel_size: int | None = None, padding: str = "reflect") -> torch.Tensor:
    """The exact adjoint of :func:`gaussian_blur` with the same arguments (same shapes)."""
    wy, wx, pad = _taps_for(y, "y", sigma, kernel_size, padding)
    return torch.ops.hypir_kernels.separable_filter(y, wy, wx, pad, True)


def _taps_for(x: torch.Tensor, name: str, sigma, kernel_size, padding) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Validate the blur arguments; return taps (y, x) in the accumulation dtype on x's device."""
    check_tensor(name, x, dims=4)
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{name}: expected a real floating tensor (float32/64, float16, bfloat16), got {x.dtype}")
    if padding not in PADDINGS:
        raise ValueError(f"padding: expected one of {PADDINGS}, got {padding!r}")
    s = _sigmas(sigma, x.shape[0])
    if kernel_size is None:
        sigma_max = float(sigma) if isinstance(sigma, (int, float)) else (float(s.max()) if s.numel() else 1.0)
        if 3 * sigma_max > MAX_KERNEL_SIZE:
            raise ValueError(f"sigma: {sigma_max:g} needs a kernel longer than {MAX_KERNEL_SIZE} taps (the limit); "
                             f"pass a smaller sigma or an explicit kernel_size")
        kernel_size = default_kernel_size(sigma_max)
    check_int("kernel_size", kernel_size, minimum=1)
    if kernel_size > MAX_KERNEL_SIZE:
        raise ValueError(f"kernel_size: expected at most {MAX_KERNEL_SIZE} taps, got {kernel_size}")
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: must be odd, got {kernel_size}")
    taps = gaussian_taps(s, kernel_size)  # [B, 2, k]
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    wy = taps[:, 0].to(device=x.device, dtype=acc).contiguous()
    wx = taps[:, 1].to(device=x.device, dtype=acc).contiguous()
    return wy, wx, PADDINGS.index(padding)


# ---- the torch.library op and its backends ------------------------------------------------


def _separable_cpp(x, wy, wx, pad, adjoint):
    return torch.ops.hypir_kernels._separable_filter(x, wy, wx, pad, adjoint)


backend.register(
    "separable_filter",
    kernel_op="_separable_filter",
    cpu=_separable_cpp,
    cuda=_separable_cpp,
    reference=ref.separable_filter,
)


@torch.library.custom_op("hypir_kernels::separable_filter", mutates_args=())
def _separable_filter_op(x: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor, pad: int, adjoint: bool) -> torch.Tensor:
    return backend.dispatch("separable_filter", x.device)(x, wy, wx, pad, adjoint)


@_separable_filter_op.register_fake
def _(x, wy, wx, pad, adjoint):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    _, wy, wx, pad, adjoint = inputs
    ctx.save_for_backward(wy, wx)
    ctx.pad, ctx.adjoint = pad, adjoint


def _backward(ctx, grad):
    wy, wx = ctx.saved_tensors
    return torch.ops.hypir_kernels.separable_filter(grad.contiguous(), wy, wx, ctx.pad, not ctx.adjoint), None, None, None, None


_separable_filter_op.register_autograd(_backward, setup_context=_setup_context)
