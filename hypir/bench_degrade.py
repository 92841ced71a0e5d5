"""Real-ESRGAN degradation benchmark: :func:`hypir.data.degrade` on our ops vs the same pipeline,
with the same draws, on the ops BasicSR / Real-ESRGAN run today.

    python -m hypir.bench_degrade [--batch 8 --size 256 --repeats 3]
    pytest benchmarks/test_degrade.py --benchmark-only

The anchor (:data:`BASICSR_OPS`) swaps in, through :class:`hypir.data.realesrgan.DegradeOps`:
per-sample blur as reflect padding + one grouped ``conv2d`` (BasicSR's ``filter2D``), USM
sharpening as that ``filter2D`` with the 51x51 2-D Gaussian (BasicSR's ``USMSharp``), and Gaussian
noise as ``torch.randn`` times sigma with grey noise blended in (``add_gaussian_noise_pt``). The
rest of the pipeline -- the kernel and parameter draws, resizes, Poisson noise and the JPEG stage
(ours in both: a DiffJPEG port is not part of the anchor) -- is the same code in both, so the ratio
measures the ops we replace. Both runs use the same seed: the same kernels, scales, qualities and
noise strengths; only the Gaussian noise values differ (Philox vs torch's generator).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from hypir_kernels.bench.filter2d import basicsr_filter2d

from .data.realesrgan import DegradeOps, degrade


def basicsr_gaussian_noise(x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, seed: int) -> torch.Tensor:
    """``add_gaussian_noise_pt``: colour noise for every sample, grey noise blended in per sample."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    B, C, H, W = x.shape
    s = sigma.to(x.dtype).view(B, 1, 1, 1)
    noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype) * s
    if bool(gray.any()):
        gw = gray.to(device=x.device, dtype=x.dtype).view(B, 1, 1, 1)
        noise_gray = torch.randn((B, 1, H, W), generator=g, device=x.device, dtype=x.dtype) * s
        noise = noise * (1 - gw) + noise_gray * gw
    return x + noise


def basicsr_usm_sharp(img: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> torch.Tensor:
    """``USMSharp``: ``filter2D`` with the outer product of OpenCV's 51-tap Gaussian."""
    k = radius + 1 if radius % 2 == 0 else radius
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    ax = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g1 = torch.exp(-(ax ** 2) / (2 * sigma ** 2))
    g1 /= g1.sum()
    kernel = (g1[:, None] * g1[None, :]).to(img.dtype).expand(img.shape[0], k, k)
    blur = basicsr_filter2d(img, kernel)
    residual = img - blur
    mask = (residual.abs() * 255 > threshold).to(img.dtype)
    soft = basicsr_filter2d(mask, kernel)
    sharp = torch.clamp(img + weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * img


BASICSR_OPS = DegradeOps(filter2d=basicsr_filter2d, gaussian_noise=basicsr_gaussian_noise, sharpen=basicsr_usm_sharp)


def make_batch(batch: int = 8, size: int = 256, seed: int = 0) -> torch.Tensor:
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)  # image-like, not white noise


def time_both(gt: torch.Tensor, seeds=range(3), repeats: int = 3) -> dict:
    """Median seconds over ``repeats`` of degrading ``gt`` once per seed, ours and the anchor."""
    out = {}
    for name, ops in (("ours", None), ("basicsr_style", BASICSR_OPS)):
        degrade(gt, 0, ops=ops)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for s in seeds:
                degrade(gt, s, ops=ops)
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    gt = make_batch(a.batch, a.size)
    t = time_both(gt, repeats=a.repeats)
    print(f"degrade [{a.batch}, 3, {a.size}, {a.size}] x3 seeds, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"ours {t['ours'] * 1e3:.0f} ms, basicsr_style {t['basicsr_style'] * 1e3:.0f} ms, "
          f"speed-up {t['basicsr_style'] / t['ours']:.2f}x")


if __name__ == "__main__":
    main()
