"""RSD phase-I objectives (paper §3, Appendix E): diffusion losses on data the model never sees
clean. Each returns the per-sample loss ``[B]`` (mean over elements, EDM weight ``lambda(sigma)``)
of a preconditioned denoiser ``model`` (:class:`hypir.rsd.edm.EDMPrecond`); every random draw
comes from ``generator`` (a CPU ``torch.Generator``), so a step is reproducible on any device.

* :func:`standard_loss` -- EDM on corrupted data ``y = A(x)`` (Algorithm 1).
* :func:`ambient_tweedie_loss` -- noisy data ``y = A(x) + sigma_n e`` (Algorithm 2): ``sigma``
  clipped at ``sigma_n``, ``y_t = y + sqrt(sigma^2 - sigma_n^2) e``, the prediction mapped back to
  the noisy-data space ``(1 - sigma_n^2/sigma^2) D + (sigma_n^2/sigma^2) y_t`` and compared with ``y``.
* :func:`ambient_inpainting_loss` -- random inpainting ``y = M x`` (Algorithm 4): a further mask
  ``M~`` drops a fraction ``delta`` of the observed pixels, the network sees ``[M~ y_t, M~]``, the
  loss is on the observed mask ``M``; with ``sigma_n > 0`` combined with the Tweedie clipping (the
  mapping back only where the network saw ``y_t``). The denoiser is called with ``seen = M~``
  (preconditioning of unseen pixels: :mod:`hypir.rsd.edm`).
* :func:`fourier_ambient_loss` -- multi-coil MRI, ``y = M F(S x)`` in k-space (Algorithm 5): ``M~``
  removes some of the sampled columns, the network sees ``A~^H(M~ (y + sigma e))`` and ``M~``,
  the loss is ``|A D - y|^2`` through the data's own operator. Only ``y``'s sampled entries are read.
"""
from __future__ import annotations

import torch

from hypir_kernels import bernoulli_mask, mri_adjoint, mri_forward

from .edm import loss_weight, masked_loss_weight, training_sigmas


def _randn_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def _per_sample(sq: torch.Tensor) -> torch.Tensor:
    return sq.flatten(1).mean(1)


def _check_model(model, generator) -> None:
    if not callable(model):
        raise ValueError(f"model: expected a denoiser model(x, sigma, cond=None), got {type(model).__name__}")
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError(f"generator: expected a CPU torch.Generator, got {generator!r}")


def _check_images(name: str, x) -> None:
    if not (torch.is_tensor(x) and x.dim() == 4 and x.is_floating_point() and x.shape[0] > 0):
        raise ValueError(f"{name}: expected a float [B, C, H, W] tensor with B > 0, got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")


def _tweedie_levels(batch: int, sigma_n: float, generator, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Training sigmas clipped at ``sigma_n`` and the std of the noise still to add, exactly 0 where clipped."""
    sigma = training_sigmas(batch, generator, device).to(dtype).clamp(min=sigma_n)
    s = sigma.view(-1, 1, 1, 1)
    return sigma, torch.where(s > sigma_n, (s * s - sigma_n**2).clamp(min=0).sqrt(), 0.0)


def standard_loss(model, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``lambda(s) |D(y + s e, s) - y|^2`` with EDM's training sigmas."""
    _check_model(model, generator)
    _check_images("y", y)
    sigma = training_sigmas(y.shape[0], generator, y.device).to(y.dtype)
    s = sigma.view(-1, 1, 1, 1)
    d = model(y + s * _randn_like(y, generator), sigma)
    return loss_weight(sigma) * _per_sample((d - y) ** 2)


def ambient_tweedie_loss(model, y: torch.Tensor, sigma_n: float, generator: torch.Generator) -> torch.Tensor:
    """Ambient Tweedie on ``y = A(x) + sigma_n e`` (see the module doc)."""
    _check_model(model, generator)
    _check_images("y", y)
    if not (isinstance(sigma_n, (int, float)) and sigma_n >= 0):
        raise ValueError(f"sigma_n: expected a number >= 0, got {sigma_n!r}")
    sigma, extra = _tweedie_levels(y.shape[0], sigma_n, generator, y.device, y.dtype)
    y_t = y + extra * _randn_like(y, generator)
    r = sigma_n**2 / sigma.view(-1, 1, 1, 1) ** 2
    pred = (1 - r) * model(y_t, sigma) + r * y_t
    return loss_weight(sigma) * _per_sample((pred - y) ** 2)


def further_mask(mask: torch.Tensor, delta: float, seed: int) -> torch.Tensor:
    """``M~``: each kept entry of the 0/1 ``mask`` dropped with probability ``delta`` (a fresh
    draw per ``seed``; the same draw in every channel)."""
    if not 0 <= delta < 1:
        raise ValueError(f"delta: expected a number in [0, 1), got {delta!r}")
    keep = bernoulli_mask(mask.shape, 1.0 - delta, seed, dtype=mask.dtype, device=mask.device)
    return mask * keep


def ambient_inpainting_loss(model, y: torch.Tensor, mask: torch.Tensor, delta: float, seed: int,
                            generator: torch.Generator, sigma_n: float = 0.0) -> torch.Tensor:
    """Ambient Diffusion for random inpainting: ``y = M (x + sigma_n e)`` ``[B, C, H, W]``, ``mask``
    ``M`` (0/1, same shape or ``[B, 1, H, W]``); the model gets ``cond = M~[:, :1]`` (one mask
    channel). With ``sigma_n > 0`` the Ambient-Tweedie clipping and mapping back are applied too."""
    _check_model(model, generator)
    _check_images("y", y)
    if not (torch.is_tensor(mask) and mask.shape[0] == y.shape[0] and mask.shape[-2:] == y.shape[-2:]
            and mask.shape[1] in (1, y.shape[1])):
        raise ValueError(f"mask: expected [{y.shape[0]}, 1 or {y.shape[1]}, {y.shape[2]}, {y.shape[3]}], got "
                         f"{tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__}")
    if not (isinstance(sigma_n, (int, float)) and sigma_n >= 0):
        raise ValueError(f"sigma_n: expected a number >= 0, got {sigma_n!r}")
    mask = mask.to(y.dtype)
    m_further = further_mask(mask[:, :1], delta, seed)
    sigma, extra = _tweedie_levels(y.shape[0], sigma_n, generator, y.device, y.dtype)
    y_t = y + extra * _randn_like(y, generator)
    r = m_further * sigma_n**2 / sigma.view(-1, 1, 1, 1) ** 2
    pred = (1 - r) * model(m_further * y_t, sigma, cond=m_further, seen=m_further) + r * y_t
    return _per_sample(masked_loss_weight(sigma, m_further) * (mask * (pred - y)) ** 2)


def fourier_ambient_loss(model, y: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor,
                         further: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Fourier-space Ambient Diffusion: ``y`` the multi-coil k-space ``M F(S x)``
    ``[B, Nc, H, W]`` complex, ``maps`` ``S`` ``[B, Nc, H, W]`` complex, ``mask`` ``M`` and
    ``further`` ``M~`` (a subset) column masks ``[B, W]``. The model works on 2-channel images
    (real, imaginary) with ``cond`` = ``M~`` broadcast to ``[B, 1, H, W]``."""
    _check_model(model, generator)
    if not (torch.is_tensor(y) and y.is_complex() and y.dim() == 4):
        raise ValueError(f"y: expected complex k-space [B, Nc, H, W], got "
                         f"{tuple(y.shape) if torch.is_tensor(y) else type(y).__name__}")
    if not (torch.is_tensor(further) and torch.is_tensor(mask) and further.shape == mask.shape):
        raise ValueError("further: expected a column mask of the same shape as mask")
    if bool(((further != 0) & (mask == 0)).any()):
        raise ValueError("further: expected a subset of mask (M~ may only remove sampled columns)")
    B, _, H, W = y.shape
    real = y.real.dtype
    sigma = training_sigmas(B, generator, y.device).to(real)
    e = torch.complex(_randn_like(y.real, generator), _randn_like(y.real, generator)) / 2**0.5
    x_in = mri_adjoint(y + sigma.view(-1, 1, 1, 1) * e, maps, further)  # A~^H (M~ (y + s e))
    x_in = torch.view_as_real(x_in).permute(0, 3, 1, 2)  # [B, 2, H, W]
    cond = further.to(real).view(B, 1, 1, W).expand(B, 1, H, W)
    d = model(x_in, sigma, cond=cond)
    d = torch.view_as_complex(d.permute(0, 2, 3, 1).contiguous())
    observed = (mask != 0).view(B, 1, 1, W)
    r = mri_forward(d, maps, mask) - torch.where(observed, y, torch.zeros((), dtype=y.dtype, device=y.device))
    return loss_weight(sigma) * _per_sample(torch.view_as_real(r) ** 2)
