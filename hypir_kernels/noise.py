"""Seeded additive Gaussian noise ``y + sigma * eps``, the noise of every corruption operator.

``eps`` comes from Philox4x32-10 (Box-Muller on each block's four words) keyed by ``seed`` with a
per-sample stream ``offsets`` -- the generator of :mod:`hypir_kernels.masks`, in a disjoint
counter space, so noise and masks drawn from one seed are independent. CPU and CUDA kernels run
the same header code (``noise.h``); the torch reference agrees to float32 rounding. The noise is
never stored: a sample's noise depends only on (seed, offset), not on its batch position.
"""
from __future__ import annotations

import numbers

import torch

from . import backend
from .checks import check_seed, check_tensor
from .masks import _offsets
from .reference import noise as ref

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64, torch.complex128)


def _cpp(x, seed, offsets, sigma):
    return torch.ops.hypir_kernels._add_noise(x, seed, offsets, sigma)


backend.register("add_noise", kernel_op="_add_noise", cpu=_cpp, cuda=_cpp, reference=ref.add_noise)


@torch.library.custom_op("hypir_kernels::add_noise", mutates_args=())
def _add_noise_op(x: torch.Tensor, seed: int, offsets: list[int], sigma: torch.Tensor) -> torch.Tensor:
    return backend.dispatch("add_noise", x.device)(x.contiguous(), seed, offsets, sigma)


@_add_noise_op.register_fake
def _(x, seed, offsets, sigma):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


_add_noise_op.register_autograd(lambda ctx, grad: (grad, None, None, None), setup_context=lambda ctx, inputs, output: None)


def _sigmas(sigma, batch: int, device, acc: torch.dtype) -> torch.Tensor:
    """``[B]`` float64 (the kernels multiply in ``x``'s accumulation dtype ``acc``)."""
    if isinstance(sigma, torch.Tensor):
        if sigma.dim() == 0:
            sigma = sigma.expand(batch)
        if sigma.shape != (batch,) or sigma.is_complex() or not sigma.is_floating_point():
            raise ValueError(f"sigma: expected a float or a real [B={batch}] tensor, got {tuple(sigma.shape)} {sigma.dtype}")
        s = sigma.detach().to(device=device, dtype=torch.float64).contiguous()
    elif isinstance(sigma, numbers.Real) and not isinstance(sigma, bool):
        s = torch.full((batch,), float(sigma), dtype=torch.float64, device=device)
    else:
        raise ValueError(f"sigma: expected a float or a [B] tensor, got {type(sigma).__name__}")
    if batch and (not torch.isfinite(s).all() or (s < 0).any()):
        raise ValueError("sigma: expected finite values >= 0")
    if batch and acc != torch.float64 and (s > torch.finfo(acc).max).any():
        raise ValueError(f"sigma: {s.max().item():g} overflows x's {acc} arithmetic (max {torch.finfo(acc).max:g})")
    return s


def add_noise(x: torch.Tensor, sigma, seed: int, *, offsets=None) -> torch.Tensor:
    """``x + sigma * eps`` with ``eps`` standard normal, seeded.

    Args:
        x: ``[B, ...]`` real or complex (complex: independent noise of std ``sigma`` on the real
            and imaginary parts).
        sigma: float or ``[B]`` (per sample), finite, >= 0, kept in float64 and multiplied in
            ``x``'s accumulation precision (float64 for float64/complex128, else float32, where a
            sigma above float32's range is rejected). Not differentiated.
        seed: non-negative int (64-bit Philox key).
        offsets: per-sample Philox stream, as in :func:`hypir_kernels.apply_mask`.

    Returns a tensor like ``x``; its gradient with respect to ``x`` is the identity.
    """
    check_tensor("x", x, dtypes=_DTYPES)
    if x.dim() < 1:
        raise ValueError("x: expected a batch dim [B, ...]")
    seed = check_seed("seed", seed)
    B = x.shape[0]
    acc = torch.float64 if x.dtype in (torch.float64, torch.complex128) else torch.float32
    if x.numel() == 0:  # nothing to draw: check the arguments without per-sample lists for a huge batch
        _sigmas(sigma, B if isinstance(sigma, torch.Tensor) and sigma.dim() else 1, x.device, acc)
        if offsets is not None and not isinstance(offsets, int):
            _offsets(offsets, B)
        return x.clone(memory_format=torch.contiguous_format)
    s = _sigmas(sigma, B, x.device, acc)
    offs = _offsets(offsets, B)
    if x.is_complex():
        return torch.view_as_complex(_add_noise_op(torch.view_as_real(x.contiguous()), seed, offs, s))
    return _add_noise_op(x, seed, offs, s)
