"""One HYPIR training step (generator step + discriminator step, degradation included) with our
kernels vs the same step built the released way: plain peft LoRA layers and the BasicSR-style
degradation ops (:data:`hypir.bench.degrade.BASICSR_OPS`). Same model, batch, draws and losses.

    python -m hypir.bench.train [--width 64 --rank 256 --size 128 --batch 2 --repeats 10] [--bf16]
    pytest benchmarks/test_train_step.py --benchmark-only

The model is SD2.1's architecture at reduced width (UNet blocks w, 2w, 4w, 4w; VAE w/2 ...), the
discriminator the small conv backbone, LPIPS the random-VGG substitute (both sides alike).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from .degrade import BASICSR_OPS
from ..config import parse
from ..train import HypirTrainer, TrainConfig


def build(variant: str, out: str, width: int = 64, rank: int = 256, size: int = 128, batch: int = 2,
          mixed_precision: str = "no", backbone: str = "sd2", layers: int = 2,
          vae_width: int | None = None) -> HypirTrainer:
    """``variant``: "ours", "released" (peft + BasicSR-style ops) or "peft" (peft's LoRA layers,
    our degradation ops: the LoRA kernels alone); ``mixed_precision``: "no" (fp32) or "bf16"
    (autocast; fp32 weights); ``backbone``: sd2, sdxl, sd3 or flux at reduced width (``width`` the
    denoiser's; ``layers`` transformer blocks; ``vae_width`` default ``width / 2``). accelerate keeps one mixed-precision setting per
    process, shared by every Accelerator: building a trainer sets it, so time a trainer before
    building one with another setting."""
    if variant not in ("ours", "released", "peft"):
        raise ValueError(f"variant: expected 'ours', 'released' or 'peft', got {variant!r}")
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)  # private, but the only way to change it
    cfg = parse(TrainConfig, {
        "model": {"tiny": {"unet_width": width, "vae_width": vae_width or max(width // 2, 8), "text_width": width, "sample_size": size // 8,
                           "heads": max(width // 64, 2) if backbone in ("sd3", "flux") else 2, "layers": layers},
                  "backbone": backbone, "lora_rank": rank, "lora_kernels": variant == "ours"},
        "data": {"generated": 4 * batch, "crop": size, "batch_size": batch},
        # the step docs/performance.md's table measured (same on both sides; the released head and G/D
        # alternation on two batches are orthogonal to the kernels compared here)
        "discriminator": {"backbone": "conv", "head_channels": 32, "head": "multistage"},
        "run": {"output_dir": out, "steps": 1000, "ema": 0.999, "schedule": "same-batch",
                "mixed_precision": mixed_precision},
    })
    trainer = HypirTrainer(cfg, progress=False)
    if variant == "released":
        trainer.degrade_ops = BASICSR_OPS
    return trainer


def batches(trainer: HypirTrainer, n: int) -> list[dict]:
    ds, b = trainer.dataset, trainer.cfg.data.batch_size
    items = [[ds.sample(i % len(ds), 0) for i in range(k * b, (k + 1) * b)] for k in range(n)]
    return [{"gt": torch.stack([it["gt"] for it in group]), "prompt": [it["prompt"] for it in group]} for group in items]


def time_steps(trainers: dict[str, HypirTrainer], repeats: int) -> dict[str, list[float]]:
    """Seconds of ``train_step`` per trainer, the variants interleaved round by round (drift of a
    noisy machine hits both alike); every round repeats step 1 on the same batch, so each round
    draws the same degradation."""
    data = batches(next(iter(trainers.values())), 1)
    for t in trainers.values():
        t.train_step(0, data)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(repeats):
        for name, t in trainers.items():
            t0 = time.perf_counter()
            t.train_step(1, data)
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m hypir.bench.train", description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--rank", type=int, default=256)  # released
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--bf16", action="store_true", help="also time ours with bf16 autocast")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {v: build(v, f"{tmp}/{v}", a.width, a.rank, a.size, a.batch) for v in ("ours", "released")}
        medians = {k: statistics.median(v) for k, v in time_steps(trainers, a.repeats).items()}
        if a.bf16:  # after the fp32 timings: building it switches the process to bf16 autocast
            bf16 = build("ours", f"{tmp}/ours_bf16", a.width, a.rank, a.size, a.batch, "bf16")
            medians["ours_bf16"] = statistics.median(time_steps({"ours_bf16": bf16}, a.repeats)["ours_bf16"])
    print(f"HYPIR train step (G + D), UNet width {a.width}, LoRA rank {a.rank}, batch {a.batch} x {a.size} px, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"ours {medians['ours'] * 1e3:.0f} ms, released (peft + BasicSR ops) {medians['released'] * 1e3:.0f} ms, "
          f"speed-up {medians['released'] / medians['ours']:.2f}x")
    if a.bf16:
        print(f"ours with bf16 autocast {medians['ours_bf16'] * 1e3:.0f} ms: {medians['ours'] / medians['ours_bf16']:.2f}x "
              f"ours fp32, {medians['released'] / medians['ours_bf16']:.2f}x released fp32")


if __name__ == "__main__":
    main()
