"""RSD phase II: distil a phase-I teacher into a one-step generator through the corruption (paper
§3, Algorithm 6, Appendix F). ``hypir rsd distill --config FILE``.

Teacher, fake score and generator all start from the teacher; the generator is the teacher's
denoiser at ``sigma_init`` applied to ``sigma_init z`` (for masked teachers through the sampler's
fixed masks, kept with the generator). Each step: ``sid.fake_steps`` fake-score steps on corrupted
generator samples ``A(G(z)) (+ sigma_n e)`` with the teacher's own phase-I objective, then a
generator step with SiD's loss on ``w = A(G(z))`` (:mod:`hypir.rsd.sid`); the corruption operators
come from ``hypir_kernels`` and are differentiated through. Adam with SiD's betas (0, 0.999), an EMA
of the generator, model selection by proximal FID (the best step exported separately), accelerate,
atomic resumable checkpoints (bit for bit), progress bars.

How a task sees generator samples ``x`` is its task object's (:mod:`hypir.rsd.tasks`: ``observe``,
``noisy``, ``predict``, ``fake_loss``; see :mod:`hypir.rsd.sid`): inpainting draws a fresh mask ``M``
per draw, the networks see ``[M~ w_t, M~]`` and are compared on ``M``; MRI draws fresh column masks,
the networks see ``A~^H (M~ w_t)`` and are compared through ``A``.
"""
from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from hypir_kernels.checks import check_int

from ..config import to_dict
from ..train import checkpoint
from ..train.ema import EMA
from ..train.loop import derive_seed, make_accelerator
from .config import DistillConfig, NetConfig, TaskConfig
from .loop import RSDLoop
from .pretrain import observations
from .sid import fake_score_loss, generator_loss
from .tasks import make_task
from .teacher import PRECONDITIONING, build_denoiser, load_described, load_teacher, read_description, write_described


class OneStepGenerator(nn.Module):
    """``G(z) = D(sigma_init z, sigma_init)`` with ``D`` a copy of the teacher (masked teachers see
    ``z`` through fixed masks, buffers here so the export reproduces the generator). ``z`` and the
    output are ``[B, C, S, S]``."""

    def __init__(self, denoiser: nn.Module, task: TaskConfig, size: int, sigma_init: float = 2.5, seed: int = 0):
        super().__init__()
        self.denoiser, self.task, self.sigma_init = denoiser, task, float(sigma_init)
        self.physics = make_task(task)
        self.cond_names = []
        for name, t in self.physics.fixed_conditioning(1, size, seed).items():
            self.register_buffer(name, t)
            self.cond_names.append(name)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        cond = {name: getattr(self, name) for name in self.cond_names}
        return self.physics.denoise_fixed(self.denoiser, cond, self.sigma_init * z, self.sigma_init)


def save_student(gen: OneStepGenerator, path, net: NetConfig, image_channels: int, size: int, **info) -> Path:
    """One file: the generator's weights and buffers, and a JSON description (``hypir_rsd_student``)."""
    meta = {"net": asdict(net), "task": asdict(gen.task), "image_channels": image_channels, "size": size,
            "sigma_init": gen.sigma_init, "preconditioning": PRECONDITIONING, **info}
    return write_described(path, gen, "hypir_rsd_student", meta)


def load_student(path) -> tuple[OneStepGenerator, dict]:
    """``(generator in eval mode, description)`` of a file written by :func:`save_student`."""
    meta = read_description(path, "hypir_rsd_student")
    if meta is None:
        raise ValueError(f"checkpoint: {str(path)!r} is not an RSD student (written by `hypir rsd distill`)")
    denoiser = build_denoiser(meta["net"], meta["image_channels"], make_task(meta["task"]).cond_channels, meta["size"])
    gen = OneStepGenerator(denoiser, meta["task"], meta["size"], meta["sigma_init"])
    load_described(path, gen)
    return gen.eval().requires_grad_(False), meta


def is_student(path) -> bool:
    """Whether ``path`` is a safetensors file written by :func:`save_student`."""
    try:
        return read_description(path, "hypir_rsd_student") is not None
    except (FileNotFoundError, ValueError):
        return False


@torch.no_grad()
def one_step_sample(gen: OneStepGenerator, shape, seed: int = 0, device="cpu", batch: int = 256) -> torch.Tensor:
    """``shape = (N, C, S, S)`` one-step samples in [-1, 1] (``z`` from ``seed``, generated in batches)."""
    if not (len(shape) == 4 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise ValueError(f"shape: expected (N, C, S, S) of positive ints, got {tuple(shape)!r}")
    check_int("batch", batch, minimum=1)
    z = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return torch.cat([gen(z[i:i + batch].to(device)).float().cpu() for i in range(0, shape[0], batch)]).clamp(-1, 1)


class Distiller(RSDLoop):
    """Build a phase-II run from a :class:`DistillConfig`; :meth:`train` runs it.

    ``on_eval(step, samples, proximal_fid)`` (optional) is called at every selection step with the
    EMA generator's samples (the miniature experiment scores them against clean data there)."""

    def __init__(self, config: DistillConfig, accelerator=None, progress: bool = True, on_eval=None):
        self.cfg = cfg = config
        self.acc = acc = make_accelerator(cfg.run.mixed_precision, accelerator)
        self.device = acc.device
        self.out = Path(cfg.run.output_dir)
        self.progress, self.on_eval = progress, on_eval
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
        teacher, meta = load_teacher(cfg.teacher)
        self.task, self.net_cfg, self.size = meta["task"], meta["net"], meta["size"]
        self.image_channels = meta["image_channels"]
        if cfg.data.size != self.size:
            raise ValueError(f"data.size: {cfg.data.size}, but the teacher was trained at {self.size}")
        self.teacher = teacher.to(self.device)  # frozen, eval
        fake = copy.deepcopy(teacher).train().requires_grad_(True)
        gen = OneStepGenerator(copy.deepcopy(teacher).train().requires_grad_(True), self.task, self.size,
                               cfg.sid.sigma_init, seed=derive_seed(cfg.run.seed, 3))
        o = cfg.optim
        opt_g = torch.optim.Adam(gen.parameters(), lr=o.lr, betas=o.betas)
        opt_f = torch.optim.Adam(fake.parameters(), lr=o.fake_lr, betas=o.betas)
        self.gen, self.fake, self.opt_g, self.opt_f = acc.prepare(gen, fake, opt_g, opt_f)
        self.view = make_task(self.task)
        self.named_g = dict(self._gen.named_parameters())
        self.named_f = dict(self._fake.named_parameters())
        self.ema = EMA(self.named_g, cfg.run.ema) if cfg.run.ema > 0 else None
        self.features = self.data = None
        if cfg.select.features:
            from ..metrics.features import load_features

            self.features = load_features(cfg.select.features)
            self.data = observations(cfg.data, self.task)
        self.best = {"proximal_fid": float("inf"), "step": -1}
        self.step = 0

    shown = "loss_g"

    @property
    def desc(self) -> str:
        return f"rsd distill ({self.task.kind})"

    @property
    def _gen(self) -> OneStepGenerator:
        return self.acc.unwrap_model(self.gen)

    @property
    def _fake(self):
        return self.acc.unwrap_model(self.fake)

    def _z(self, g) -> torch.Tensor:
        b = self.cfg.optim.batch_size
        return torch.randn((b, self.image_channels, self.size, self.size), generator=g, dtype=torch.float32).to(self.device)

    def _clip(self, model) -> float:
        clip = self.cfg.optim.grad_clip
        return float(self.acc.clip_grad_norm_(model.parameters(), clip)) if clip > 0 else float("nan")

    def train_step(self, step: int) -> dict[str, float]:
        """``sid.fake_steps`` fake-score steps, then one generator step (this process's batch)."""
        acc, sid = self.acc, self.cfg.sid
        seed = derive_seed(self.cfg.run.seed, step, acc.process_index)
        g = torch.Generator().manual_seed(seed)
        for k in range(sid.fake_steps):
            with torch.no_grad(), acc.autocast():
                x = self.gen(self._z(g))
            with acc.autocast():
                loss_f = fake_score_loss(self.view, self.fake, x.float(), derive_seed(seed, 10 + k), g).mean()
            acc.backward(loss_f)
            self._clip(self.fake)
            self.opt_f.step()
            self.opt_f.zero_grad(set_to_none=True)
        fake = self._fake.requires_grad_(False)  # unwrapped: no gradient sync for a network not trained here
        with acc.autocast():
            loss_g = generator_loss(self.view, self.teacher, fake, self.gen(self._z(g)).float(), derive_seed(seed, 1), g,
                                    alpha=sid.alpha, t_max=sid.t_max).mean()
        acc.backward(loss_g)
        gnorm = self._clip(self.gen)
        self.opt_g.step()
        self.opt_g.zero_grad(set_to_none=True)
        fake.requires_grad_(True)
        if self.ema is not None:
            self.ema.update()
        return {"loss_g": float(acc.reduce(loss_g.detach(), "mean")), "loss_fake": float(acc.reduce(loss_f.detach(), "mean")),
                "gnorm": gnorm}

    @torch.no_grad()
    def samples(self, n: int = 64, seed: int = 0) -> torch.Tensor:
        """``n`` one-step samples of the EMA generator ``[n, C, S, S]`` in [-1, 1] (on the CPU)."""
        gen = self._gen
        was_training = gen.training
        gen.eval()
        with self._ema_applied():
            x = one_step_sample(gen, (n, self.image_channels, self.size, self.size), seed=seed, device=self.device)
        gen.train(was_training)
        return x

    def evaluate(self) -> dict[str, float]:
        """Proximal FID of the EMA generator (paper §5.3); exports it to ``select.best`` when it is the best."""
        from .evaluate import proximal_fid

        x = self.samples(self.cfg.select.samples, seed=derive_seed(self.cfg.run.seed, 4))
        fid = proximal_fid(self.features, x, self.data, self.task)
        if fid < self.best["proximal_fid"]:
            self.best = {"proximal_fid": fid, "step": self.step}
            self.export(self.out / self.cfg.select.best, proximal_fid=fid)
        if self.on_eval is not None and self.acc.is_main_process:
            self.on_eval(self.step, x, fid)
        return {"proximal_fid": fid}

    def after_step(self, logs: dict) -> None:
        if self.features is not None and (self.step % self.cfg.select.every == 0 or self.step == self.cfg.run.steps):
            logs.update(self.evaluate())

    def must_log(self, logs: dict) -> bool:
        return "proximal_fid" in logs  # every selection step is on record

    def save(self) -> Path | None:
        self.acc.wait_for_everyone()
        path = None
        if self.acc.is_main_process:
            tensors = {"generator": dict(self.named_g), "fake": dict(self.named_f)}
            if self.ema is not None:
                tensors["ema"] = self.ema.state_dict()
            optimizers = {"opt_g": self.opt_g.state_dict(), "opt_f": self.opt_f.state_dict()}
            state = {"config": to_dict(self.cfg), "processes": self.acc.num_processes, "best": self.best}
            path = checkpoint.save(self.out / "checkpoints", self.step, tensors, optimizers, state, self.cfg.run.keep_last)
        self.acc.wait_for_everyone()
        return path

    def load(self, path) -> None:
        tensors, optimizers, state = checkpoint.load(path)
        for key, named in (("generator", self.named_g), ("fake", self.named_f)):
            got = tensors.get(key, {})
            if set(got) != set(named) or any(got[k].shape != p.shape for k, p in named.items()):
                raise ValueError(f"resume: {str(path)!r} does not match this teacher's network")
            with torch.no_grad():
                for k, p in named.items():
                    p.copy_(got[k])
        if self.ema is not None:
            self.ema.load_state_dict(tensors["ema"])
        self.opt_g.load_state_dict(optimizers["opt_g"])
        self.opt_f.load_state_dict(optimizers["opt_f"])
        self.best = dict(state.get("best", self.best))
        self.step = int(state["step"])

    def export(self, path: str | Path | None = None, **info) -> Path:
        """The EMA generator as one file for ``hypir rsd sample --checkpoint``."""
        path = Path(path) if path is not None else self.out / self.cfg.run.export
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            with self._ema_applied():
                save_student(self._gen, path, self.net_cfg, self.image_channels, self.size, steps=self.step,
                             teacher=str(self.cfg.teacher), **info)
        self.acc.wait_for_everyone()
        return path
