"""``hypir`` command line (also ``python -m hypir``).

    hypir restore INPUT... -o OUTDIR --base-model DIR --weights FILE [--encoder FILE] [--upscale 4]
        [--tile auto|PX]
        [--stride PX] [--max-memory GB] [--prompt TEXT | --prompt-dir DIR] [--noise 0.0]
        [--texture auto|FLOAT] [--seed 0] [--device auto|cpu|cuda] [--dtype auto|fp32|bf16|fp16]
        [--no-merge]
    hypir train --config FILE [--resume auto|DIR] [--set KEY=VALUE ...] [--quiet]
    hypir rsd pretrain --config FILE [--resume auto|DIR] [--set KEY=VALUE ...] [--quiet]
    hypir rsd distill --config FILE [--resume auto|DIR] [--set KEY=VALUE ...] [--quiet]
    hypir rsd sample --checkpoint FILE -o GRID.png [--n 64] [--steps 18] [--seed 0] [--device auto]

Files or folders in (PNG, JPEG, WebP, TIFF, BMP; grayscale, RGBA, 16-bit, EXIF-rotated), one PNG
per input out with the same stem. An image that cannot be read or restored is reported and
skipped; the exit status is 1 if any failed, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def _tile(value: str):
    if value == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number of pixels, got {value!r}") from None


def _texture(value: str):
    if value == "auto":
        return "auto"
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number >= 0, got {value!r}")
    return v


def _positive(kind):
    def parse(value: str):
        try:
            v = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}") from None
        if not (v > 0 and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
        return v

    return parse


def _non_negative_float(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value!r}")
    return v


def _seed(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        v = -1
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63), got {value!r}")
    return v


def _add_training_args(p: argparse.ArgumentParser) -> None:
    """The arguments every training command takes."""
    p.add_argument("--config", required=True, metavar="FILE", help="YAML config")
    p.add_argument("--resume", default=None, metavar="auto|DIR",
                   help="continue from a checkpoint directory, or 'auto': the latest under <output_dir>/checkpoints")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a config value, e.g. --set run.steps=100 (YAML value syntax; repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hypir", description="HYPIR one-step diffusion-prior image restoration.")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("restore", help="restore images with a HYPIR checkpoint",
                       description="Restore images with a HYPIR checkpoint on its base model "
                                   "(SD2.x, SDXL, SD3/SD3.5 or Flux.1, a local diffusers directory).")
    r.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    r.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the restored PNGs")
    r.add_argument("--base-model", required=True, metavar="DIR", help="local diffusers base directory (SD2.x, SDXL, SD3/SD3.5, Flux.1)")
    r.add_argument("--weights", required=True, metavar="FILE", help="HYPIR checkpoint (.safetensors or .pth)")
    r.add_argument("--encoder", default=None, metavar="FILE",
                   help="degradation pre-removal encoder from a stage-1 `hypir train` run (stage=encoder)")
    r.add_argument("--upscale", type=_positive(float), default=4.0, help="output size / input size (default 4)")
    r.add_argument("--preset", default="default", choices=("default", "released"),
                   help="pre/post-processing: 'default' (ours) or 'released' (as the official HYPIR code; "
                        "also its defaults: posterior sample, LoRA unmerged, 512/256 px tiles one at a time)")
    r.add_argument("--tile", type=_tile, default=None,
                   help="'auto' (largest tiles within --max-memory) or a tile size in pixels "
                        "(default: the preset's, auto / released: 512)")
    r.add_argument("--stride", type=_positive(int), default=None, help="tile step in pixels (default: tile/2 for a fixed tile)")
    r.add_argument("--max-memory", type=_positive(float), default=None, metavar="GB",
                   help="memory a pass may use, GiB (default 80%% of free device memory or RAM)")
    r.add_argument("--batch-tiles", type=_positive(int), default=None, help="tiles per call (default: by memory on CUDA, 1 on CPU)")
    prompts = r.add_mutually_exclusive_group()
    prompts.add_argument("--prompt", default=None, help="text prompt for every image")
    prompts.add_argument("--prompt-dir", default=None, metavar="DIR", help="folder of <stem>.txt prompts, one per image")
    r.add_argument("--noise", type=_non_negative_float, default=0.0, help="generativity-fidelity: latent noise strength (default 0)")
    r.add_argument("--texture", type=_texture, default="auto", help="texture richness: 'auto' (from the input) or a number")
    r.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    r.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    r.add_argument("--no-merge", action="store_true", help="keep the LoRA adapters instead of merging them")
    r.add_argument("--offload-text", action="store_true",
                   help="keep the text encoders on the CPU (large T5s of SD3/Flux on a small GPU)")
    r.add_argument("--offload-vae", action="store_true",
                   help="keep the VAE on the CPU except during its encode and decode passes")
    r.add_argument("--guidance", type=_positive(float), default=3.5,
                   help="Flux.1 [dev]'s guidance embedding value (default 3.5; other backbones ignore it)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")

    t = sub.add_parser("train", help="train a HYPIR model (adversarial LoRA fine-tuning)",
                       description="Train HYPIR from a YAML config (configs/hypir-sd21.yaml lists every key). "
                                   "Several processes or GPUs: accelerate launch -m hypir train --config FILE.")
    _add_training_args(t)

    rsd = sub.add_parser("rsd", help="RSD: corruption-aware teachers, one-step distillation, sampling",
                         description="Restoration Score Distillation (phase I: teachers trained on corrupted data; "
                                     "phase II: their one-step students).")
    rsd_sub = rsd.add_subparsers(dest="rsd_command", required=True)
    p = rsd_sub.add_parser("pretrain", help="pretrain a teacher on corrupted data",
                           description="Pretrain an RSD teacher from a YAML config (configs/rsd-*.yaml). Several "
                                       "processes: accelerate launch -m hypir rsd pretrain --config FILE.")
    _add_training_args(p)
    d = rsd_sub.add_parser("distill", help="distil a teacher into a one-step generator",
                           description="Distil an RSD teacher into a one-step generator through its corruption "
                                       "(configs/rsd-distill-*.yaml). Several processes: accelerate launch -m hypir "
                                       "rsd distill --config FILE.")
    _add_training_args(d)
    s = rsd_sub.add_parser("sample", help="sample a grid from a teacher or a one-step student",
                           description="Sample from an RSD teacher (Heun, or truncated Ambient Tweedie for noisy data) "
                                       "or from a distilled student (one network call).")
    s.add_argument("--checkpoint", required=True, metavar="FILE",
                   help="teacher.safetensors (hypir rsd pretrain) or student.safetensors (hypir rsd distill)")
    s.add_argument("--n", type=_positive(int), default=64, help="number of samples (default 64)")
    s.add_argument("-o", "--output", required=True, metavar="PNG", help="grid image to write")
    s.add_argument("--steps", type=_positive(int), default=18, help="teacher sampler noise levels (default 18)")
    s.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--save-tensor", default=None, metavar="PT", help="also save the samples [N, C, S, S] in [-1, 1]")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _prompt_for(path: Path, args) -> str:
    if args.prompt is not None:
        return args.prompt
    if args.prompt_dir is None:
        return ""
    sidecar = Path(args.prompt_dir) / f"{path.stem}.txt"
    if not sidecar.is_file():
        print(f"hypir: {path}: no prompt file {sidecar}; using the empty prompt", file=sys.stderr)
        return ""
    return sidecar.read_text(encoding="utf-8").strip()


def restore_main(args) -> int:
    from tqdm.auto import tqdm

    from .data.io import list_inputs, read_image, write_image
    from .pipelines.restorer import Restorer

    files = list_inputs(args.inputs)  # a missing name: FileNotFoundError, one line from main()
    if not files:
        print("hypir: no input images found", file=sys.stderr)
        return 2
    if args.prompt_dir is not None and not Path(args.prompt_dir).is_dir():
        print(f"hypir: --prompt-dir: no such folder {args.prompt_dir!r}", file=sys.stderr)
        return 2
    _quiet_libraries()
    restorer = Restorer.from_pretrained(args.base_model, args.weights, encoder=args.encoder, device=args.device,
                                        dtype=args.dtype, merge=False if args.no_merge else None, preset=args.preset,
                                        offload_text=args.offload_text, offload_vae=args.offload_vae,
                                        guidance=args.guidance)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    max_memory = None if args.max_memory is None else args.max_memory * 2**30
    failed, written = [], {}
    for path in tqdm(files, desc="images", unit="img", disable=args.quiet):
        target = out_dir / f"{path.stem}.png"
        if target in written:
            failed.append((path, f"output {target} would overwrite the result of {written[target]}"))
            continue
        try:
            rgb, meta = read_image(path)
            out = restorer(rgb, upscale=args.upscale, prompt=_prompt_for(path, args), noise=args.noise,
                           texture=args.texture, seed=args.seed, tile=args.tile, stride=args.stride,
                           max_memory=max_memory, batch_tiles=args.batch_tiles, progress=not args.quiet)
            write_image(target, out, meta, quantize=restorer.preset.quantize)
            written[target] = path
        except (ValueError, RuntimeError, OSError, MemoryError) as e:  # RuntimeError: e.g. CUDA out of memory
            failed.append((path, str(e).splitlines()[0] if str(e) else type(e).__name__))
    for path, why in failed:
        print(f"hypir: failed {path}: {why.removeprefix(f'{path}: ')}", file=sys.stderr)
    print(f"hypir: restored {len(written)} of {len(files)} images into {out_dir}", file=sys.stderr)
    return 1 if failed else 0


def _quiet_libraries() -> None:
    """diffusers/transformers info and dtype-cast notices are noise on a command line."""
    try:
        from diffusers.utils import logging as dlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()  # "Loading weights" bars of the base model's parts
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except ImportError:
        pass


def _overrides(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _train_command(args, load_config, make_trainer, report) -> int:
    """Load and validate a config, train (resuming if asked), print ``report(config, trainer, exported)``.
    A bad config or file raises (one line and exit 2 from :func:`main`); a signal raises
    :class:`hypir.train.interrupt.Interrupted` after the checkpoint is written."""
    config = load_config(args.config, _overrides(args.overrides))
    _quiet_libraries()
    trainer = make_trainer(config, progress=not args.quiet)
    exported = trainer.train(resume=args.resume)
    if trainer.acc.is_main_process:
        print(f"hypir: {report(config, trainer, exported)}", file=sys.stderr)
    return 0


def train_main(args) -> int:
    from .train import HypirTrainer, load_config

    def report(config, trainer, exported):
        use = (f"`--set model.encoder={exported}` in stage 2, `hypir restore --encoder {exported}`"
               if config.stage == "encoder" else f"`hypir restore --weights {exported}`")
        return f"trained {trainer.step} steps; wrote {exported} (use: {use} with --base-model {trainer.base_model_dir})"

    return _train_command(args, load_config, HypirTrainer, report)


def rsd_pretrain_main(args) -> int:
    from .rsd.config import load_pretrain_config
    from .rsd.pretrain import Pretrainer

    def report(config, trainer, exported):
        return (f"trained {trainer.step} steps on {config.task.kind} observations; wrote {exported} "
                f"(hypir rsd sample --checkpoint {exported} -o grid.png)")

    return _train_command(args, load_pretrain_config, Pretrainer, report)


def rsd_distill_main(args) -> int:
    from .rsd.config import load_distill_config
    from .rsd.distill import Distiller

    def report(config, trainer, exported):
        best = (f"; best proximal FID {trainer.best['proximal_fid']:.2f} at step {trainer.best['step']} in "
                f"{trainer.out / config.select.best}" if trainer.best["step"] >= 0 else "")
        return (f"distilled {trainer.step} steps from the {trainer.task.kind} teacher; wrote {exported}{best} "
                f"(hypir rsd sample --checkpoint {exported} -o grid.png)")

    return _train_command(args, load_distill_config, Distiller, report)


def rsd_sample_main(args) -> int:
    import torch

    from .data.io import image_grid, write_image
    from .files import atomic_write
    from .pipelines.devices import resolve_device
    from .rsd.distill import is_student, load_student, one_step_sample
    from .rsd.teacher import displayable, load_teacher, sample

    device = resolve_device(args.device)
    student = is_student(args.checkpoint)
    model, meta = (load_student if student else load_teacher)(args.checkpoint)
    model.to(device)
    shape = (args.n, meta["image_channels"], meta["size"], meta["size"])
    if student:
        x = one_step_sample(model, shape, seed=args.seed, device=device)
    else:
        x = sample(model, meta["task"], shape, seed=args.seed, steps=args.steps, device=device, progress=not args.quiet)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_image(out, image_grid(displayable(x)))
    if args.save_tensor:
        with atomic_write(args.save_tensor) as tmp:
            torch.save(x.cpu(), tmp)
    what = "one-step student" if student else "teacher"
    noise = f" (data noise sigma_n {meta['task'].sigma_n:g})" if meta["task"].sigma_n > 0 else ""
    print(f"hypir: {args.n} samples of the {meta['task'].kind} {what}{noise} in {out}", file=sys.stderr)
    return 0


def _dispatch(args) -> int:
    if args.command == "restore":
        return restore_main(args)
    if args.command == "train":
        return train_main(args)
    if args.command == "rsd":
        run = {"pretrain": rsd_pretrain_main, "distill": rsd_distill_main, "sample": rsd_sample_main}
        return run[args.rsd_command](args)
    return 2  # pragma: no cover (argparse rejects unknown commands)


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done; 1 some images failed (restore); 2 a bad argument, config or file (one
    line on stderr naming it, no traceback); 130 / 143 stopped by SIGINT / SIGTERM (training:
    after writing a checkpoint)."""
    from .train.interrupt import Interrupted

    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except Interrupted as e:
        print(f"hypir: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("hypir: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:  # a bad file, config or value (FileFormatError is a ValueError)
        print(f"hypir: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
