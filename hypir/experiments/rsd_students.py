"""RSD's headline in miniature (issue 14; docs/experiments.md "RSD students in miniature"): the teachers of
``hypir.experiments.rsd_teachers`` (trained only on corrupted digits) distilled into one-step
students through their corruption; does the student beat its teacher?

    pip install scikit-learn matplotlib
    python -m hypir.experiments.rsd_teachers --out runs/rsd-teachers      # first: teachers + features
    python -m hypir.experiments.rsd_students --teachers runs/rsd-teachers --out runs/rsd-students

For each task (``student-<task>/``, skipped when its ``student.safetensors`` exists, resumed from its
checkpoints otherwise): ``hypir rsd distill`` from ``teacher-<task>``, selecting by proximal FID every
``--eval-every`` steps (1000 one-step samples, corrupted like the data, against the corrupted data),
and at the same steps -- outside the algorithm, which never sees a clean image -- the true FID
against clean held-out digits (the paper's Table 6 in miniature). FIDs use our digit feature network
(not Inception; comparable only among themselves). Then ``results.json``, ``results.md``,
``curves.png`` (both FIDs along training) and ``grid.png`` (rows per task: teacher samples, student
samples; other ``--tasks`` than the default write ``curves-<tasks>.png``, ``grid-<tasks>.png``), and the time to draw 1000 samples with the teacher's sampler vs the student's one step.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def student_config(task: str, teachers: Path, out: Path, args):
    from ..config import parse
    from ..rsd.config import DistillConfig

    return parse(DistillConfig, {
        "teacher": str(teachers / f"teacher-{task}" / "teacher.safetensors"),
        "data": {"source": "digits", "size": args.size},
        "optim": {"lr": args.lr, "fake_lr": args.lr, "batch_size": args.batch},
        "select": {"features": str(teachers / "features.safetensors"), "every": args.eval_every,
                   "samples": args.samples},
        "run": {"output_dir": str(out / f"student-{task}"), "steps": args.steps, "seed": args.seed, "ema": args.ema,
                "log_every": 10, "checkpoint_every": args.eval_every, "keep_last": 1},
    })


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m hypir.experiments.rsd_students", description=__doc__.split("\n\n")[0])
    ap.add_argument("--teachers", default="runs/rsd-teachers")
    ap.add_argument("--out", default="runs/rsd-students")
    ap.add_argument("--tasks", nargs="+", default=["blur", "inpainting"],
                    help="teachers to distil (teacher-<task>/ under --teachers), e.g. blur-noisy")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--ema", type=float, default=0.99)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    teachers, out = Path(args.teachers), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    from ..metrics.features import fid_score, load_features
    from ..rsd.data import digits
    from ..rsd.distill import Distiller, load_student, one_step_sample
    from ..rsd.evaluate import data_view, fid_view, proximal_fid
    from ..rsd.pretrain import observations
    from ..rsd.teacher import load_teacher, sample

    features = load_features(teachers / "features.safetensors")
    held = digits(args.size, "heldout")[0]
    results = {}
    rows = []
    for task in args.tasks:
        cfg = student_config(task, teachers, out, args)
        run = out / f"student-{task}"
        curve_path = run / "curve.jsonl"
        if not (run / "student.safetensors").is_file():
            def on_eval(step, x, prox, curve_path=curve_path):
                true = fid_score(features, fid_view(x), held)
                with open(curve_path, "a") as f:
                    f.write(json.dumps({"step": step, "proximal_fid": prox, "fid": true}) + "\n")
                _log(f"{task} step {step}: proximal FID {prox:.2f}, FID vs clean held-out {true:.2f}")

            run.mkdir(parents=True, exist_ok=True)
            d = Distiller(cfg, on_eval=on_eval)
            if d.step == 0 and not any((run / "checkpoints").glob("step-*")) and not curve_path.is_file():
                # the untrained generator (the teacher's one-step denoiser) as step 0
                on_eval(0, d.samples(args.samples, seed=12345), float("nan"))
            d.train(resume="auto")
        curve = [json.loads(line) for line in curve_path.read_text().splitlines()]
        # one record per step (a resumed run may repeat its last evaluation)
        curve = list({r["step"]: r for r in curve}.values())
        scored = [r for r in curve if r["step"] > 0]
        chosen = min(scored, key=lambda r: r["proximal_fid"])
        best_true = min(scored, key=lambda r: r["fid"])
        student, meta = load_student(run / "student-best.safetensors")
        # the teacher's samples as hypir.experiments.rsd_teachers drew them (seed 7): the same teacher FID
        shape = (args.samples, meta["image_channels"], args.size, args.size)
        x, one_step_s = _timed(lambda: one_step_sample(student, shape, seed=7))
        teacher, tmeta = load_teacher(cfg.teacher)
        xt, teacher_s = _timed(lambda: sample(teacher, tmeta["task"], shape, seed=args.seed + 7))
        data = observations(cfg.data, tmeta["task"])
        r = {"teacher_fid": fid_score(features, fid_view(xt), held), "teacher_proximal_fid": proximal_fid(features, xt, data, tmeta["task"]),
             "data_fid": fid_score(features, data_view(data), held), "student_proximal_fid": proximal_fid(features, x, data, meta["task"]),
             "student_fid": fid_score(features, fid_view(x), held),
             "step0_fid": curve[0]["fid"] if curve[0]["step"] == 0 else None,
             "selected_step": chosen["step"], "selected_proximal_fid": chosen["proximal_fid"],
             "selected_fid": chosen["fid"], "best_fid": best_true["fid"], "best_fid_step": best_true["step"],
             "final_fid": scored[-1]["fid"], "one_step_seconds": one_step_s, "teacher_sampler_seconds": teacher_s,
             "samples": args.samples, "steps": args.steps, "lr": args.lr, "batch": args.batch}
        results[task] = r
        rows += [fid_view(xt)[:16], fid_view(x)[:16]]
        _log(f"{task}: {r}")
    # merged with what other invocations (other tasks) wrote meanwhile
    previous = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    results = {**previous, **results}
    (out / "results.json").write_text(json.dumps(results, indent=1))

    from ..data.io import image_grid, write_image

    suffix = "" if args.tasks == ["blur", "inpainting"] else "-" + "-".join(args.tasks)
    write_image(out / f"grid{suffix}.png", torch.nn.functional.interpolate(image_grid(torch.cat(rows), columns=16)[None],
                                                                   scale_factor=2, mode="nearest")[0])
    _plot(out, args.tasks, f"curves{suffix}.png")
    lines = ["| task | FID of the corrupted data | teacher FID | student FID (selected by proximal FID, step) | "
             "best student FID (step) | student FID at step 0 | 1000 samples: teacher / student |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for task in results:
        r = results[task]
        lines.append(f"| {task} | {r['data_fid']:.1f} | {r['teacher_fid']:.1f} | {r['selected_fid']:.1f} ({r['selected_step']}) | "
                     f"{r['best_fid']:.1f} ({r['best_fid_step']}) | {r['step0_fid'] or float('nan'):.1f} | "
                     f"{r['teacher_sampler_seconds']:.1f} s / {r['one_step_seconds']:.2f} s |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _log(f"total {time.perf_counter() - t0:.0f} s")


def _plot(out: Path, tasks, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    results = json.loads((out / "results.json").read_text())
    for ax, task in zip(axes[0], tasks):
        curve = [json.loads(line) for line in (out / f"student-{task}" / "curve.jsonl").read_text().splitlines()]
        curve = [r for r in {r["step"]: r for r in curve}.values() if r["step"] > 0]
        steps = [r["step"] for r in curve]
        ax.plot(steps, [r["fid"] for r in curve], label="student FID vs clean held-out")
        ax.plot(steps, [r["proximal_fid"] for r in curve], label="student proximal FID (selection)")
        ax.axhline(results[task]["teacher_fid"], color="k", ls="--", lw=1, label="teacher FID")
        ax.axvline(results[task]["selected_step"], color="gray", ls=":", lw=1, label="selected step")
        ax.set_title(f"{task}")
        ax.set_xlabel("distillation step")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / name, dpi=120)


if __name__ == "__main__":
    main()
