"""RSD phase I: pretrain a teacher diffusion model on corrupted observations only (paper §3,
Appendix E). ``hypir rsd pretrain --config FILE``.

The clean images are corrupted once (:meth:`hypir.rsd.tasks.Task.dataset`) and dropped; the
objective is the task's (:meth:`hypir.rsd.tasks.Task.loss`): EDM's loss on ``y`` (blur,
super-resolution, clean reference), Ambient Tweedie when ``sigma_n > 0``, Ambient Diffusion for
inpainting, Fourier-space ambient for MRI. Distribution through ``accelerate`` (each
process takes its slice of the step's global batch), AdamW with warm-up, gradient clipping, EMA,
checkpoints through :mod:`hypir.train.checkpoint` (atomic, keep-last-N, resumable bit for bit:
every draw comes from ``(run.seed, step, process)``), sample grids, and a one-file export.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import to_dict
from ..train import checkpoint
from ..train.ema import EMA
from ..train.loop import derive_seed, make_accelerator
from .config import DataConfig, PretrainConfig, TaskConfig
from .data import Observations, digits, folder_images
from .loop import RSDLoop
from .tasks import make_task
from .teacher import build_denoiser, sample, save_teacher


def clean_images(data: DataConfig) -> torch.Tensor:
    """The clean training images of ``data`` ``[N, C, S, S]`` in [-1, 1]."""
    x = digits(data.size, "train")[0] if data.source == "digits" else folder_images(data.source, data.size)
    return x[:data.limit] if data.limit else x


def observations(data: DataConfig, task: TaskConfig) -> Observations:
    """The fixed corrupted training set of a phase-I (and phase-II) run."""
    return make_task(task).dataset(clean_images(data))


class Pretrainer(RSDLoop):
    """Build a phase-I run from a :class:`PretrainConfig`; :meth:`train` runs it."""

    def __init__(self, config: PretrainConfig, accelerator=None, progress: bool = True):
        self.cfg = cfg = config
        self.acc = acc = make_accelerator(cfg.run.mixed_precision, accelerator)
        self.device = acc.device
        self.out = Path(cfg.run.output_dir)
        self.progress = progress
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
        self.task = make_task(cfg.task)
        self.data = observations(cfg.data, cfg.task)  # corrupted once; no clean image is kept
        self.image_channels = self.task.image_channels(self.data.y.shape[1])
        model = build_denoiser(cfg.net, self.image_channels, self.task.cond_channels, cfg.data.size,
                               seed=derive_seed(cfg.run.seed, 1))
        if cfg.run.compile:
            model.net.compile()  # in place: parameter names, checkpoints and exports are unchanged
        o = cfg.optim
        opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, weight_decay=0.0)
        warm = (lambda s: min(1.0, (s + 1) / o.warmup)) if o.warmup else (lambda s: 1.0)
        self.sched = torch.optim.lr_scheduler.LambdaLR(opt, warm)
        self.model, self.opt = acc.prepare(model, opt)
        self.named = {n: p for n, p in self._model.named_parameters()}
        self.ema = EMA(self.named, cfg.run.ema) if cfg.run.ema > 0 else None
        self.step = 0

    @property
    def desc(self) -> str:
        return f"rsd pretrain ({self.cfg.task.kind})"

    @property
    def _model(self):
        return self.acc.unwrap_model(self.model)

    def train_step(self, step: int) -> dict[str, float]:
        """One optimiser step on this process's slice of the step's global batch."""
        acc, b = self.acc, self.cfg.optim.batch_size
        g = torch.Generator().manual_seed(derive_seed(self.cfg.run.seed, step))
        idx = torch.randint(len(self.data), (b * acc.num_processes,), generator=g)[acc.process_index * b:][:b]
        y = self.data.y[idx].to(self.device)
        mask = self.data.mask[idx].to(self.device) if self.data.mask is not None else None
        seed = derive_seed(self.cfg.run.seed, step, acc.process_index)
        self.model.train()
        with acc.autocast():
            maps = self.data.maps.to(self.device) if self.data.maps is not None else None
            loss = self.task.loss(self.model, y, mask, maps, torch.Generator().manual_seed(seed), derive_seed(seed, 1)).mean()
        acc.backward(loss)
        gnorm = (float(acc.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip))
                 if self.cfg.optim.grad_clip > 0 else float("nan"))
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        return {"loss": float(acc.reduce(loss.detach(), "mean")), "gnorm": gnorm, "lr": self.sched.get_last_lr()[0]}

    @torch.no_grad()
    def samples(self, n: int = 64, seed: int = 0) -> torch.Tensor:
        """``n`` samples of the EMA teacher ``[n, C, S, S]`` in [-1, 1]."""
        model = self._model
        was_training = model.training
        model.eval()
        with self._ema_applied():
            x = sample(model, self.cfg.task, (n, self.image_channels, self.cfg.data.size, self.cfg.data.size),
                       seed=seed, steps=self.cfg.run.sample_steps, device=self.device)
        model.train(was_training)
        return x

    def save(self) -> Path | None:
        self.acc.wait_for_everyone()
        path = None
        if self.acc.is_main_process:
            tensors = {"model": dict(self.named)}
            if self.ema is not None:
                tensors["ema"] = self.ema.state_dict()
            optimizers = {"opt": self.opt.state_dict(), "sched": self.sched.state_dict()}
            state = {"config": to_dict(self.cfg), "processes": self.acc.num_processes}
            path = checkpoint.save(self.out / "checkpoints", self.step, tensors, optimizers, state, self.cfg.run.keep_last)
        self.acc.wait_for_everyone()
        return path

    def load(self, path) -> None:
        tensors, optimizers, state = checkpoint.load(path)
        got = tensors.get("model", {})
        if set(got) != set(self.named) or any(got[k].shape != p.shape for k, p in self.named.items()):
            raise ValueError(f"resume: {str(path)!r} does not match this network (different net or task config)")
        with torch.no_grad():
            for k, p in self.named.items():
                p.copy_(got[k])
        if self.ema is not None:
            self.ema.load_state_dict(tensors["ema"])
        self.opt.load_state_dict(optimizers["opt"])
        self.sched.load_state_dict(optimizers["sched"])
        self.step = int(state["step"])

    def export(self, path: str | Path | None = None) -> Path:
        """The EMA teacher as one file for ``hypir rsd sample --checkpoint``."""
        path = Path(path) if path is not None else self.out / self.cfg.run.export
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            with self._ema_applied():
                save_teacher(self._model, path, self.cfg.net, self.cfg.task, self.image_channels, self.cfg.data.size,
                             steps=self.step)
        self.acc.wait_for_everyone()
        return path
