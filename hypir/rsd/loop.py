"""What a phase-I run (:class:`hypir.rsd.pretrain.Pretrainer`) and a phase-II run
(:class:`hypir.rsd.distill.Distiller`) share: the training loop -- progress bar, JSONL log, sample
grids, checkpoints, the final export -- and the EMA context.

A subclass provides ``cfg`` (with ``run`` and ``optim.batch_size``), ``acc``, ``out``, ``progress``,
``ema``, ``step``, ``desc`` (the bar's label), ``shown`` (the log key on the bar), and the methods
``train_step(step) -> logs``, ``samples(n)``, ``save()``, ``load(path)``, ``export()``; it may
override :meth:`after_step` (the distiller evaluates there).
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from ..train import checkpoint
from ..train.interrupt import Interrupted, stop_on_signals
from .teacher import displayable


class RunLoop:
    shown = "loss"

    def after_step(self, logs: dict) -> None:
        """Called after each step with its logs (may add to them before they are written)."""

    def train(self, resume: str | None = None, on_step=None) -> Path:
        """Run to ``run.steps`` (resuming from ``resume``: a checkpoint directory or "auto"), save the
        last checkpoint and export; returns the export's path."""
        from tqdm.auto import tqdm

        if resume is not None:
            path = checkpoint.resolve(resume, self.out / "checkpoints")
            if path is not None:
                self.load(path)
            if self.acc.is_main_process:
                checkpoint.trim_log(self.out / "log.jsonl", self.step)
        cfg, acc = self.cfg, self.acc
        bar = tqdm(total=cfg.run.steps, initial=self.step, desc=self.desc, unit="step",
                   disable=not (self.progress and acc.is_main_process))
        start, done = time.perf_counter(), 0
        with stop_on_signals() as stop:
            while self.step < cfg.run.steps:
                logs = self.train_step(self.step)
                self.step += 1
                done += 1
                self.after_step(logs)
                bar.update(1)
                bar.set_postfix({self.shown: f"{logs[self.shown]:.4f}"},
                                img_s=f"{done * cfg.optim.batch_size * acc.num_processes / (time.perf_counter() - start):.1f}")
                if acc.is_main_process and (self.step % max(cfg.run.log_every, 1) == 0 or self.step == cfg.run.steps
                                            or "proximal_fid" in logs):
                    with open(self.out / "log.jsonl", "a") as f:
                        f.write(json.dumps({"step": self.step, **logs}) + "\n")
                if cfg.run.sample_every and self.step % cfg.run.sample_every == 0:
                    self.write_samples()
                just_saved = bool(cfg.run.checkpoint_every) and self.step % cfg.run.checkpoint_every == 0 and self.step < cfg.run.steps
                if just_saved:
                    self.save()
                if on_step is not None:
                    on_step(self.step, logs)
                if self.step < cfg.run.steps and (signum := stop.requested(acc)):
                    bar.close()
                    # the step's checkpoint is not written twice: re-writing it is the one moment a kill
                    # could leave none
                    saved = checkpoint.step_dir(self.out / "checkpoints", self.step) if just_saved else self.save()
                    raise Interrupted(signum, self.step, saved)
        bar.close()
        self.save()
        return self.export()

    def _ema_applied(self):
        return self.ema.applied() if self.ema is not None else contextlib.nullcontext()

    def write_samples(self) -> Path | None:
        """A 16-sample grid ``samples/step-<N>.png`` (main process)."""
        x = displayable(self.samples(16))
        if not self.acc.is_main_process:
            return None
        from ..data.io import image_grid, write_image

        path = self.out / "samples" / f"step-{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, image_grid(x))
        return path
