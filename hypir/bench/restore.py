"""Restoration benchmark: HYPIR on a 256x256 image x4 (1024x1024 output), ours vs the released-style
path, in one process on the same model and input.

    python -m hypir.bench.restore                           # the CPU table (reduced widths, fp32)
    python -m hypir.bench.restore --device cuda --widths sd21 # SD2.1's widths on a GPU (bf16)
    pytest benchmarks/test_restore.py --benchmark-only

The model is SD2.1-base's architecture at reduced width (:data:`BENCH_WIDTHS`: UNet blocks
64/128/256/256 with 64-wide heads, VAE blocks 32/64/128/128, 2-layer CLIP text encoder of width
64, native size 512 px) with the released LoRA (rank 256, alpha 256, the 13 targets; random
non-zero weights). Cases:

* ``released``: :class:`hypir.Restorer` with ``preset="released"`` -- the official enhancer's
  inference as released (held to it in ``tests/hypir/test_pipelines_released.py``): peft LoRA
  unmerged, the 512/256 px encoder and 64/32 latent UNet/decoder tile plan, tiles one at a time,
  torch's default memory layout, posterior sample. Its tiles are blended by our kernel rather than
  the release's Python accumulate-with-count loop, which only makes the anchor faster.
* ``ours_same_plan``: :class:`hypir.Restorer` (merged LoRA, batched tiles, the blend kernel) with
  the same tile plan.
* ``ours_auto``: :class:`hypir.Restorer` with ``tile="auto"`` (one tile per pass when it fits).
"""
from __future__ import annotations

import copy
import statistics
import tempfile
import time

import torch

from ..models.lora import LoraSpec
from ..pipelines.presets import RELEASED_STRIDE, RELEASED_TILE
from ..pipelines.restorer import Restorer
from ..testing import tiny_components, trained_like_unet

BENCH_WIDTHS = dict(unet_width=64, vae_width=32, text_width=64, heads=1, sample_size=64)
# SD2.1-base's UNet and VAE widths (the text encoder stays 2 layers deep: it runs once per prompt).
SD21_WIDTHS = dict(unet_width=320, vae_width=128, text_width=1024, heads=5, sample_size=64)
SIZE, UPSCALE = 256, 4


def make_restorers(device: str = "cpu", dtype: str = "auto", rank: int = 256, widths: dict | None = None,
                   seed: int = 0) -> tuple[Restorer, Restorer]:
    """(ours: the default preset, merged LoRA; the anchor: ``preset="released"`` on the same weights,
    adapters kept)."""
    with tempfile.TemporaryDirectory() as tmp:
        components = trained_like_unet(tiny_components(tmp, seed=seed, **(widths or BENCH_WIDTHS)), LoraSpec(rank=rank),
                                       seed=seed)
    unmerged = copy.deepcopy(components)
    return (Restorer(components, device=device, dtype=dtype),
            Restorer(unmerged, device=device, dtype=dtype, preset="released"))


def make_image(size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """A smooth random image with some texture, ``[1, 3, size, size]`` in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, size // 16, size // 16, generator=g), size=(size, size),
                                           mode="bicubic", align_corners=False)
    return (base + 0.1 * torch.rand(1, 3, size, size, generator=g)).clamp(0, 1)


def cases(ours: Restorer, released: Restorer, image: torch.Tensor) -> dict:
    """name -> zero-argument callable restoring ``image`` (the benchmark's cases)."""
    sync = torch.cuda.synchronize if ours.device.type == "cuda" else (lambda: None)

    def timed(fn):
        def run():
            out = fn()
            sync()
            return out

        return run

    return {
        "released": timed(lambda: released(image, upscale=UPSCALE)),
        "ours_same_plan": timed(lambda: ours(image, upscale=UPSCALE, tile=RELEASED_TILE, stride=RELEASED_STRIDE)),
        "ours_auto": timed(lambda: ours(image, upscale=UPSCALE)),
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hypir.bench.restore", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--widths", default="reduced", choices=("reduced", "sd21"),
                        help="reduced (BENCH_WIDTHS, the CPU table) or sd21 (SD2.1's real widths)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    widths = BENCH_WIDTHS if args.widths == "reduced" else SD21_WIDTHS
    ours, released = make_restorers(args.device, args.dtype, widths=widths)
    image = make_image().to(ours.device)
    times = {}
    for name, fn in cases(ours, released, image).items():
        fn()  # warm-up (and the memory probes of the auto plan)
        ts = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        times[name] = statistics.median(ts)
    print(f"HYPIR restore {SIZE}px x{UPSCALE}, {args.widths} widths, {ours.device} {ours.dtype}, median of {args.repeats}:")
    for name, t in times.items():
        print(f"  {name:16s} {t * 1e3:9.1f} ms   {times['released'] / t:5.2f}x vs released")
    passes = {}
    released(image, upscale=UPSCALE)
    passes["released"] = released.last.seconds
    ours(image, upscale=UPSCALE, tile=RELEASED_TILE, stride=RELEASED_STRIDE)
    passes["ours_same_plan"] = ours.last.seconds
    ours(image, upscale=UPSCALE)
    passes["ours_auto"] = ours.last.seconds
    print("  per pass, one more run each (s):")
    for name, sec in passes.items():
        print(f"  {name:16s} " + "  ".join(f"{k} {v:6.2f}" for k, v in sec.items()))
    print("  auto plan:", {k: v.describe() for k, v in ours.last.plans.items()})


if __name__ == "__main__":
    main()
