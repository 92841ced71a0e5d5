"""Stages of the on-device Real-ESRGAN degradation (issue 12; in progress: blur with the random
kernels of :mod:`hypir.data.kernels`, random resize, Gaussian noise and JPEG are here; Poisson
noise, USM sharpening and the two-stage pipeline with its benchmark are not yet).

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





# ---------------------------------------------------------------------------------------------
# Random resize (one scale and mode per batch: the batch keeps one shape)

RESIZE_MODES = ("area", "bilinear", "bicubic")


def random_resize(x: torch.Tensor, seed: int, updown_probs=(0.2, 0.7, 0.1), resize_range=(0.15, 1.5),
                  modes=RESIZE_MODES) -> tuple[torch.Tensor, float, str]:
    """Real-ESRGAN's random resize: up (scale in ``(1, high)``) / down (``(low, 1)``) / keep with
    ``updown_probs``, mode uniform over ``modes``, one draw for the batch. Returns
    ``(resized, scale, mode)``; ``F.interpolate`` as Real-ESRGAN calls it."""
    check_tensor("x", x, dims=4)
    if len(updown_probs) != 3 or min(updown_probs) < 0 or sum(updown_probs) <= 0:
        raise ValueError(f"updown_probs: expected three non-negative weights (up, down, keep), got {updown_probs!r}")
    lo, hi = resize_range
    if not 0 < lo <= 1 <= hi:
        raise ValueError(f"resize_range: expected 0 < low <= 1 <= high, got {resize_range!r}")
    if not modes or any(m not in RESIZE_MODES for m in modes):
        raise ValueError(f"modes: expected a non-empty subset of {RESIZE_MODES}, got {modes!r}")
    g = torch.Generator().manual_seed(check_seed("seed", seed))
    probs = torch.tensor(updown_probs, dtype=torch.float64)
    kind = int(torch.multinomial(probs / probs.sum(), 1, generator=g))
    u = float(torch.rand((), generator=g, dtype=torch.float64))
    scale = 1 + (hi - 1) * u if kind == 0 else (lo + (1 - lo) * u if kind == 1 else 1.0)
    mode = modes[int(torch.randint(len(modes), (), generator=g))]
    if scale == 1.0:
        return x, scale, mode
    kw = {} if mode == "area" else {"align_corners": False}
    return torch.nn.functional.interpolate(x, scale_factor=scale, mode=mode, **kw), scale, mode


def random_jpeg(x: torch.Tensor, seed: int, quality_range=(30, 95)) -> tuple[torch.Tensor, torch.Tensor]:
    """Real-ESRGAN's JPEG stage: per-sample integer quality uniform in ``quality_range``
    (inclusive), drawn from ``seed``; input clamped to [0, 1] first as Real-ESRGAN does. Returns
    ``(compressed, quality [B])``."""
    from .jpeg import jpeg

    check_tensor("x", x, dims=4)
    lo, hi = quality_range
    if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi <= 100):
        raise ValueError(f"quality_range: expected ints 1 <= low <= high <= 100, got {quality_range!r}")
    g = torch.Generator().manual_seed(check_seed("seed", seed))
    quality = torch.randint(lo, hi + 1, (x.shape[0],), generator=g)
    return jpeg(x.clamp(0, 1), quality.to(x.device)), quality

__all__ = ["RESIZE_MODES", "blur", "gaussian_noise", "random_gaussian_noise", "random_jpeg", "random_resize"]
