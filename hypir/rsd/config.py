"""RSD phase-I configuration (``hypir rsd pretrain --config FILE``): typed, frozen dataclasses; see
``configs/rsd-*.yaml``. Unknown keys and bad values raise ``ValueError`` naming the dotted key."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from hypir_kernels.checks import check_int, check_seed

from ..config import apply_overrides, check_betas, check_non_negative, check_positive, check_run, load_yaml, parse

TASK_KINDS = ("blur", "inpainting", "sr", "mri", "clean")


@dataclass(frozen=True)
class NetConfig:
    """The denoiser's network ``F``: a diffusers ``UNet2DModel`` (EDM-preconditioned)."""

    channels: tuple[int, ...] = (64, 128, 128)  # block widths, one down/up level each
    layers_per_block: int = 2
    attention: bool = True  # self-attention blocks at the lowest resolution
    dropout: float = 0.0

    def __post_init__(self):
        if not self.channels:
            raise ValueError("channels: expected at least one width")
        for c in self.channels:
            check_int("channels", c, minimum=8)
            if c % 8:
                raise ValueError(f"channels: expected multiples of 8 (group norm), got {c}")
        check_int("layers_per_block", self.layers_per_block, minimum=1)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: expected a number in [0, 1), got {self.dropout!r}")


@dataclass(frozen=True)
class DataConfig:
    """``source``: ``digits`` (scikit-learn's bundled digits, grey) or a folder of images (RGB)."""

    source: str = "digits"
    size: int = 32
    limit: int = 0  # use only the first N training images (0: all)

    def __post_init__(self):
        check_int("size", self.size, minimum=4)
        check_int("limit", self.limit, minimum=0)


@dataclass(frozen=True)
class TaskConfig:
    """The corruption the teacher learns from (``clean``: the reference teacher on clean data)."""

    kind: Literal["blur", "inpainting", "sr", "mri", "clean"] = "blur"
    sigma_n: float = 0.0  # measurement noise; > 0 selects the Ambient-Tweedie objective
    keep: float = 0.1  # inpainting: fraction of pixels observed (the paper: 90 % missing)
    delta: float = 0.1  # inpainting: fraction of observed pixels the further mask drops
    blur_sigma: float = 2.0
    blur_size: int = 9
    sr_factor: int = 2
    acceleration: int = 4  # mri: R, k-space columns kept = width / R (ACS included)
    center_fraction: float = 0.08  # mri: the fully sampled centre (ACS) block
    coils: int = 4  # mri: synthetic coil maps
    remove: int = 1  # mri: acquired non-ACS lines the further mask drops
    seed: int = 0  # the corruption's draws (fixed once per dataset)

    def __post_init__(self):
        check_non_negative("sigma_n", self.sigma_n)
        if not 0 < self.keep <= 1:
            raise ValueError(f"keep: expected a number in (0, 1], got {self.keep!r}")
        if not 0 <= self.delta < 1:
            raise ValueError(f"delta: expected a number in [0, 1), got {self.delta!r}")
        check_positive("blur_sigma", self.blur_sigma)
        check_int("blur_size", self.blur_size, minimum=1)
        check_int("sr_factor", self.sr_factor, minimum=1)
        check_int("acceleration", self.acceleration, minimum=1)
        if not 0 <= self.center_fraction < 1:
            raise ValueError(f"center_fraction: expected a number in [0, 1), got {self.center_fraction!r}")
        check_int("coils", self.coils, minimum=1)
        check_int("remove", self.remove, minimum=0)
        if self.kind == "mri" and self.sigma_n:
            raise ValueError("sigma_n: the mri task is noiseless here (k-space noise is not implemented)")
        check_seed("seed", self.seed)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 64  # per process
    grad_clip: float = 1.0  # 0 disables
    warmup: int = 200

    def __post_init__(self):
        check_positive("lr", self.lr)
        check_betas("betas", self.betas)
        check_int("batch_size", self.batch_size, minimum=1)
        check_non_negative("grad_clip", self.grad_clip)
        check_int("warmup", self.warmup, minimum=0)


@dataclass(frozen=True)
class RunConfig:
    output_dir: str = "runs/rsd"
    steps: int = 20000
    seed: int = 0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    compile: bool = False  # torch.compile the UNet in place (a one-off compile of minutes; see docs/rsd.md)
    ema: float = 0.999  # 0 disables
    log_every: int = 50
    sample_every: int = 0  # a sample grid every N steps (0: never)
    sample_steps: int = 18  # sampler levels for those grids and for `hypir rsd sample`
    checkpoint_every: int = 1000
    keep_last: int = 3
    export: str = "teacher.safetensors"

    def __post_init__(self):
        check_run(self)
        check_int("sample_steps", self.sample_steps, minimum=2)
        if not self.export.endswith(".safetensors"):
            raise ValueError(f"export: expected a .safetensors file name, got {self.export!r}")


@dataclass(frozen=True)
class PretrainConfig:
    net: NetConfig = field(default_factory=NetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        levels = len(self.net.channels) - 1
        if self.data.size % (2**levels):
            raise ValueError(f"data.size: {self.data.size} is not divisible by 2^{levels} (net.channels has "
                             f"{levels + 1} levels)")
        if self.task.kind == "mri" and self.data.source != "digits":
            raise ValueError("data.source: the mri task builds complex images from the grey digits")
        if self.task.kind == "sr" and self.data.size % self.task.sr_factor:
            raise ValueError(f"task.sr_factor: data.size {self.data.size} is not a multiple of {self.task.sr_factor}")


def load_pretrain_config(path: str | os.PathLike, overrides: dict | None = None) -> PretrainConfig:
    """Read and validate a YAML config, with ``overrides`` (dotted key -> value) applied."""
    return parse(PretrainConfig, apply_overrides(load_yaml(path), overrides))


@dataclass(frozen=True)
class SiDConfig:
    """Score identity Distillation (paper Appendix F; SiD's defaults)."""

    alpha: float = 1.2
    t_max: float = 0.8  # generator-loss noise levels: t ~ U[0, t_max] of the rho-7 schedule (sigma <= ~24.4)
    sigma_init: float = 2.5  # the generator is the teacher's denoiser at this noise level on sigma_init * z
    fake_steps: int = 1  # fake-score steps per generator step

    def __post_init__(self):
        check_positive("alpha", self.alpha)
        if not 0 < self.t_max <= 1:
            raise ValueError(f"t_max: expected a number in (0, 1], got {self.t_max!r}")
        check_positive("sigma_init", self.sigma_init)
        check_int("fake_steps", self.fake_steps, minimum=1)


@dataclass(frozen=True)
class DistillOptimConfig:
    lr: float = 1e-5  # generator
    fake_lr: float = 1e-5
    betas: tuple[float, float] = (0.0, 0.999)  # SiD: no first moment
    batch_size: int = 64  # per process
    grad_clip: float = 0.0  # 0 disables

    def __post_init__(self):
        check_positive("lr", self.lr)
        check_positive("fake_lr", self.fake_lr)
        check_betas("betas", self.betas)
        check_int("batch_size", self.batch_size, minimum=1)
        check_non_negative("grad_clip", self.grad_clip)


@dataclass(frozen=True)
class SelectConfig:
    """Model selection by proximal FID (paper §5.3): every ``every`` steps the EMA generator's
    ``samples`` are corrupted like the data and compared with it in ``features`` (a file from
    ``hypir.metrics.features.save_features``); the best step is exported to ``best``."""

    features: str = ""  # empty: no selection (the last step is the result)
    every: int = 500
    samples: int = 1000
    best: str = "student-best.safetensors"

    def __post_init__(self):
        check_int("every", self.every, minimum=1)
        check_int("samples", self.samples, minimum=2)
        if not self.best.endswith(".safetensors"):
            raise ValueError(f"best: expected a .safetensors file name, got {self.best!r}")


@dataclass(frozen=True)
class DistillRunConfig:
    output_dir: str = "runs/rsd-distill"
    steps: int = 10000
    seed: int = 0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    ema: float = 0.999  # of the generator; 0 disables
    log_every: int = 50
    sample_every: int = 0
    checkpoint_every: int = 1000
    keep_last: int = 3
    export: str = "student.safetensors"

    def __post_init__(self):
        check_run(self)
        if not self.export.endswith(".safetensors"):
            raise ValueError(f"export: expected a .safetensors file name, got {self.export!r}")


@dataclass(frozen=True)
class DistillConfig:
    """Phase II: ``teacher`` is a ``teacher.safetensors`` from ``hypir rsd pretrain`` (its task --
    corruption, noise, masks -- is the distillation's); ``data`` is the teacher's training data (read
    only for proximal-FID selection; its size must be the teacher's)."""

    teacher: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    sid: SiDConfig = field(default_factory=SiDConfig)
    optim: DistillOptimConfig = field(default_factory=DistillOptimConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    run: DistillRunConfig = field(default_factory=DistillRunConfig)

    def __post_init__(self):
        if not self.teacher:
            raise ValueError("teacher: expected the path of a teacher.safetensors (hypir rsd pretrain's export)")


def load_distill_config(path: str | os.PathLike, overrides: dict | None = None) -> DistillConfig:
    """Read and validate a YAML distillation config, with ``overrides`` applied."""
    return parse(DistillConfig, apply_overrides(load_yaml(path), overrides))
