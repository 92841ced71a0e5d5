"""The training loop every trainer of the model layer shares -- HYPIR's
(:class:`hypir.train.HypirTrainer`) and RSD's two phases (:class:`hypir.rsd.pretrain.Pretrainer`,
:class:`hypir.rsd.distill.Distiller`): resume, progress bar, JSONL log, sample grids, checkpoints
(atomic, keep-last-N), interruption (SIGINT/SIGTERM: finish the step, checkpoint, raise
:class:`~hypir.train.interrupt.Interrupted`), the final export; plus the seeds and the accelerator
they all use.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch

from . import checkpoint
from .interrupt import Interrupted, stop_on_signals


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, step, micro-batch, ...)."""
    s = 0
    for p in parts:
        s = (s * 1_000_003 + int(p)) * 1_000_033 % (1 << 63)
    return s


def make_accelerator(mixed_precision: str, accelerator=None):
    """``accelerator`` as given, or an ``accelerate.Accelerator`` with ``mixed_precision``
    (``auto``: bf16 autocast on CUDA and on CPUs with native bf16 -- AVX512-BF16/AMX, see
    :func:`hypir.pipelines.devices.auto_cpu_dtype` -- none on other CPUs); shared by the HYPIR and
    RSD trainers. Weights, optimiser states and the EMA stay fp32 either way."""
    if accelerator is not None:
        return accelerator
    from accelerate import Accelerator

    return Accelerator(mixed_precision=resolve_mixed_precision(mixed_precision))


def resolve_mixed_precision(mixed_precision: str) -> str:
    """``auto`` -> ``"bf16"`` on CUDA and on CPUs with native bf16, else ``"no"``; others as given."""
    if mixed_precision != "auto":
        return mixed_precision
    from ..pipelines.devices import auto_cpu_dtype

    return "bf16" if torch.cuda.is_available() or auto_cpu_dtype() == torch.bfloat16 else "no"


class TrainLoop:
    """The loop of every trainer. A subclass sets ``cfg`` (``cfg.run``: ``steps``, ``log_every``,
    ``sample_every``, ``checkpoint_every``, optionally ``tensorboard``), ``acc`` (an accelerate
    ``Accelerator``), ``out`` (the run's folder), ``progress``, ``ema`` (or None) and ``step``, and
    provides:

    * :meth:`run_step` -- one optimisation step at ``self.step`` (reading its own data), its logs;
    * :attr:`images_per_step` -- samples per step over all processes (the bar's and log's rate);
    * :meth:`sample_grid` -- a ``[3, H, W]`` picture in [0, 1] of the model now (collective);
    * :meth:`save`, :meth:`load`, :meth:`export` -- checkpoint, restore, final weights.

    It may override :attr:`desc` and :meth:`postfix` (the bar), :meth:`start` (called once before
    the first step, after any resume), :meth:`after_step` (evaluations; may add to the logs) and
    :meth:`must_log` (logs to write off the ``log_every`` grid).
    """

    desc = "train"

    def start(self) -> None:
        """Called once before the first step of :meth:`train`, after any resume."""

    def run_step(self) -> dict[str, float]:
        raise NotImplementedError

    @property
    def images_per_step(self) -> int:
        raise NotImplementedError

    def postfix(self, logs: dict) -> dict[str, str]:
        """What the progress bar shows of a step's logs."""
        return {"loss": f"{logs['loss']:.4f}"}

    def after_step(self, logs: dict) -> None:
        """Called after each step with its logs (may add to them before they are written)."""

    def must_log(self, logs: dict) -> bool:
        """Whether to write this step's logs although it is off the ``log_every`` grid."""
        return False

    def train(self, resume: str | None = None, on_step=None) -> Path:
        """Run to ``run.steps`` (resuming from ``resume``: a checkpoint directory or "auto"), save the
        last checkpoint and export; returns the export's path. ``on_step(step, logs)``, when given,
        is called after every step (evaluation hooks). SIGINT/SIGTERM: the step finishes, a
        checkpoint is written (on every process, which agree to stop after the same step) and
        :class:`~hypir.train.interrupt.Interrupted` is raised."""
        from tqdm.auto import tqdm

        if resume is not None:
            path = checkpoint.resolve(resume, self.out / "checkpoints")
            if path is not None:
                self.load(path)
            if self.acc.is_main_process:
                checkpoint.trim_log(self.out / "log.jsonl", self.step)
        run, acc = self.cfg.run, self.acc
        self.start()
        bar = tqdm(total=run.steps, initial=self.step, desc=self.desc, unit="step",
                   disable=not (self.progress and acc.is_main_process))
        start, done = time.perf_counter(), 0
        with stop_on_signals() as stop:
            while self.step < run.steps:
                logs = self.run_step()
                self.step += 1
                done += 1
                self.after_step(logs)
                rate = done * self.images_per_step / (time.perf_counter() - start)
                bar.update(1)
                bar.set_postfix(self.postfix(logs), img_s=f"{rate:.2f}")
                if acc.is_main_process and (self.step % max(run.log_every, 1) == 0 or self.step == run.steps
                                            or self.must_log(logs)):
                    self.log({"step": self.step, **logs, "images_per_s": rate})
                if run.sample_every and self.step % run.sample_every == 0:
                    self.write_samples()
                just_saved = bool(run.checkpoint_every) and self.step % run.checkpoint_every == 0 and self.step < run.steps
                if just_saved:
                    self.save()
                if on_step is not None:
                    on_step(self.step, logs)
                if self.step < run.steps and (signum := stop.requested(acc)):
                    bar.close()
                    # the step's checkpoint is not written twice: re-writing it is the one moment a kill
                    # could leave none
                    saved = checkpoint.step_dir(self.out / "checkpoints", self.step) if just_saved else self.save()
                    raise Interrupted(signum, self.step, saved)
        bar.close()
        self.save()
        return self.export()

    def log(self, record: dict) -> None:
        """Append ``record`` to ``log.jsonl`` (and TensorBoard with ``run.tensorboard`` when installed)."""
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if getattr(self.cfg.run, "tensorboard", False):
            if getattr(self, "_writer", None) is None:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    self._writer = False
                else:
                    self._writer = SummaryWriter(str(self.out / "tensorboard"))
            if self._writer:
                for k, v in record.items():
                    if k != "step":
                        self._writer.add_scalar(k, v, record["step"])

    def sample_grid(self) -> torch.Tensor:
        raise NotImplementedError

    def write_samples(self) -> Path | None:
        """:meth:`sample_grid` as ``samples/step-<N>.png`` (main process; every process computes it)."""
        grid = self.sample_grid()
        if not self.acc.is_main_process:
            return None
        from ..data.io import write_image

        path = self.out / "samples" / f"step-{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, grid.cpu())
        return path

    def _ema_applied(self):
        """The EMA weights swapped in for the block (a no-op without EMA)."""
        return self.ema.applied() if self.ema is not None else contextlib.nullcontext()
