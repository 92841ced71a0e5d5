"""HYPIR adversarial LoRA fine-tuning (paper §3, §5.3; released training recipe, DESIGN.md §5).

Generator: the backbone's denoiser (SD2/SDXL UNet, SD3/Flux transformer:
:mod:`hypir.models.backbones`) with the HYPIR LoRA (and the texture-richness embedding), run one
step exactly as in inference (the same :class:`~hypir.models.backbones.Backbone`), LoRA layers
executed by :func:`hypir_kernels.lora.patch_peft`; VAE and text encoders frozen. The LQ input is the
on-device Real-ESRGAN degradation (:func:`hypir.data.degrade`) of the ground truth, resized back
to its size (bicubic). Discriminator: :class:`~hypir.train.discriminator.Discriminator`. Each step:
a generator step (``mse * MSE + lpips * LPIPS + gan * GAN`` in pixel space), then a discriminator
step, AdamW for both, gradient clipping, EMA of the generator's weights. ``run.schedule``:
``released`` -- as ``HYPIR/trainer/base.py`` alternates: the generator steps on one global batch,
the discriminator on the next, its fakes made (without gradient) by the just-updated generator, so a
step reads two batches (the release's ``global_step`` likewise counts discriminator steps);
``same-batch`` -- the discriminator steps on the generator step's batch and fakes.

Distribution through ``accelerate`` (``accelerate launch`` / ``torchrun``; DDP). A step's global
batch is ``batch_size x processes x accumulation`` samples in micro-batches; micro-batch ``k`` of
step ``s`` holds the same samples, degraded from the same seed, in any layout of processes and
accumulation, so a 2-process run equals a 1-process run with twice the accumulation.
Every random draw comes from ``(run.seed, step, micro-batch)``: resuming from a checkpoint
continues bit for bit.
"""
from __future__ import annotations

import contextlib
import copy
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import to_dict
from ..data.pool import PairPool
from ..data.realesrgan import degrade
from ..models import lora as hypir_lora
from ..models.backbones import NAMES, TextConditioning, detect_backbone, make_backbone
from ..models.sd2 import ENCODER_PREFIXES, EncodeDecode, load_encoder, save_encoder
from ..models.texture import attach_texture_embedding, has_texture_embedding, texture_richness
from . import checkpoint
from .config import TrainConfig
from .discriminator import Discriminator, update_spectral_norms
from .ema import EMA
from .losses import LPIPS, discriminator_loss, generator_loss
from .batches import MicroBatches, Positions
from .loop import TrainLoop, derive_seed, make_accelerator


class HypirTrainer(TrainLoop):
    """Build everything a run needs from a :class:`TrainConfig`; :meth:`train` runs it.

    Args:
        config: the run's configuration.
        accelerator: an ``accelerate.Accelerator`` (default: one with the config's mixed precision).
        progress: show a progress bar (main process only).
    """

    def __init__(self, config: TrainConfig, accelerator=None, progress: bool = True):
        self.cfg = cfg = config
        self.acc = acc = make_accelerator(cfg.run.mixed_precision, accelerator)
        self.device = acc.device
        self.out = Path(cfg.run.output_dir)
        self.progress = progress
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)

        components = self._components()
        self.components = components
        if cfg.model.encoder is not None:
            load_encoder(components.vae, cfg.model.encoder)
        components.vae.to(self.device).requires_grad_(False).eval()
        self.degrade_ops = None  # hypir.data.realesrgan.DegradeOps to swap (the benchmark's anchor)
        pool_size = cfg.degradation.pool_size
        self.pool = PairPool(pool_size) if pool_size else None  # one per process, as the release's
        m = cfg.model
        self.backbone = make_backbone(components, m.model_t, m.coeff_t,
                                      **({"guidance": m.guidance} if components.backbone == "flux" else {}))
        self.backbone_name = components.backbone
        if cfg.run.export_released and self.backbone_name != "sd2":
            raise ValueError(f"run.export_released: the official HYPIR enhancer loads SD2 LoRAs only; this run's "
                             f"backbone is {NAMES[self.backbone_name]}")
        o = cfg.optim
        self._warm = (lambda s: min(1.0, (s + 1) / o.warmup)) if o.warmup else (lambda s: 1.0)
        if cfg.stage == "encoder":
            self._build_encoder_stage()
        else:
            self._build_restore_stage()
        self.ema = EMA(self.g_named, cfg.run.ema) if cfg.run.ema > 0 else None

        self.dataset = self._dataset()
        self.step = 0
        self._text_cache: dict[str, TextConditioning] = {}

    # ---- construction ---------------------------------------------------------------------

    def _optimizer(self, params, lr):
        o = self.cfg.optim
        opt = torch.optim.AdamW(params, lr=lr, betas=o.betas, weight_decay=o.weight_decay)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, self._warm)

    def _build_restore_stage(self) -> None:
        """Stage 2: the LoRA denoiser (generator) and the discriminator."""
        cfg, acc, components = self.cfg, self.acc, self.components
        unet = components.denoiser
        spec = hypir_lora.LoraSpec(rank=cfg.model.lora_rank, alpha=cfg.model.lora_alpha,
                                   targets=hypir_lora.targets_for(unet))
        if cfg.model.init_weights is not None:
            hypir_lora.load_checkpoint(unet, cfg.model.init_weights, spec)
        else:
            torch.manual_seed(derive_seed(cfg.run.seed, 1))  # peft's gaussian init of lora_A
            hypir_lora.add_lora(unet, spec)
        if cfg.model.texture and not has_texture_embedding(unet):
            torch.manual_seed(derive_seed(cfg.run.seed, 2))
            attach_texture_embedding(unet)
        unet.requires_grad_(False)
        for name, p in unet.named_parameters():
            if "lora_" in name or (cfg.model.texture and name.startswith("class_embedding.")):
                p.requires_grad_(True)
        if cfg.model.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        if cfg.model.lora_kernels:
            from hypir_kernels.lora import patch_peft

            patch_peft(unet)
        for encoder in self.backbone.text_encoders:
            encoder.to(self.device).requires_grad_(False).eval()

        d = cfg.discriminator
        disc = Discriminator(d.backbone, d.weights, d.head_channels, seed=derive_seed(cfg.run.seed, 3),
                             conv_widths=d.conv_widths, head=d.head)
        self.lpips = LPIPS(cfg.loss.lpips_vgg, cfg.loss.lpips_lin, seed=derive_seed(cfg.run.seed, 4)).to(self.device)
        if self.lpips.substitute and cfg.loss.lpips > 0 and acc.is_main_process:
            print("hypir train: LPIPS without local VGG/lin weights: using the random-VGG substitute "
                  "(loss.lpips_vgg / loss.lpips_lin to use the real one)")
        opt_g, self.sched_g = self._optimizer([p for p in unet.parameters() if p.requires_grad], cfg.optim.lr_g)
        opt_d, self.sched_d = self._optimizer([p for p in disc.parameters() if p.requires_grad], cfg.optim.lr_d)
        self.net, self.disc, self.opt_g, self.opt_d = acc.prepare(unet, disc, opt_g, opt_d)
        self.g_named = {n: p for n, p in self._net.named_parameters() if p.requires_grad}

    def _build_encoder_stage(self) -> None:
        """Stage 1: the VAE encoder (and quant_conv) learns to pre-remove the degradation; the
        decoder stays frozen and the denoiser is not used (dropped from memory)."""
        cfg, vae = self.cfg, self.components.vae
        self.components.denoiser = None
        self.encoder_target = None
        if cfg.loss.encoder_target == "initial":
            self.encoder_target = EncodeDecode(copy.deepcopy(vae)).requires_grad_(False)
        for name, p in vae.named_parameters():
            p.requires_grad_(name.startswith(ENCODER_PREFIXES))
        model = EncodeDecode(vae)
        opt, self.sched_g = self._optimizer([p for p in vae.parameters() if p.requires_grad], cfg.optim.lr_g)
        self.net, self.opt_g = self.acc.prepare(model, opt)
        self.disc = None
        self.g_named = {n: p for n, p in self._net.vae.named_parameters() if p.requires_grad}

    @property
    def _net(self):
        """The trained network unwrapped from DDP (``self.net``): the LoRA UNet in stage 2, the
        :class:`EncodeDecode` VAE in stage 1; ``g_named`` are its trainable weights."""
        return self.acc.unwrap_model(self.net)

    @property
    def _disc(self):
        return self.acc.unwrap_model(self.disc)

    @property
    def base_model_dir(self) -> Path:
        """The diffusers directory the exported weights go with."""
        return self.out / "base_model" if self.cfg.model.tiny is not None else Path(self.cfg.model.base_model)

    def _components(self):
        from ..models.components import check_model_dir, load_components

        m = self.cfg.model
        if m.tiny is None:
            found = detect_backbone(check_model_dir(m.base_model)) or "sd2"
            if m.backbone is not None and found != m.backbone:
                raise ValueError(f"model.backbone: {m.backbone!r}, but model.base_model {m.base_model!r} holds "
                                 f"a {NAMES[found]} model ({found!r})")
            return load_components(m.base_model)
        from ..testing import tiny_backbone_components

        t = m.tiny
        with tempfile.TemporaryDirectory() as tok:
            components = tiny_backbone_components(m.backbone or "sd2", tok, seed=t.seed, unet_width=t.unet_width,
                                                  vae_width=t.vae_width, text_width=t.text_width, heads=t.heads,
                                                  sample_size=t.sample_size,
                                                  **({"layers": t.layers} if m.backbone in ("sd3", "flux") else {}))
            if self.acc.is_main_process and not (self.base_model_dir / "unet" / "config.json").is_file():
                components.save_pretrained(self.base_model_dir)
        self.acc.wait_for_everyone()
        return components

    def _dataset(self):
        from ..data.dataset import ImageDataset
        from ..data.synthetic import GeneratedImages

        d, seed = self.cfg.data, self.cfg.run.seed
        if d.source is not None:
            return ImageDataset(d.source, crop=d.crop, flip=d.flip, prompt=self.cfg.model.prompt, seed=seed)
        return GeneratedImages(d.generated, size=d.crop, flip=d.flip, prompt=self.cfg.model.prompt, seed=seed)

    @property
    def batches_per_step(self) -> int:
        """Global batches a step reads: 2 under the released schedule (stage 2), else 1."""
        return 2 if self.cfg.stage == "restore" and self.cfg.run.schedule == "released" else 1

    def _loader(self, start: int):
        d = self.cfg.data
        sampler = MicroBatches(start, self.cfg.run.steps, d.batch_size, self.acc.process_index,
                                self.acc.num_processes, d.accumulation, self.batches_per_step)
        return torch.utils.data.DataLoader(Positions(self.dataset, self.cfg.run.seed), batch_sampler=sampler,
                                           num_workers=d.workers, persistent_workers=d.workers > 0)

    # ---- the model ----------------------------------------------------------------------------

    @torch.no_grad()
    def _text(self, prompts: list[str]) -> TextConditioning:
        for p in set(prompts) - set(self._text_cache):
            self._text_cache[p] = self.backbone.encode_text(p)
        return TextConditioning.cat([self._text_cache[p] for p in prompts])

    def generate(self, lq: torch.Tensor, prompts: list[str], richness: torch.Tensor | None, seed: int,
                 unet=None) -> torch.Tensor:
        """``lq [B, 3, H, W]`` in [0, 1] -> restored ``[B, 3, H, W]`` in [-1, 1] (with gradients
        into the generator's trainable weights)."""
        vae, backbone = self.components.vae, self.backbone
        with torch.no_grad():
            dist = vae.encode(lq * 2 - 1).latent_dist
            if self.cfg.model.posterior == "mode":
                z = dist.mode()
            else:
                g = torch.Generator().manual_seed(seed)
                z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=g).to(dist.mean)
            z = backbone.to_latent(z)
        x0 = backbone(unet or self.net, z, self._text(prompts), richness)
        return vae.decode(backbone.from_latent(x0)).sample

    # ---- one step -------------------------------------------------------------------------------

    def _prepare_micro(self, step: int, k: int, batch: dict, pool: bool = True):
        """Degrade micro-batch ``k`` of ``step``: ``(lq, target, prompts, richness, seed)``, the
        pairs through the training-pair pool when there is one (``pool=False``: around it)."""
        gt = batch["gt"].to(self.device, non_blocking=True)
        seed = derive_seed(self.cfg.run.seed, step, k)
        lq, target = degrade(gt, seed, self.cfg.degradation, self.degrade_ops)
        if lq.shape[-2:] != gt.shape[-2:]:  # the "ours" preset rounds at LQ size; "released" has resized back
            lq = F.interpolate(lq, size=gt.shape[-2:], mode="bicubic", align_corners=False).clamp_(0, 1)
        prompts = list(batch["prompt"])
        if pool and self.pool is not None:
            target, lq, prompts = self.pool.exchange(target, lq, prompts, derive_seed(seed, 2))
        richness = texture_richness(target) if self.cfg.model.texture and self.cfg.stage == "restore" else None
        return lq, target, prompts, richness, derive_seed(seed, 1)

    def _posterior_seed(self, seed: int) -> int | None:
        return seed if self.cfg.model.posterior == "sample" else None

    def train_step(self, step: int, micro: list[dict]) -> dict[str, float]:
        """One optimisation step over this process's micro-batches (``accumulation`` of them for
        each of :attr:`batches_per_step` global batches): stage 2, a generator step and a
        discriminator step; stage 1, an encoder step."""
        acc, n = self.acc, self.cfg.data.accumulation
        if len(micro) != n * self.batches_per_step:
            raise ValueError(f"micro: expected {n * self.batches_per_step} micro-batches "
                             f"(accumulation x batches per step), got {len(micro)}")
        per_group = acc.num_processes * n
        prepared = [self._prepare_micro(step, (i // n) * per_group + acc.process_index * n + i % n, b)
                    for i, b in enumerate(micro)]
        sums: dict[str, float] = {}

        def add(name, value):
            sums[name] = sums.get(name, 0.0) + float(value.detach() if torch.is_tensor(value) else value) / n

        if self.cfg.stage == "encoder":
            sums.update(self._encoder_step(prepared, add))
        else:
            sums.update(self._restore_step(prepared[:n], prepared[n:] or None, add))
        sums["lr_g"] = self.sched_g.get_last_lr()[0]
        return sums

    def _generator_update(self) -> float:
        """Clip, step the trained network's optimiser and scheduler, update the EMA; the gradient norm."""
        norm = self._clip(self.net)
        self.opt_g.step()
        self.sched_g.step()
        self.opt_g.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        return norm

    def _encoder_step(self, prepared, add) -> dict[str, float]:
        """``||D(E(lq)) - D(E0(gt))||^2`` (stage 1), gradients into the encoder only."""
        acc, n = self.acc, len(prepared)
        self.net.train()
        target_net = self.encoder_target if self.encoder_target is not None else self._net
        for j, (lq, target, _, _, seed) in enumerate(prepared):
            with torch.no_grad(), acc.autocast():
                reference = target_net(target * 2 - 1)
            sync = contextlib.nullcontext() if j == n - 1 else acc.no_sync(self.net)
            with sync, acc.autocast():
                x = self.net(lq * 2 - 1, self._posterior_seed(seed))
                loss = F.mse_loss(x.float(), reference.float())
                acc.backward(loss / n)
            add("loss_g", loss), add("mse", loss)
            add("mse_to_gt", F.mse_loss(x.detach().float(), target * 2 - 1))
        return {"gnorm_g": self._generator_update()}

    def _restore_step(self, prepared, prepared_d, add) -> dict[str, float]:
        """A generator step on ``prepared``; a discriminator step on ``prepared_d`` with fakes made by
        the updated generator (released schedule), or on ``prepared`` and its fakes (None)."""
        acc, cfg, n = self.acc, self.cfg, len(prepared)
        reduction = cfg.loss.gan_reduction
        # Generator step: the discriminator's head is frozen and called unwrapped (no DDP sync).
        disc = self._disc
        disc.heads.requires_grad_(False)
        self.net.train()
        fakes = []
        for j, (lq, target, prompts, richness, seed) in enumerate(prepared):
            sync = contextlib.nullcontext() if j == n - 1 else acc.no_sync(self.net)
            with sync, acc.autocast():
                x = self.generate(lq, prompts, richness, seed)
                ref = target * 2 - 1
                mse = F.mse_loss(x.float(), ref)
                lp = self.lpips(x.float(), ref).mean() if cfg.loss.lpips > 0 else x.new_zeros(())
                gan = (generator_loss(disc(x), cfg.loss.gan_loss, cfg.loss.generator_label, reduction)
                       if cfg.loss.gan > 0 else x.new_zeros(()))
                loss = cfg.loss.mse * mse + cfg.loss.lpips * lp + cfg.loss.gan * gan
                acc.backward(loss / n)
            fakes.append(x.detach())
            add("loss_g", loss), add("mse", mse), add("lpips", lp), add("gan_g", gan)
        gnorm_g = self._generator_update()

        if prepared_d is not None:  # released schedule: the next batch, fakes of the updated generator
            with torch.no_grad(), acc.autocast():
                fakes = [self.generate(lq, prompts, richness, seed, unet=self._net).detach()
                         for lq, _, prompts, richness, seed in prepared_d]
            prepared = prepared_d

        disc.heads.requires_grad_(True)
        self.disc.train()
        for j, ((_, target, *_), fake) in enumerate(zip(prepared, fakes)):
            sync = contextlib.nullcontext() if j == n - 1 else acc.no_sync(self.disc)
            with sync, acc.autocast():
                real_logits, fake_logits = self.disc(target * 2 - 1), self.disc(fake)
                loss_d = discriminator_loss(real_logits, fake_logits, cfg.loss.gan_loss, cfg.loss.real_label,
                                            cfg.loss.fake_label, reduction)
                acc.backward(loss_d / n)
            add("loss_d", loss_d)
            add("d_real", sum(float(t.detach().float().mean()) for t in real_logits) / len(real_logits))
            add("d_fake", sum(float(t.detach().float().mean()) for t in fake_logits) / len(fake_logits))
        gnorm_d = self._clip(self.disc)
        self.opt_d.step()
        self.sched_d.step()
        self.opt_d.zero_grad(set_to_none=True)
        update_spectral_norms(disc)
        return {"gnorm_g": gnorm_g, "gnorm_d": gnorm_d}

    def _clip(self, model) -> float:
        params = [p for p in model.parameters() if p.requires_grad]
        if self.cfg.optim.grad_clip > 0:
            return float(self.acc.clip_grad_norm_(params, self.cfg.optim.grad_clip))
        grads = [p.grad for p in params if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) if grads else 0.0

    # ---- the run --------------------------------------------------------------------------------

    desc = "hypir train"

    @property
    def images_per_step(self) -> int:
        d = self.cfg.data
        return d.batch_size * self.acc.num_processes * d.accumulation * self.batches_per_step

    def start(self) -> None:
        self._batches = iter(self._loader(self.step))

    def run_step(self) -> dict[str, float]:
        """:meth:`train_step` on this process's next micro-batches."""
        self._micro = [next(self._batches) for _ in range(self.cfg.data.accumulation * self.batches_per_step)]
        return self.train_step(self.step, self._micro)

    def postfix(self, logs: dict) -> dict[str, str]:
        shown = {"g": logs["loss_g"], "d": logs.get("loss_d")}
        return {k: f"{v:.3f}" for k, v in shown.items() if v is not None}

    @torch.no_grad()
    def sample_grid(self, batch: dict | None = None) -> torch.Tensor:
        """``[3, H, W]`` in [0, 1], rows: degraded input, output, target of a micro-batch (the last
        step's first by default; stage 1: the output is ``D(E(input))``)."""
        lq, target, prompts, richness, seed = self._prepare_micro(self.step, 0, batch or self._micro[0], pool=False)
        with self.acc.autocast():
            if self.cfg.stage == "encoder":
                x = (self._net(lq * 2 - 1).float() + 1) / 2
            else:
                x = (self.generate(lq, prompts, richness, seed, unet=self._net).float() + 1) / 2
        return torch.cat([torch.cat(list(t.clamp(0, 1)), dim=2) for t in (lq, x, target)], dim=1)

    # ---- checkpoints ----------------------------------------------------------------------------

    def save(self) -> Path | None:
        """Write a checkpoint of the whole training state (main process), keeping the last N."""
        self.acc.wait_for_everyone()
        pool = self._gathered_pool()
        path = None
        if self.acc.is_main_process:
            tensors = {"generator": {k: p for k, p in self.g_named.items()}}
            optimizers = {"g": self.opt_g.state_dict(), "sched_g": self.sched_g.state_dict()}
            if self.disc is not None:
                tensors["discriminator"] = self._disc.heads.state_dict()
                optimizers |= {"d": self.opt_d.state_dict(), "sched_d": self.sched_d.state_dict()}
            if self.ema is not None:
                tensors["ema"] = self.ema.state_dict()
            state = {"config": to_dict(self.cfg), "processes": self.acc.num_processes}
            if pool is not None:
                tensors["pool"], state["pool"] = pool["tensors"], {k: v for k, v in pool.items() if k != "tensors"}
            path = checkpoint.save(self.out / "checkpoints", self.step, tensors, optimizers, state, self.cfg.run.keep_last)
        self.acc.wait_for_everyone()
        return path

    def load(self, path) -> None:
        """Restore a checkpoint written by :meth:`save` (same model and optimiser layout)."""
        tensors, optimizers, state = checkpoint.load(path)
        gen = tensors.get("generator", {})
        shapes = sorted(k for k in set(gen) & set(self.g_named) if gen[k].shape != self.g_named[k].shape)
        if set(gen) != set(self.g_named) or shapes:
            missing, extra = sorted(set(self.g_named) - set(gen)), sorted(set(gen) - set(self.g_named))
            raise ValueError(f"resume: {str(path)!r} does not match this model (missing {missing[:3]}, "
                             f"unexpected {extra[:3]}, other shapes {shapes[:3]})")
        with torch.no_grad():
            for k, p in self.g_named.items():
                p.copy_(gen[k])
        if self.ema is not None:
            self.ema.load_state_dict(tensors["ema"])
        self.opt_g.load_state_dict(optimizers["g"])
        self.sched_g.load_state_dict(optimizers["sched_g"])
        if self.disc is not None:
            self._disc.heads.load_state_dict(tensors["discriminator"])
            self.opt_d.load_state_dict(optimizers["d"])
            self.sched_d.load_state_dict(optimizers["sched_d"])
        if self.pool is not None:
            self._load_pool(tensors.get("pool", {}), state.get("pool"), path)
        self.step = int(state["step"])

    def _gathered_pool(self) -> dict | None:
        """Every process's pair pool, concatenated in process order (collective: all processes call it)."""
        if self.pool is None:
            return None
        st = self.pool.state_dict()
        if self.acc.num_processes > 1:
            from accelerate.utils import gather_object

            st["tensors"] = {k: self.acc.gather(v.contiguous()) for k, v in st["tensors"].items()}
            st["prompts"] = gather_object(st["prompts"])
        return st

    def _load_pool(self, tensors: dict, state: dict | None, path) -> None:
        if state is None:
            raise ValueError(f"resume: {str(path)!r} has no training-pair pool, this run keeps one "
                             f"(degradation.queue_size {self.pool.size})")
        n, r = self.pool.size, self.acc.process_index
        self.pool.load_state_dict({"tensors": {k: v[r * n:(r + 1) * n].to(self.device) for k, v in tensors.items()},
                                   "prompts": state["prompts"][r * n:(r + 1) * n], "filled": state["filled"],
                                   "size": state["size"]})

    @property
    def export_path(self) -> Path:
        default = "encoder.safetensors" if self.cfg.stage == "encoder" else "hypir.safetensors"
        return self.out / (self.cfg.run.export or default)

    RELEASED_LORA, RELEASED_TEXTURE = "released_lora.pth", "released_texture.safetensors"

    @property
    def exports_released(self) -> bool:
        """Whether :meth:`export` also writes the official enhancer's ``.pth`` (``run.export_released``;
        null: when the texture embedding is off, i.e. the weights are exactly the released kind)."""
        r = self.cfg.run.export_released
        return (self.cfg.stage == "restore" and self.backbone_name == "sd2"
                and (not self.cfg.model.texture if r is None else r))

    def export(self, path: str | Path | None = None) -> Path:
        """EMA weights (unless ``run.export_ema`` is false) for ``hypir restore``: stage 2, the
        released HYPIR format (LoRA + texture embedding, ``--weights``) and, when
        :attr:`exports_released`, :data:`RELEASED_LORA` for the official enhancer
        (:func:`hypir.models.lora.save_released`; a texture embedding in :data:`RELEASED_TEXTURE`);
        stage 1, the VAE encoder (:func:`hypir.models.sd2.save_encoder`, ``--encoder``)."""
        path = Path(path) if path is not None else self.export_path
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            ctx = self.ema.applied() if (self.ema is not None and self.cfg.run.export_ema) else contextlib.nullcontext()
            with ctx:
                if self.cfg.stage == "encoder":
                    save_encoder(self._net.vae, path)
                else:
                    hypir_lora.save_checkpoint(self._net, path)
                    if self.exports_released:
                        hypir_lora.save_released(self._net, path.with_name(self.RELEASED_LORA),
                                                 path.with_name(self.RELEASED_TEXTURE))
        self.acc.wait_for_everyone()
        return path
