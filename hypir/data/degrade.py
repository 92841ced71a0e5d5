"""Stages of the on-device Real-ESRGAN degradation (issue 12; in progress: blur with the random
kernels of :mod:`hypir.data.kernels` and Gaussian noise are here; random resize, Poisson noise,
JPEG and the two-stage pipeline are not yet).

Noise comes from :func:`hypir_kernels.add_noise` (Philox keyed by the seed, one stream per
sample), so a batch degraded from a seed is the same on the CPU and on CUDA up to float rounding,
and a sample's noise depends on (seed, its offset), not on the rest of the batch.
"""
from __future__ import annotations

import torch

import hypir_kernels as hk
from hypir_kernels._checks import check_seed, check_tensor

from .kernels import KernelSpec, random_kernels

_GRAY_STREAM = 1 << 40  # offsets of the grey-noise draws: disjoint from the colour draws' 0..B-1


def blur(x: torch.Tensor, seed: int, spec: KernelSpec | None = None) -> torch.Tensor:
    """``[B, C, H, W]`` images blurred per sample with Real-ESRGAN's random kernels (reflect
    padding, as Real-ESRGAN's ``filter2D``)."""
    check_tensor("x", x, dims=4)
    kernels, _ = random_kernels(x.shape[0], seed, spec, device=x.device, dtype=x.dtype)
    return hk.filter2d(x, kernels, padding="reflect")


def gaussian_noise(x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, seed: int) -> torch.Tensor:
    """``x + sigma_b * n`` per sample: ``n`` independent per channel, or (``gray[b]``) one draw per
    pixel shared by the channels, as Real-ESRGAN's ``add_gaussian_noise_pt``. ``sigma`` ``[B]`` in
    the units of ``x`` (Real-ESRGAN draws 1..30 / 255); not clipped or rounded here."""
    check_tensor("x", x, dims=4)
    B = x.shape[0]
    check_tensor("sigma", sigma, dims=1)
    check_tensor("gray", gray, dims=1, dtypes=(torch.bool,))
    if sigma.shape[0] != B or gray.shape[0] != B:
        raise ValueError(f"sigma, gray: expected one value per sample ({B}), got {tuple(sigma.shape)} and {tuple(gray.shape)}")
    check_seed("seed", seed)
    color = hk.add_noise(x, sigma, seed)
    if not bool(gray.any()):
        return color
    grey_noise = hk.add_noise(x.new_zeros(B, 1, *x.shape[2:]), sigma, seed, offsets=_GRAY_STREAM)
    return torch.where(gray.to(x.device)[:, None, None, None], x + grey_noise, color)


def random_gaussian_noise(x: torch.Tensor, seed: int, sigma_range=(1 / 255, 30 / 255), gray_prob: float = 0.4):
    """Real-ESRGAN's ``random_add_gaussian_noise_pt``: per-sample sigma uniform in ``sigma_range``
    and grey noise with probability ``gray_prob``, drawn on the CPU from ``seed``. Returns
    ``(noisy, sigma [B], gray [B])``."""
    check_tensor("x", x, dims=4)
    lo, hi = sigma_range
    if not 0 <= lo <= hi:
        raise ValueError(f"sigma_range: expected 0 <= low <= high, got {sigma_range!r}")
    if not 0.0 <= gray_prob <= 1.0:
        raise ValueError(f"gray_prob: expected a probability, got {gray_prob!r}")
    g = torch.Generator().manual_seed(check_seed("seed", seed))
    B = x.shape[0]
    sigma = lo + (hi - lo) * torch.rand(B, generator=g, dtype=torch.float64)
    gray = torch.rand(B, generator=g, dtype=torch.float64) < gray_prob
    # The noise itself from a seed derived from (not equal to) the parameters' seed.
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=g))
    return gaussian_noise(x, sigma.to(x.device), gray, noise_seed), sigma, gray


__all__ = ["blur", "gaussian_noise", "random_gaussian_noise"]
