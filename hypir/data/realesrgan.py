"""Real-ESRGAN's two-stage degradation as one batched, seeded call on the training device, in two
presets: ``ours`` and ``released`` (as the HYPIR release's batch transform; :class:`DegradationConfig`).

``degrade(gt, seed)`` follows Real-ESRGAN's ``feed_data`` (``realesrgan/models/realesrgan_model.py``)
with its default options: USM-sharpened ground truth; stage 1 = random-kernel blur, random resize,
Gaussian (p 0.5) or Poisson noise, JPEG 30-95; stage 2 = blur with p 0.8, random resize, noise,
then in random order {resize to ``1/scale`` + final sinc (p 0.8, else identity)} and JPEG;
finally rounding to 8 bits. Every draw derives from ``seed`` (on the CPU), so the same seed gives
the same degradation on every device, except Poisson noise (``torch.poisson`` per device).
``hypir.bench.degrade`` times it against the same pipeline on BasicSR's ops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import hypir_kernels as hk
from hypir_kernels.checks import check_int, check_probability, check_range, check_seed, check_tensor, check_weights

from .degrade import (RESIZE_MODES, check_resize_range, draw_resize, random_gaussian_noise, random_jpeg, random_poisson_noise,
                      random_resize, resize)
from .kernels import KernelDraws, KernelSpec, build_kernels, random_kernels

PRESETS = ("ours", "released")


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


def conv_filter2d(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """BasicSR's / the HYPIR release's ``filter2D``, op for op: reflect padding, then one kernel for
    all planes (``kernels [1, k, k]``: a conv over the ``B * C`` planes as a batch) or one per sample
    (``[B, k, k]``: a grouped conv). The float arithmetic of the release, and its speed. Where
    reflect padding cannot pad (a side not longer than the kernel's radius: the release raises
    there), ``hk.filter2d``'s reflect, which folds again past the far edge, takes over."""
    check_tensor("x", x, dims=4, dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16))
    check_tensor("kernels", kernels, dims=3, dtypes=(x.dtype,), device=x.device)
    B, C, H, W = x.shape
    k = kernels.shape[-1]
    if kernels.shape[1] != k or k % 2 == 0 or kernels.shape[0] not in (1, B):
        raise ValueError(f"kernels: expected [1 or B={B}, k, k] with k odd, got {tuple(kernels.shape)}")
    if x.numel() == 0:
        return x.clone()
    if k // 2 >= min(H, W):
        return hk.filter2d(x, kernels.expand(B, k, k), padding="reflect")
    xp = F.pad(x, (k // 2,) * 4, mode="reflect")
    if kernels.shape[0] == 1:
        return F.conv2d(xp.reshape(B * C, 1, *xp.shape[-2:]), kernels.reshape(1, 1, k, k)).reshape(B, C, H, W)
    weight = kernels.reshape(B, 1, k, k).repeat(1, C, 1, 1).reshape(B * C, 1, k, k)
    return F.conv2d(xp.reshape(1, B * C, *xp.shape[-2:]), weight, groups=B * C).reshape(B, C, H, W)


def usm_sharp_conv(img: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> torch.Tensor:
    """:func:`usm_sharp` as the release's ``USMSharp`` computes it: :func:`conv_filter2d` with the
    outer product of OpenCV's ``getGaussianKernel(51, 0)`` (a 2-D 51x51 kernel, float32)."""
    check_tensor("img", img, dims=4, dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16))
    k = radius + 1 if radius % 2 == 0 else radius
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    ax = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g1 = torch.exp(-(ax ** 2) / (2 * sigma ** 2))
    g1 = g1 / g1.sum()
    kernel = (g1[:, None] @ g1[None, :]).float()[None].to(device=img.device, dtype=img.dtype)
    residual = img - conv_filter2d(img, kernel)
    mask = (residual.abs() * 255 > threshold).to(img.dtype)
    soft = conv_filter2d(mask, kernel)
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
    # "released": as HYPIR was trained (XPixelGroup/HYPIR @b61d107, batch_transform.py): the
    # release's DiffJPEG with float qualities, one grey Gaussian field per batch, torchvision's luma
    # for grey Poisson noise, LQ resized back to the ground truth's size *before* the 8-bit
    # rounding, and a training-pair pool of ``queue_size`` (the trainer keeps it). "ours":
    # libjpeg-faithful JPEG with integer qualities, per-sample grey fields, rounding at LQ size
    # (the trainer resizes back), no pool. Both draw beta as the release does.
    preset: str = "ours"
    queue_size: int | None = None  # the pool; None: 256 for "released", 0 (none) for "ours"
    # The arithmetic of the blur and the USM sharpening. "fast": hypir_kernels (per-sample
    # filter2d, separable Gaussian), >= 3x the release's ops on the CPU. "released": the release's
    # grouped/2-D conv2d (:data:`RELEASED_OPS`), so the same draws give the release's bits on the
    # same device: float-rounding differences of the blur flip JPEG quantiser ties, which moves a few
    # blocks by up to ~12/255 (measured on photos). None: "released" for the released preset, else "fast".
    ops: str | None = None

    def __post_init__(self):
        check_int("scale", self.scale, minimum=1)
        check_probability("final_sinc_prob", self.final_sinc_prob)
        if self.preset not in PRESETS:
            raise ValueError(f"preset: expected one of {PRESETS}, got {self.preset!r}")
        if self.queue_size is not None:
            check_int("queue_size", self.queue_size, minimum=0)
        if self.ops not in (None, "fast", "released"):
            raise ValueError(f"ops: expected fast, released or null, got {self.ops!r}")
        if self.preset == "released":
            for name, st in (("stage1", self.stage1), ("stage2", self.stage2)):
                if st.jpeg_range[1] >= 100:  # the release's tables are 0 at quality 100
                    raise ValueError(f"{name}.jpeg_range: the released JPEG needs qualities below 100, got {st.jpeg_range!r}")

    @property
    def resolved_ops(self) -> str:
        """``ops`` resolved against the preset."""
        return self.ops or ("released" if self.preset == "released" else "fast")

    @property
    def pool_size(self) -> int:
        """The training-pair pool's size (``queue_size`` resolved against the preset)."""
        if self.queue_size is not None:
            return self.queue_size
        return 256 if self.preset == "released" else 0


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
    """The ops :func:`degrade` runs its per-sample work through (swappable: the release's arithmetic,
    :data:`RELEASED_OPS`; a benchmark runs the same pipeline, with the same draws, on BasicSR-style
    ops: ``hypir.bench.degrade``). None: ours (hypir_kernels)."""

    filter2d: object = None  # (x, kernels [B, k, k]) -> x blurred with reflect padding
    gaussian_noise: object = None  # (x, sigma [B], gray [B], seed) -> noisy x
    sharpen: object = None  # (gt) -> USM-sharpened gt

    def blur(self, x, kernels):
        return (self.filter2d or (lambda t, k: hk.filter2d(t, k, padding="reflect")))(x, kernels)


RELEASED_OPS = DegradeOps(filter2d=conv_filter2d, sharpen=usm_sharp_conv)  # the release's arithmetic (DegradationConfig.ops)


def _noise(x: torch.Tensor, seed: int, st: StageConfig, ops: DegradeOps, released: bool) -> torch.Tensor:
    """Gaussian (``gaussian_noise_prob``, one choice per batch) or Poisson noise, clipped to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    use_gaussian = float(torch.rand((), generator=g, dtype=torch.float64)) < st.gaussian_noise_prob
    sub = int(torch.randint(0, 2**62, (), generator=g))
    if use_gaussian:
        lo, hi = st.noise_range
        out, strength, gray = random_gaussian_noise(x, sub, (lo / 255, hi / 255), st.gray_noise_prob, ops.gaussian_noise,
                                                    shared_gray=released)
    else:
        out, strength, gray = random_poisson_noise(x, sub, st.poisson_scale_range, st.gray_noise_prob,
                                                   released_luma=released)
    return out.clamp_(0, 1), {"kind": "gaussian" if use_gaussian else "poisson", "strength": strength, "gray": gray}


def degrade(gt: torch.Tensor, seed: int, config: DegradationConfig | None = None,
            ops: DegradeOps | None = None, record: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``gt [B, 3, H, W]`` in [0, 1] (H, W multiples of ``config.scale``) -> ``(lq, the ground
    truth the model should learn: USM-sharpened when config.usm)``, lq in 8-bit steps:
    ``[B, 3, H/s, W/s]`` for the "ours" preset; for "released" ``[B, 3, H, W]``, resized back
    (bicubic) before the rounding as the release does. (The pool of the released preset is the
    trainer's: :class:`hypir.data.PairPool`.)

    ``record``: a dict that receives every draw (``kernel1``/``kernel2`` ``[B, 21, 21]`` or None
    when that blur was skipped, ``scale1``/``mode1``, ``scale2``/``mode2``, ``noise1``/``noise2``
    (kind, per-sample strength in the units of the image, grey flags), ``quality1``/``quality2``,
    ``sinc``, ``final_mode``, ``order``: ``"resize_first"`` or ``"jpeg_first"``), e.g. to replay a
    degradation elsewhere."""
    if record is not None and not isinstance(record, dict):
        raise ValueError(f"record: expected a dict to fill with the draws (or None), got {type(record).__name__}")
    cfg = config or DegradationConfig()
    ops = ops or (RELEASED_OPS if cfg.resolved_ops == "released" else DegradeOps())
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
    released = cfg.preset == "released"
    variant = "released" if released else "ours"
    rec = {} if record is None else record
    out = target
    rec["kernel1"] = rec["kernel2"] = None
    if float(torch.rand((), generator=g, dtype=torch.float64)) < s1.blur_prob:
        rec["kernel1"] = random_kernels(B, seeds[0], s1.kernel, dev, dt)[0]
        out = ops.blur(out, rec["kernel1"])
    out, rec["scale1"], rec["mode1"] = random_resize(out, seeds[1], s1.resize_prob, s1.resize_range)
    out, rec["noise1"] = _noise(out, seeds[2], s1, ops, released)
    out, rec["quality1"] = random_jpeg(out, seeds[3], s1.jpeg_range, variant)

    if float(torch.rand((), generator=g, dtype=torch.float64)) < s2.blur_prob:
        rec["kernel2"] = random_kernels(B, seeds[4], s2.kernel, dev, dt)[0]
        out = ops.blur(out, rec["kernel2"])
    scale2, mode2 = rec["scale2"], rec["mode2"] = draw_resize(seeds[5], s2.resize_prob, s2.resize_range)
    out = resize(out, mode2, size=(max(int(H / cfg.scale * scale2), 1), max(int(W / cfg.scale * scale2), 1)))
    out, rec["noise2"] = _noise(out, seeds[6], s2, ops, released)

    size = (H // cfg.scale, W // cfg.scale)
    final_mode = rec["final_mode"] = RESIZE_MODES[int(torch.randint(3, (), generator=g))]
    sinc = rec["sinc"] = _final_sinc(B, seeds[7], cfg.final_sinc_prob).to(device=dev, dtype=dt)

    def resize_and_sinc(t):
        return ops.blur(resize(t, final_mode, size=size), sinc)

    if float(torch.rand((), generator=g, dtype=torch.float64)) < 0.5:
        rec["order"] = "resize_first"
        out, rec["quality2"] = random_jpeg(resize_and_sinc(out), seeds[8], s2.jpeg_range, variant)
    else:
        rec["order"] = "jpeg_first"
        out, rec["quality2"] = random_jpeg(out, seeds[8], s2.jpeg_range, variant)
        out = resize_and_sinc(out)
    if released and cfg.scale != 1:  # the release resizes back, then rounds (ours rounds, the trainer resizes back)
        out = resize(out, "bicubic", size=(H, W))
    lq = torch.clamp((out * 255.0).round(), 0, 255) / 255.0
    return lq, target


__all__ = ["PRESETS", "RELEASED_OPS", "DegradationConfig", "DegradeOps", "StageConfig", "conv_filter2d", "degrade", "usm_sharp",
           "usm_sharp_conv"]
