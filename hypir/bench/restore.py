"""Restoration benchmark: HYPIR on a 256x256 image x4 (1024x1024 output), ours vs the released-style
path, in one process on the same model and input.

    python -m hypir.bench.restore                           # the CPU table (reduced widths, fp32 and bf16 rows)
    python -m hypir.bench.restore --device cuda --widths sd21 # SD2.1's widths on a GPU (bf16)
    python -m hypir.bench.restore --psnr                    # bf16 vs fp32 outputs, PSNR on photographs
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

On the CPU each case runs in fp32 and in bf16 (``_fp32`` / ``_bf16``; :func:`cpu_cases`), all
against ``released_fp32``; ``released_bf16`` is the release's own path in bf16 (stock diffusers).
"""
from __future__ import annotations

import copy
import math
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


def cases(ours: Restorer, released: Restorer, image: torch.Tensor, suffix: str = "") -> dict:
    """name -> zero-argument callable restoring ``image`` (the benchmark's cases), names + ``suffix``."""
    sync = torch.cuda.synchronize if ours.device.type == "cuda" else (lambda: None)

    def timed(fn):
        def run():
            out = fn()
            sync()
            return out

        return run

    return {
        "released" + suffix: timed(lambda: released(image, upscale=UPSCALE)),
        "ours_same_plan" + suffix: timed(lambda: ours(image, upscale=UPSCALE, tile=RELEASED_TILE, stride=RELEASED_STRIDE)),
        "ours_auto" + suffix: timed(lambda: ours(image, upscale=UPSCALE)),
    }


def cpu_cases(image: torch.Tensor, dtypes=("fp32", "bf16"), widths: dict | None = None, rank: int = 256) -> tuple[dict, dict]:
    """The CPU table's cases for each run dtype on the same weights (``released_bf16`` is the release's
    path in bf16, stock diffusers), and the restorers by dtype: ``(cases, {dtype: (ours, released)})``."""
    runs, restorers = {}, {}
    for dtype in dtypes:
        restorers[dtype] = make_restorers("cpu", dtype, rank=rank, widths=widths)
        runs |= cases(*restorers[dtype], image, suffix=f"_{dtype}")
    return runs, restorers


def photos(size: int = SIZE) -> dict[str, torch.Tensor]:
    """Centre crops of scikit-image's bundled photographs (``pip install -e ".[experiments]"``),
    ``[1, 3, size, size]`` in [0, 1]."""
    import skimage.data

    out = {}
    for name in ("astronaut", "coffee", "chelsea"):
        img = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float()[None] / 255
        h, w = img.shape[-2:]
        side = min(h, w)
        img = img[..., (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        out[name] = torch.nn.functional.interpolate(img, size=(size, size), mode="area")
    return out


def dtype_psnr(widths: dict | None = None) -> dict[str, dict[str, float]]:
    """PSNR (dB) of each path's bf16 output against its fp32 output on the same weights, per photo."""
    (ours32, rel32), (ours16, rel16) = make_restorers("cpu", "fp32", widths=widths), make_restorers("cpu", "bf16", widths=widths)
    result = {}
    for name, image in photos().items():
        row = {}
        for path, a, b in (("ours_auto", ours32, ours16), ("released", rel32, rel16)):
            mse = float(((a(image, upscale=UPSCALE) - b(image, upscale=UPSCALE)) ** 2).mean())
            row[path] = 10 * math.log10(1 / mse) if mse > 0 else float("inf")
        result[name] = row
    return result


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hypir.bench.restore", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--widths", default="reduced", choices=("reduced", "sd21"),
                        help="reduced (BENCH_WIDTHS, the CPU table) or sd21 (SD2.1's real widths)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--psnr", action="store_true",
                        help="instead of timing: PSNR of bf16 against fp32 outputs on three bundled photographs")
    args = parser.parse_args(argv)
    if args.psnr:
        widths = BENCH_WIDTHS if args.widths == "reduced" else SD21_WIDTHS
        for name, row in dtype_psnr(widths).items():
            print(f"  {name:10s} " + "  ".join(f"{k} {v:6.2f} dB" for k, v in row.items()))
        return
    torch.manual_seed(0)
    widths = BENCH_WIDTHS if args.widths == "reduced" else SD21_WIDTHS
    image = make_image()
    if args.device == "cpu" and args.dtype == "auto":  # the CPU table: fp32 and bf16 rows, one anchor
        runs, restorers = cpu_cases(image, widths=widths)
        anchor = "released_fp32"
    else:
        restorers = {args.dtype: make_restorers(args.device, args.dtype, widths=widths)}
        image = image.to(restorers[args.dtype][0].device)
        runs, anchor = cases(*restorers[args.dtype], image), "released"
    times = {}
    for name, fn in runs.items():
        fn()  # warm-up (and the memory probes of the auto plan)
        ts = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        times[name] = statistics.median(ts)
    print(f"HYPIR restore {SIZE}px x{UPSCALE}, {args.widths} widths, {args.device}, median of {args.repeats}:")
    for name, t in times.items():
        print(f"  {name:20s} {t * 1e3:9.1f} ms   {times[anchor] / t:5.2f}x vs {anchor}")
    print("  per pass, one more run each (s):")
    for dtype, (ours, released) in restorers.items():
        tag = "" if anchor == "released" else f"_{dtype}"
        for name, call in (("released", lambda: released(image, upscale=UPSCALE)),
                           ("ours_same_plan", lambda: ours(image, upscale=UPSCALE, tile=RELEASED_TILE, stride=RELEASED_STRIDE)),
                           ("ours_auto", lambda: ours(image, upscale=UPSCALE))):
            call()
            r = released if name == "released" else ours
            print(f"  {name + tag:20s} " + "  ".join(f"{k} {v:6.2f}" for k, v in r.last.seconds.items()))


if __name__ == "__main__":
    main()
