"""Stages of the on-device Real-ESRGAN degradation: blur with the random kernels of
:mod:`hypir.data.kernels`, random resize, Gaussian and Poisson noise, JPEG (:mod:`hypir.data.jpeg`);
the two-stage pipeline is :mod:`hypir.data.realesrgan`.

Noise comes from :func:`hypir_kernels.add_noise` (Philox keyed by the seed, one stream per
sample), so a batch degraded from a seed is the same on the CPU and on CUDA up to float rounding,
and a sample's noise depends on (seed, its offset), not on the rest of the batch.
"""
from __future__ import annotations

import math

import torch

import hypir_kernels as hk
from hypir_kernels.checks import check_probability, check_range, check_seed, check_tensor, check_weights

from .kernels import KernelSpec, random_kernels

_GRAY_STREAM = 1 << 40  # offsets of the grey-noise draws: disjoint from the colour draws' 0..B-1


def blur(x: torch.Tensor, seed: int, spec: KernelSpec | None = None) -> torch.Tensor:
    """``[B, C, H, W]`` images blurred per sample with Real-ESRGAN's random kernels (reflect
    padding, as Real-ESRGAN's ``filter2D``)."""
    check_tensor("x", x, dims=4)
    kernels, _ = random_kernels(x.shape[0], seed, spec, device=x.device, dtype=x.dtype)
    return hk.filter2d(x, kernels, padding="reflect")


def gaussian_noise(x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, seed: int,
                   shared_gray: bool = False) -> torch.Tensor:
    """``x + sigma_b * n`` per sample: ``n`` independent per channel, or (``gray[b]``) one draw per
    pixel shared by the channels, as Real-ESRGAN's ``add_gaussian_noise_pt``. ``sigma`` ``[B]`` in
    the units of ``x`` (Real-ESRGAN draws 1..30 / 255); not clipped or rounded here.
    ``shared_gray``: the grey samples share one noise field (scaled by their own sigma), as the
    released ``generate_gaussian_noise_pt`` draws it (``randn(H, W)`` for the whole batch)."""
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
    if shared_gray:
        field = hk.add_noise(x.new_zeros(1, 1, *x.shape[2:]), 1.0, seed, offsets=_GRAY_STREAM)
        grey_noise = field * sigma.to(device=x.device, dtype=x.dtype).view(B, 1, 1, 1)
    else:
        grey_noise = hk.add_noise(x.new_zeros(B, 1, *x.shape[2:]), sigma, seed, offsets=_GRAY_STREAM)
    return torch.where(gray.to(x.device)[:, None, None, None], x + grey_noise, color)


def random_gaussian_noise(x: torch.Tensor, seed: int, sigma_range=(1 / 255, 30 / 255), gray_prob: float = 0.4,
                          noise_fn=None, shared_gray: bool = False):
    """Real-ESRGAN's ``random_add_gaussian_noise_pt``: per-sample sigma uniform in ``sigma_range``
    and grey noise with probability ``gray_prob``, drawn on the CPU from ``seed``. Returns
    ``(noisy, sigma [B], gray [B])``. ``noise_fn`` (default :func:`gaussian_noise`, called with
    ``shared_gray`` when that is set) applies them."""
    sigma, gray, noise_seed = _draw_noise_params(x, seed, "sigma_range", sigma_range, gray_prob)
    kw = {"shared_gray": True} if shared_gray else {}
    return (noise_fn or gaussian_noise)(x, sigma.to(x.device), gray, noise_seed, **kw), sigma, gray


def _draw_noise_params(x, seed, range_name, value_range, gray_prob):
    """Per-sample strength uniform in ``value_range``, grey flags, and the seed of the noise
    itself (derived from, not equal to, ``seed``), all drawn on the CPU."""
    check_tensor("x", x, dims=4)
    lo, hi = check_range(range_name, value_range)
    check_probability("gray_prob", gray_prob)
    g = torch.Generator().manual_seed(check_seed("seed", seed))
    B = x.shape[0]
    strength = lo + (hi - lo) * torch.rand(B, generator=g, dtype=torch.float64)
    gray = torch.rand(B, generator=g, dtype=torch.float64) < gray_prob
    return strength, gray, int(torch.randint(0, 2**62, (1,), generator=g))





# ---------------------------------------------------------------------------------------------
# Random resize (one scale and mode per batch: the batch keeps one shape)

RESIZE_MODES = ("area", "bilinear", "bicubic")


def check_resize_range(name: str, value) -> tuple:
    """Resize scales ``(lo, hi)`` with ``0 < lo <= 1 <= hi`` (down below 1, up above)."""
    lo, hi = check_range(name, value)
    if not 0 < lo <= 1 <= hi:
        raise ValueError(f"{name}: expected 0 < low <= 1 <= high, got {value!r}")
    return lo, hi


def _check_modes(modes) -> None:
    if not isinstance(modes, (tuple, list)) or not modes or any(m not in RESIZE_MODES for m in modes):
        raise ValueError(f"modes: expected a non-empty subset of {RESIZE_MODES}, got {modes!r}")


def draw_resize(seed: int, updown_probs=(0.2, 0.7, 0.1), resize_range=(0.15, 1.5), modes=RESIZE_MODES) -> tuple[float, str]:
    """Real-ESRGAN's resize draw: up (scale in ``(1, high)``) / down (``(low, 1)``) / keep with
    ``updown_probs``, mode uniform over ``modes``; ``(scale, mode)`` from ``seed``."""
    check_weights("updown_probs", updown_probs, 3)
    lo, hi = check_resize_range("resize_range", resize_range)
    _check_modes(modes)
    g = torch.Generator().manual_seed(check_seed("seed", seed))
    probs = torch.tensor(updown_probs, dtype=torch.float64)
    kind = int(torch.multinomial(probs / probs.sum(), 1, generator=g))
    u = float(torch.rand((), generator=g, dtype=torch.float64))
    scale = 1 + (hi - 1) * u if kind == 0 else (lo + (1 - lo) * u if kind == 1 else 1.0)
    return scale, modes[int(torch.randint(len(modes), (), generator=g))]


def resize(x: torch.Tensor, mode: str, scale: float | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``F.interpolate`` as Real-ESRGAN calls it (by ``scale`` or to ``size``), never to an empty image."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"mode: expected one of {RESIZE_MODES}, got {mode!r}")
    kw = {} if mode == "area" else {"align_corners": False}
    if size is None and min(int(x.shape[-2] * scale), int(x.shape[-1] * scale)) < 1:
        size = (max(int(x.shape[-2] * scale), 1), max(int(x.shape[-1] * scale), 1))
    if size is not None:
        return torch.nn.functional.interpolate(x, size=size, mode=mode, **kw)
    return torch.nn.functional.interpolate(x, scale_factor=scale, mode=mode, **kw)


def random_resize(x: torch.Tensor, seed: int, updown_probs=(0.2, 0.7, 0.1), resize_range=(0.15, 1.5),
                  modes=RESIZE_MODES) -> tuple[torch.Tensor, float, str]:
    """Real-ESRGAN's random resize of a batch (one :func:`draw_resize` for all samples: the batch
    keeps one shape). Returns ``(resized, scale, mode)``."""
    check_tensor("x", x, dims=4)
    scale, mode = draw_resize(seed, updown_probs, resize_range, modes)
    if scale == 1.0:
        return x, scale, mode
    return resize(x, mode, scale=scale), scale, mode


def random_jpeg(x: torch.Tensor, seed: int, quality_range=(30, 95), variant: str = "ours") -> tuple[torch.Tensor, torch.Tensor]:
    """Real-ESRGAN's JPEG stage: per-sample quality uniform in ``quality_range``, drawn from
    ``seed``: integers (inclusive) for ``variant="ours"``, floats for ``"released"`` (the release's
    ``uniform_`` into its DiffJPEG; :func:`hypir.data.jpeg.jpeg`); input clamped to [0, 1] first as
    Real-ESRGAN does. Returns ``(compressed, quality [B])``."""
    from .jpeg import jpeg

    check_tensor("x", x, dims=4)
    released = variant == "released"
    lo, hi = check_range("quality_range", quality_range, 1, 100, ints=not released)
    g = torch.Generator().manual_seed(check_seed("seed", seed))
    if released:
        quality = lo + (hi - lo) * torch.rand(x.shape[0], generator=g, dtype=torch.float64)
    else:
        quality = torch.randint(lo, hi + 1, (x.shape[0],), generator=g)
    return jpeg(x.clamp(0, 1), quality.to(x.device), variant), quality


# ---------------------------------------------------------------------------------------------
# Poisson noise

_LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # OpenCV's COLOR_RGB2GRAY (BasicSR's numpy path)
_RELEASED_LUMA_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale (the released torch path)


def _poisson_part(img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Real-ESRGAN's shot noise of ``img`` (already rounded to 8 bits): counts scaled by the
    per-sample number of distinct values rounded up to a power of two."""
    levels = [len(torch.unique(img[b])) for b in range(img.shape[0])]
    vals = img.new_tensor([2.0 ** math.ceil(math.log2(max(n, 1))) for n in levels]).view(-1, 1, 1, 1)
    return torch.poisson(img * vals, generator=generator) / vals - img


def poisson_noise(x: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor, seed: int,
                  released_luma: bool = False) -> torch.Tensor:
    """``x + scale_b * shot noise`` per sample, as Real-ESRGAN's ``add_poisson_noise_pt`` (grey
    samples: noise of the luma, shared by the channels). Drawn with ``torch.poisson`` from a
    generator on ``x``'s device seeded with ``seed``: reproducible per device, not across devices
    (unlike the Philox-based Gaussian noise). The luma is that of the 8-bit-rounded image with
    weights 0.299/0.587/0.114; ``released_luma``: as the release, torchvision's 0.2989/0.587/0.114
    of the image before rounding."""
    check_tensor("x", x, dims=4)
    B, C = x.shape[:2]
    if C != 3:
        raise ValueError(f"x: expected 3 (RGB) channels, got shape {tuple(x.shape)}")
    check_tensor("scale", scale, dims=1)
    check_tensor("gray", gray, dims=1, dtypes=(torch.bool,))
    if scale.shape[0] != B or gray.shape[0] != B:
        raise ValueError(f"scale, gray: expected one value per sample ({B}), got {tuple(scale.shape)} and {tuple(gray.shape)}")
    g = torch.Generator(device=x.device).manual_seed(check_seed("seed", seed))
    if x.numel() and not bool(torch.isfinite(x).all()):  # a Poisson rate must be a number
        raise ValueError("x: contains NaN or Inf (Poisson noise needs finite pixel values)")
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    img = torch.clamp((x.to(acc) * 255.0).round(), 0, 255) / 255.0
    noise = _poisson_part(img, g)
    gray_d = gray.to(x.device)
    if bool(gray.any()):
        w = img.new_tensor(_RELEASED_LUMA_WEIGHTS if released_luma else _LUMA_WEIGHTS).view(1, 3, 1, 1)
        luma = torch.clamp((((x.to(acc) if released_luma else img) * w).sum(1, keepdim=True) * 255.0).round(), 0, 255) / 255.0
        noise = torch.where(gray_d[:, None, None, None], _poisson_part(luma, g).expand_as(noise), noise)
    return (x.to(acc) + noise * scale.to(device=x.device, dtype=acc).view(-1, 1, 1, 1)).to(x.dtype)


def random_poisson_noise(x: torch.Tensor, seed: int, scale_range=(0.05, 3.0), gray_prob: float = 0.4,
                         released_luma: bool = False):
    """Real-ESRGAN's ``random_add_poisson_noise_pt``: per-sample scale uniform in ``scale_range``,
    grey with probability ``gray_prob``. Returns ``(noisy, scale [B], gray [B])``."""
    scale, gray, noise_seed = _draw_noise_params(x, seed, "scale_range", scale_range, gray_prob)
    return poisson_noise(x, scale, gray, noise_seed, released_luma), scale, gray


__all__ = ["RESIZE_MODES", "blur", "check_resize_range", "draw_resize", "resize", "gaussian_noise", "poisson_noise", "random_gaussian_noise", "random_jpeg", "random_poisson_noise",
           "random_resize"]
