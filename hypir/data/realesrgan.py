"""Real-ESRGAN's two-stage degradation as one batched, seeded call on the training device
(issue 12, in progress: the pipeline and its stages are here; the benchmark against a
BasicSR-style reference is not yet).

``degrade(gt, seed)`` follows Real-ESRGAN's ``feed_data`` (``realesrgan/models/realesrgan_model.py``)
with its default options: USM-sharpened ground truth; stage 1 = random-kernel blur, random resize,
Gaussian (p 0.5) or Poisson noise, JPEG 30-95; stage 2 = blur with p 0.8, random resize, noise,
then in random order {resize to ``1/scale`` + final sinc (p 0.8, else identity)} and JPEG;
finally rounding to 8 bits. Every draw derives from ``seed`` (on the CPU), so the same seed gives
the same degradation on every device, except Poisson noise (``torch.poisson`` per device).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

import hypir_kernels as hk
from hypir_kernels._checks import check_int, check_probability, check_range, check_seed, check_tensor, check_weights

from .degrade import (RESIZE_MODES, check_resize_range, draw_resize, random_gaussian_noise, random_jpeg, random_poisson_noise,
                      random_resize, resize)
from .kernels import KernelDraws, KernelSpec, build_kernels, random_kernels


def usm_sharp(img: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> torch.Tensor:
    """BasicSR's unsharp masking of the ground truth: ``img + weight * (img - blur)`` where the
    residual exceeds ``threshold``/255, blended through a blurred mask. Blur: OpenCV's Gaussian of
    size ``radius`` (made odd) with its default sigma ``0.3 ((k - 1) / 2 - 1) + 0.8``, reflect padding."""
    check_tensor("img", img, dims=4, dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16))
    k = radius + 1 if radius % 2 == 0 else radius
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    blurred = hk.gaussian_blur(img, sigma, kernel_size=k, padding="reflect")
    residual = img - blurred
    mask = (residual.abs() * 255 > threshold).to(img.dtype)
    soft = hk.gaussian_blur(mask, sigma, kernel_size=k, padding="reflect")
    sharp = torch.clamp(img + weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * img


@dataclass(frozen=True)
class StageConfig:
    """One degradation stage's options (Real-ESRGAN's names without the stage suffix)."""

    kernel: KernelSpec = field(default_factory=KernelSpec)
    blur_prob: float = 1.0
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1, 30)
    poisson_scale_range: tuple[float, float] = (0.05, 3)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[int, int] = (30, 95)

    def __post_init__(self):  # the stage functions check these too; here a bad config fails when built
        for name in ("blur_prob", "gaussian_noise_prob", "gray_noise_prob"):
            check_probability(name, getattr(self, name))
        check_weights("resize_prob", self.resize_prob, 3)
        check_resize_range("resize_range", self.resize_range)
        check_range("noise_range", self.noise_range)
        check_range("poisson_scale_range", self.poisson_scale_range)
        check_range("jpeg_range", self.jpeg_range, 1, 100, ints=True)


@dataclass(frozen=True)
class DegradationConfig:
    """Real-ESRGAN's defaults (``options/train_realesrnet_x4plus.yml``)."""

    scale: int = 4
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=lambda: StageConfig(
        kernel=KernelSpec(sigma=(0.2, 1.5)), blur_prob=0.8, resize_prob=(0.3, 0.4, 0.3), resize_range=(0.3, 1.2),
        noise_range=(1, 25), poisson_scale_range=(0.05, 2.5)))
    final_sinc_prob: float = 0.8
    usm: bool = True

    def __post_init__(self):
        check_int("scale", self.scale, minimum=1)
        check_probability("final_sinc_prob", self.final_sinc_prob)


def _final_sinc(batch: int, seed: int, prob: float, pad_to: int = 21) -> torch.Tensor:
    """Real-ESRGAN's final kernels: a sinc (size 7..21, cutoff in [pi/3, pi]) with ``prob``, else
    the identity (a centred pulse)."""
    g = torch.Generator().manual_seed(seed)
    use = torch.rand(batch, generator=g, dtype=torch.float64) < prob
    size = torch.tensor(range(7, 22, 2))[torch.randint(8, (batch,), generator=g)]
    omega = math.pi / 3 + (math.pi - math.pi / 3) * torch.rand(batch, generator=g, dtype=torch.float64)
    zeros = torch.zeros(batch, dtype=torch.float64)
    d = KernelDraws(torch.full((batch,), -1), size, zeros, zeros, zeros, zeros, omega)
    sinc = build_kernels(d, pad_to, dtype=torch.float64)
    pulse = torch.zeros(batch, pad_to, pad_to, dtype=torch.float64)
    pulse[:, pad_to // 2, pad_to // 2] = 1
    return torch.where(use[:, None, None], sinc, pulse)


@dataclass(frozen=True)
class DegradeOps:
    """The ops :func:`degrade` runs its per-sample work through (swappable so a benchmark can run
    the same pipeline, with the same draws, on BasicSR-style ops: ``hypir.bench_degrade``)."""

    filter2d: object = None  # (x, kernels [B, k, k]) -> x blurred with reflect padding
    gaussian_noise: object = None  # (x, sigma [B], gray [B], seed) -> noisy x
    sharpen: object = None  # (gt) -> USM-sharpened gt

    def blur(self, x, kernels):
        return (self.filter2d or (lambda t, k: hk.filter2d(t, k, padding="reflect")))(x, kernels)


def _noise(x: torch.Tensor, seed: int, st: StageConfig, ops: DegradeOps) -> torch.Tensor:
    """Gaussian (``gaussian_noise_prob``, one choice per batch) or Poisson noise, clipped to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    use_gaussian = float(torch.rand((), generator=g, dtype=torch.float64)) < st.gaussian_noise_prob
    sub = int(torch.randint(0, 2**62, (), generator=g))
    if use_gaussian:
        lo, hi = st.noise_range
        out = random_gaussian_noise(x, sub, (lo / 255, hi / 255), st.gray_noise_prob, ops.gaussian_noise)[0]
    else:
        out = random_poisson_noise(x, sub, st.poisson_scale_range, st.gray_noise_prob)[0]
    return out.clamp_(0, 1)


def degrade(gt: torch.Tensor, seed: int, config: DegradationConfig | None = None,
            ops: DegradeOps | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``gt [B, 3, H, W]`` in [0, 1] (H, W multiples of ``config.scale``) -> ``(lq [B, 3, H/s, W/s],
    the ground truth the model should learn: USM-sharpened when config.usm)``."""
    cfg = config or DegradationConfig()
    ops = ops or DegradeOps()
    check_tensor("gt", gt, dims=4, dtypes=(torch.float32, torch.float64))
    B, C, H, W = gt.shape
    if C != 3:
        raise ValueError(f"gt: expected 3 (RGB) channels, got shape {tuple(gt.shape)}")
    if H % cfg.scale or W % cfg.scale or H < cfg.scale or W < cfg.scale:
        raise ValueError(f"gt: height and width must be positive multiples of scale={cfg.scale}, got {H}x{W}")
    if gt.numel() and not bool(torch.isfinite(gt).all()):
        raise ValueError("gt: contains NaN or Inf")
    g = torch.Generator().manual_seed(check_seed("seed", seed))
    seeds = [int(s) for s in torch.randint(0, 2**62, (12,), generator=g)]
    target = (ops.sharpen or usm_sharp)(gt) if cfg.usm else gt
    dev, dt = gt.device, gt.dtype

    # Stage 1 (Real-ESRGAN blurs the sharpened ground truth), then stage 2.
    s1, s2 = cfg.stage1, cfg.stage2
    out = target
    if float(torch.rand((), generator=g, dtype=torch.float64)) < s1.blur_prob:
        out = ops.blur(out, random_kernels(B, seeds[0], s1.kernel, dev, dt)[0])
    out, _, _ = random_resize(out, seeds[1], s1.resize_prob, s1.resize_range)
    out = _noise(out, seeds[2], s1, ops)
    out, _ = random_jpeg(out, seeds[3], s1.jpeg_range)

    if float(torch.rand((), generator=g, dtype=torch.float64)) < s2.blur_prob:
        out = ops.blur(out, random_kernels(B, seeds[4], s2.kernel, dev, dt)[0])
    scale2, mode2 = draw_resize(seeds[5], s2.resize_prob, s2.resize_range)
    out = resize(out, mode2, size=(max(int(H / cfg.scale * scale2), 1), max(int(W / cfg.scale * scale2), 1)))
    out = _noise(out, seeds[6], s2, ops)

    size = (H // cfg.scale, W // cfg.scale)
    final_mode = RESIZE_MODES[int(torch.randint(3, (), generator=g))]
    sinc = _final_sinc(B, seeds[7], cfg.final_sinc_prob).to(device=dev, dtype=dt)

    def resize_and_sinc(t):
        return ops.blur(resize(t, final_mode, size=size), sinc)

    if float(torch.rand((), generator=g, dtype=torch.float64)) < 0.5:
        out = random_jpeg(resize_and_sinc(out), seeds[8], s2.jpeg_range)[0]
    else:
        out = resize_and_sinc(random_jpeg(out, seeds[8], s2.jpeg_range)[0])
    lq = torch.clamp((out * 255.0).round(), 0, 255) / 255.0
    return lq, target


__all__ = ["DegradationConfig", "DegradeOps", "StageConfig", "degrade", "usm_sharp"]
