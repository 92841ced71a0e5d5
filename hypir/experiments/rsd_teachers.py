"""RSD phase I in miniature (issue 13; docs/experiments.md "RSD teachers in miniature"): teachers trained only on
corrupted digits (blur; 90 %-missing inpainting), a reference teacher trained on the clean digits,
and FIDs of their samples against clean held-out digits with a feature network trained here.

    pip install scikit-learn matplotlib
    python -m hypir.experiments.rsd_teachers --out runs/rsd-teachers
    python -m hypir.experiments.rsd_teachers --out runs/rsd-teachers --tasks blur-noisy inpainting-noisy mri

Stages (each skipped when its output exists): ``features.safetensors`` (the digit classifier whose
128-d features FID uses; its held-out accuracy is reported), one ``hypir rsd pretrain`` run per
teacher (``teacher-<task>/``), then ``results.json``, ``results.md`` and ``grid.png`` (rows: the
corrupted training data, then each teacher's samples).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

TEACHERS = ("clean", "blur", "inpainting")
NOISE = 0.2  # "<task>-noisy": the task with measurement noise sigma_n = 0.2 (the paper's noisy setting)


def task_of(name: str) -> dict:
    """``blur`` -> the blur task; ``blur-noisy`` -> the blur task with ``sigma_n = 0.2``; ``mri`` ->
    4-coil MRI at R = 4 with 2 of the 16 columns as the fully sampled centre."""
    kind, _, noisy = name.partition("-")
    return {"kind": kind, "sigma_n": NOISE if noisy == "noisy" else 0.0,
            **({"center_fraction": 0.125} if kind == "mri" else {})}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def teacher_config(task: str, out: Path, args):
    from ..config import parse
    from ..rsd.config import PretrainConfig

    return parse(PretrainConfig, {
        "net": {"channels": [32, 64, 64], "layers_per_block": 2, "attention": True},
        "data": {"source": "digits", "size": args.size},
        "task": task_of(task),
        "optim": {"lr": args.lr, "batch_size": args.batch, "warmup": 100},
        "run": {"output_dir": str(out / f"teacher-{task}"), "steps": args.steps, "seed": args.seed, "ema": 0.999,
                "log_every": 25, "sample_every": 0, "checkpoint_every": 500, "keep_last": 1},
    })


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m hypir.experiments.rsd_teachers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/rsd-teachers")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--tasks", nargs="+", default=list(TEACHERS),
                    help="teachers to train: clean, blur, inpainting, mri, and <task>-noisy for sigma_n = 0.2")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    from ..metrics.features import fid_score, load_features, save_features, train_digit_features
    from ..rsd.data import digits
    from ..rsd.evaluate import data_view, fid_view, proximal_fid
    from ..rsd.pretrain import Pretrainer, observations
    from ..rsd.teacher import load_teacher, sample

    fpath = out / "features.safetensors"
    if not fpath.is_file():
        net, acc = train_digit_features(size=args.size, steps=1500, seed=args.seed)
        save_features(net, fpath, accuracy=acc, size=args.size)
    features = load_features(fpath)
    _log(f"feature network: held-out accuracy {features.info['accuracy']:.4f}")

    held = digits(args.size, "heldout")[0]
    train = digits(args.size, "train")[0]
    previous = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    results = {**previous, "feature_accuracy": features.info["accuracy"], "reference": {
        "train_vs_heldout": fid_score(features, train, held)}}
    rows = []
    for task in args.tasks:
        cfg = teacher_config(task, out, args)
        path = out / f"teacher-{task}" / "teacher.safetensors"
        if not path.is_file():
            Pretrainer(cfg).train(resume="auto")
        _log(f"teacher {task} ready ({time.perf_counter() - t0:.0f} s)")
        model, meta = load_teacher(path)
        t = time.perf_counter()
        x = sample(model, meta["task"], (args.samples, meta["image_channels"], args.size, args.size), seed=args.seed + 7,
                   progress=True)
        seconds = time.perf_counter() - t
        data = observations(cfg.data, cfg.task)
        r = {"fid_vs_clean_heldout": fid_score(features, fid_view(x), held), "sample_seconds": seconds,
             "steps": args.steps}
        if task != "clean":
            r["proximal_fid"] = proximal_fid(features, x, data, cfg.task)
            r["data_fid_vs_clean_heldout"] = fid_score(features, data_view(data), held)  # the corrupted data itself
            rows.append(data_view(data)[:16])
        results[task] = r
        rows.append(fid_view(x)[:16])
        _log(f"{task}: {r}")
    (out / "results.json").write_text(json.dumps(results, indent=1))

    from ..data.io import image_grid, write_image

    write_image(out / ("grid.png" if args.tasks == list(TEACHERS) else f"grid-{'-'.join(args.tasks)}.png"), torch.nn.functional.interpolate(image_grid(torch.cat(rows), columns=16)[None],
                                                                   scale_factor=2, mode="nearest")[0])
    lines = [f"Feature network (FID features): held-out digit accuracy {results['feature_accuracy']:.3f}", "",
             "| model | FID vs clean held-out digits | proximal FID | FID of its training data |", "|---|---:|---:|---:|",
             f"| clean training digits themselves | {results['reference']['train_vs_heldout']:.2f} | | |"]
    for task in [t for t in results if t not in ("feature_accuracy", "reference")]:
        r = results[task]
        lines.append(f"| teacher trained on {task} digits | {r['fid_vs_clean_heldout']:.2f} | "
                     f"{r.get('proximal_fid', float('nan')):.2f} | {r.get('data_fid_vs_clean_heldout', float('nan')):.2f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _log(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
