"""The HYPIR trainer's configuration (``hypir train --config FILE``): typed, frozen dataclasses
with the paper's / released code's defaults; see ``configs/hypir-sd21.yaml`` for every key.

``stage``: ``restore`` (stage 2, the adversarial LoRA fine-tuning; default) or ``encoder``
(stage 1, the degradation pre-removal: the VAE encoder learns ``D(E(lq)) ~ D(E0(gt))``).
Sections: ``model``, ``data``, ``degradation`` (:class:`hypir.data.DegradationConfig`),
``discriminator``, ``loss``, ``optim``, ``run``. Unknown keys and bad values raise ``ValueError``
naming the dotted key (:func:`hypir.config.parse`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from hypir_kernels.checks import check_int, check_seed

from ..config import apply_overrides, check_betas, check_non_negative, check_positive, check_run, load_yaml, parse
from ..data.realesrgan import DegradationConfig
from .discriminator import BACKBONES, HEADS, is_backbone, needs_weights


@dataclass(frozen=True)
class TinyModel:
    """Random-weight architecture of ``model.backbone`` at reduced width
    (:func:`hypir.testing.tiny_backbone_components`): ``unet_width`` is the denoiser's (UNet or
    transformer), ``layers`` the transformer's blocks of each kind (SD3/Flux; UNets ignore it),
    ``sample_size`` the native latent size."""

    unet_width: int = 32
    vae_width: int = 8
    text_width: int = 32
    heads: int = 2
    sample_size: int = 8
    layers: int = 2
    seed: int = 0

    def __post_init__(self):
        for name in ("unet_width", "vae_width", "text_width", "heads", "sample_size", "layers"):
            check_int(name, getattr(self, name), minimum=1)
        check_seed("seed", self.seed)


@dataclass(frozen=True)
class ModelConfig:
    """``base_model``: a local diffusers directory (SD2.1-base, SDXL, SD3/SD3.5 or Flux.1); or
    ``tiny`` (tests, the tiny configs: the random-weight model is written to
    ``<output_dir>/base_model`` so ``hypir restore`` can use it). ``backbone``: which one (null:
    the base model's, read from its directory; sd2 for ``tiny``); a base model of another backbone
    is refused. ``model_t``: SD3/Flux are called at ``sigma = model_t / 1000`` and need
    ``coeff_t == model_t``; ``guidance``: Flux.1 [dev]'s guidance embedding value."""

    base_model: str | None = None
    tiny: TinyModel | None = None
    backbone: Literal["sd2", "sdxl", "sd3", "flux"] | None = None
    guidance: float = 3.5
    lora_rank: int = 256
    lora_alpha: float | None = None  # None: = rank (scale 1), as released
    texture: bool = True  # train the texture-richness embedding (fed the ground truth's richness)
    model_t: int = 200
    coeff_t: int = 200
    posterior: Literal["sample", "mode"] = "sample"  # VAE posterior of the LQ latent, as released
    prompt: str = ""  # text condition of images without a prompt of their own
    init_weights: str | None = None  # start from a HYPIR checkpoint instead of a fresh LoRA
    encoder: str | None = None  # a stage-1 encoder file loaded into the VAE (stage 2 trains on top of it)
    gradient_checkpointing: bool = False  # recompute UNet activations in backward (memory for time)
    lora_kernels: bool = True  # run the LoRA layers with hypir_kernels.lora (false: plain peft, as released)

    def __post_init__(self):
        if (self.base_model is None) == (self.tiny is None):
            raise ValueError("base_model: give exactly one of base_model (a diffusers directory) and tiny")
        check_int("lora_rank", self.lora_rank, minimum=1)
        if self.lora_alpha is not None:
            check_positive("lora_alpha", self.lora_alpha)
        for name in ("model_t", "coeff_t"):
            check_int(name, getattr(self, name), minimum=0, maximum=999)
        check_positive("guidance", self.guidance)
        if self.backbone in ("sd3", "flux") and self.coeff_t != self.model_t:
            raise ValueError(f"coeff_t: a flow-matching backbone ({self.backbone}) has one noise level; "
                             f"expected coeff_t == model_t ({self.model_t}), got {self.coeff_t}")
        if self.backbone in ("sd3", "flux") and self.model_t == 0:
            raise ValueError("model_t: a flow-matching backbone needs sigma = model_t / 1000 > 0, got 0")


@dataclass(frozen=True)
class DataConfig:
    """``source``: a folder of images or a CSV / parquet listing (``path``, ``prompt`` columns); or
    ``generated``: that many procedurally generated images (:class:`hypir.data.GeneratedImages`)."""

    source: str | None = None
    generated: int = 0
    crop: int = 512
    flip: bool = True
    batch_size: int = 1  # per device and micro-batch; global batch = batch_size x processes x accumulation
    accumulation: int = 1
    workers: int = 0

    def __post_init__(self):
        if (self.source is None) == (self.generated == 0):
            raise ValueError("source: give exactly one of source (folder, CSV or parquet) and generated (a count)")
        check_int("generated", self.generated, minimum=0)
        for name in ("crop", "batch_size", "accumulation"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("workers", self.workers, minimum=0)


@dataclass(frozen=True)
class DiscriminatorConfig:
    backbone: str = "convnext_large"  # conv (tests), convnext_{tiny,small,base,large} (torchvision), timm/<model>
    weights: str | None = None  # local weights: torchvision / timm state dict, or an open_clip checkpoint (timm/)
    head: Literal["released", "multistage"] = "released"  # released: map heads + pooled head (HYPIR/model/D.py)
    head_channels: int = 512  # released: 512
    conv_widths: tuple[int, ...] = (16, 32, 64)  # the "conv" test backbone

    def __post_init__(self):
        if not is_backbone(self.backbone):
            raise ValueError(f"backbone: expected one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.head not in HEADS:
            raise ValueError(f"head: expected one of {HEADS}, got {self.head!r}")
        check_int("head_channels", self.head_channels, minimum=1)
        if not self.conv_widths:
            raise ValueError("conv_widths: expected at least one width")
        for w in self.conv_widths:
            check_int("conv_widths", w, minimum=1)


@dataclass(frozen=True)
class LossConfig:
    mse: float = 1.0
    lpips: float = 5.0
    gan: float = 0.5
    gan_loss: Literal["bce", "hinge"] = "bce"
    gan_reduction: Literal["sum", "mean"] = "sum"  # over discriminator levels: sum as released; mean = gan / levels
    real_label: float = 0.8
    fake_label: float = 0.0
    generator_label: float = 0.8
    lpips_vgg: str | None = None  # local torchvision VGG16 weights; None: the documented substitute
    lpips_lin: str | None = None  # local LPIPS lin weights (lpips/weights/v0.1/vgg.pth)
    # Stage 1's target D(E0(gt)): "initial" = the encoder as loaded, frozen (cannot collapse);
    # "shared" = the encoder being trained, without gradient (the paper's formula read literally).
    encoder_target: Literal["initial", "shared"] = "initial"

    def __post_init__(self):
        for name in ("mse", "lpips", "gan"):
            check_non_negative(name, getattr(self, name))


@dataclass(frozen=True)
class OptimConfig:
    lr_g: float = 1e-5
    lr_d: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    grad_clip: float = 1.0  # max gradient norm of each network; 0 disables
    warmup: int = 0  # linear learning-rate warm-up steps

    def __post_init__(self):
        check_positive("lr_g", self.lr_g)
        check_positive("lr_d", self.lr_d)
        check_betas("betas", self.betas)
        check_non_negative("weight_decay", self.weight_decay)
        check_non_negative("grad_clip", self.grad_clip)
        check_int("warmup", self.warmup, minimum=0)


@dataclass(frozen=True)
class RunConfig:
    output_dir: str = "runs/hypir"
    steps: int = 30000
    seed: int = 0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA and bf16-native CPUs
    ema: float = 0.999  # 0 disables
    log_every: int = 10
    sample_every: int = 0  # write a sample grid every N steps (0: never)
    checkpoint_every: int = 1000  # 0: only at the end
    keep_last: int = 3
    export: str | None = None  # file written at the end in output_dir; default hypir.safetensors (stage 2) / encoder.safetensors (stage 1)
    export_ema: bool = True  # export the EMA weights (else the raw ones)
    # also write released_lora.pth, loadable by the official HYPIR enhancer (LoRA keys only; a texture
    # embedding goes to released_texture.safetensors); null: when model.texture is false
    export_released: bool | None = None
    # released: a generator step on one batch, then a discriminator step on the next (fakes made by
    # the updated generator), as the release alternates; same-batch: both steps on the same batch
    schedule: Literal["released", "same-batch"] = "released"
    tensorboard: bool = True  # when the tensorboard package is installed

    def __post_init__(self):
        check_run(self)
        if self.export is not None and not self.export.endswith((".safetensors", ".pth")):
            raise ValueError(f"export: expected a .safetensors or .pth file name, got {self.export!r}")


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig
    data: DataConfig
    stage: Literal["restore", "encoder"] = "restore"
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        d = self.discriminator
        if self.stage == "restore" and needs_weights(d.backbone) and d.weights is None:
            raise ValueError(f"discriminator.weights: backbone {d.backbone} needs a local weights file "
                             f"(nothing is downloaded; backbone: conv runs without one)")
        if self.stage == "encoder" and self.run.export is not None and not self.run.export.endswith(".safetensors"):
            raise ValueError(f"run.export: stage 1 writes a .safetensors encoder, got {self.run.export!r}")
        if self.data.crop % self.degradation.scale:
            raise ValueError(f"data.crop: {self.data.crop} is not a multiple of degradation.scale={self.degradation.scale}")
        if self.degradation.pool_size % self.data.batch_size:  # (the release's own sd2_train.yaml, 256 and 6, fails so)
            raise ValueError(f"degradation.queue_size: {self.degradation.pool_size} is not a multiple of "
                             f"data.batch_size={self.data.batch_size} (the pair pool hands out whole micro-batches)")


def load_config(path: str | os.PathLike, overrides: dict | None = None) -> TrainConfig:
    """Read and validate a YAML config; relative paths in it stay relative to the working directory."""
    return parse(TrainConfig, apply_overrides(load_yaml(path), overrides))
