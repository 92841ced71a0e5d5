"""Real-ESRGAN degradation benchmark: :func:`hypir.data.degrade` on our ops vs the same pipeline,
with the same draws, on the ops BasicSR / Real-ESRGAN run today.

    python -m hypir.bench.degrade [--batch 8 --size 256 --repeats 3]
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

from ..data.realesrgan import PRESETS, DegradationConfig, DegradeOps, conv_filter2d, degrade, usm_sharp_conv


def basicsr_gaussian_noise(x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, seed: int,
                           shared_gray: bool = False) -> torch.Tensor:
    """``add_gaussian_noise_pt``: colour noise for every sample, grey noise blended in per sample
    (``shared_gray``: one grey field for the batch, as the HYPIR release draws it)."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    B, C, H, W = x.shape
    s = sigma.to(x.dtype).view(B, 1, 1, 1)
    noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype) * s
    if bool(gray.any()):
        gw = gray.to(device=x.device, dtype=x.dtype).view(B, 1, 1, 1)
        noise_gray = torch.randn((1 if shared_gray else B, 1, H, W), generator=g, device=x.device, dtype=x.dtype) * s
        noise = noise * (1 - gw) + noise_gray * gw
    return x + noise


BASICSR_OPS = DegradeOps(filter2d=conv_filter2d, gaussian_noise=basicsr_gaussian_noise, sharpen=usm_sharp_conv)


def make_batch(batch: int = 8, size: int = 256, seed: int = 0) -> torch.Tensor:
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)  # image-like, not white noise


FAST_OPS = DegradeOps()  # hypir_kernels' ops, whatever the preset's default


def time_both(gt: torch.Tensor, seeds=range(3), repeats: int = 3, config: DegradationConfig | None = None) -> dict:
    """Median seconds over ``repeats`` of degrading ``gt`` once per seed, ours (hypir_kernels'
    ops) and the anchor, with ``config`` (default: the "ours" preset)."""
    out = {}
    for name, ops in (("ours", FAST_OPS), ("basicsr_style", BASICSR_OPS)):
        degrade(gt, 0, config, ops=ops)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for s in seeds:
                degrade(gt, s, config, ops=ops)
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m hypir.bench.degrade", description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    gt = make_batch(a.batch, a.size)
    print(f"degrade [{a.batch}, 3, {a.size}, {a.size}] x3 seeds, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for preset in PRESETS:
        t = time_both(gt, repeats=a.repeats, config=DegradationConfig(preset=preset, queue_size=0))
        print(f"preset {preset:8s}: ours {t['ours'] * 1e3:.0f} ms, basicsr_style {t['basicsr_style'] * 1e3:.0f} ms, "
              f"speed-up {t['basicsr_style'] / t['ours']:.2f}x")


if __name__ == "__main__":
    main()
