"""The HYPIR paper's initialisation claim in miniature (issue 12; docs/experiments.md "Diffusion initialisation
in miniature"): adversarial restoration training started from a diffusion-pretrained UNet vs the
same UNet at its random initialisation, equal steps, everything else identical.

    pip install scikit-image matplotlib      # the images and the figures
    python -m hypir.experiments.diffusion_init --out runs/diffusion-init

Stages (each is skipped when its output exists, so a stopped run continues where it was):

1. ``data/``: the colour and grey photographs bundled inside scikit-image, split by image into
   ``train/`` and ``heldout/`` (nothing is downloaded).
2. ``vae.safetensors``: a 3-level ``AutoencoderKL`` (x4, 4 latent channels) trained on 32 px crops
   (MSE + 1e-6 KL), so that latents mean something; both arms share it, frozen.
3. ``base_diffusion/``: the SD2-architecture UNet (width 32, cross-attention, SD2.1's DDPM
   schedule) trained with the epsilon objective on the VAE latents of 64 px training crops
   (empty prompt through a random 2-layer CLIP text encoder), saved with the VAE, text encoder,
   tokenizer and scheduler as a diffusers directory. ``base_random/`` is the same directory with the
   UNet at the random initialisation the pretraining started from.
4. ``hypir-diffusion/``, ``hypir-random/``: :class:`hypir.train.HypirTrainer` with one config
   (x4 Real-ESRGAN degradation, LoRA, texture embedding, conv discriminator, LPIPS substitute) on
   each base; every ``--eval-every`` steps the EMA generator restores fixed held-out patches:
   PSNR and LPIPS (the random-VGG substitute: no VGG weights here) against bicubic.
5. ``results.json``, ``results.md``, ``curves.png`` (PSNR, LPIPS, discriminator logits, generator
   gradient norm against steps) and ``grid.png`` (held-out patches: bicubic, each arm, target).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

CROP = 64
VAE_CROP = 32  # the autoencoder is convolutional: 32 px crops train it 4x cheaper
# Files in scikit-image's package data folder (photographs; grey ones are used as RGB).
TRAIN_IMAGES = ("chelsea.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png",
                "brick.png", "grass.png", "gravel.png", "camera.png")
HELDOUT_IMAGES = ("astronaut.png", "coffee.png")
UNET_WIDTH, TEXT_WIDTH = 32, 32
VAE_CONFIG = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(32, 64, 64), layers_per_block=1,
                  latent_channels=4, norm_num_groups=32, sample_size=CROP, scaling_factor=1.0)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_data(out: Path) -> Path:
    """The bundled scikit-image photographs as PNGs under ``out/data/{train,heldout}``."""
    import skimage.data

    from ..data.io import read_image, write_image

    root = out / "data"
    if (root / "done").is_file():
        return root
    bundled = Path(skimage.data.__file__).parent
    for split, names in (("train", TRAIN_IMAGES), ("heldout", HELDOUT_IMAGES)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for name in names:
            img, _ = read_image(bundled / name)  # [3, H, W] RGB in [0, 1] (grey and RGBA converted)
            write_image(root / split / (Path(name).stem + ".png"), img)
    (root / "done").write_text("")
    return root


def _crops(dataset, step: int, batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    idx = torch.randint(len(dataset), (batch,), generator=g).tolist()
    return torch.stack([dataset.sample(i, step * batch + j)["gt"] for j, i in enumerate(idx)])


def _warmup_cosine(opt, steps: int):
    warm = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))


def train_vae(out: Path, data: Path, steps: int, batch: int, seed: int):
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    from ..data.dataset import ImageDataset

    torch.manual_seed(seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    path = out / "vae.safetensors"
    if path.is_file():
        vae.load_state_dict(load_file(path))
        return vae.eval()
    ds = ImageDataset(data / "train", crop=VAE_CROP, seed=seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    sched = _warmup_cosine(opt, steps)
    vae.train()
    bar = tqdm(range(steps), desc="vae")
    for step in bar:
        x = _crops(ds, step, batch, seed) * 2 - 1
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        kl = post.kl().mean() / x[0].numel()
        loss = F.mse_loss(rec, x) + 1e-6 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(mse=f"{loss.item():.4f}")
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, path)
    return vae.eval()


def _latent_scale(vae, ds, seed: int) -> float:
    """1 / std of the latents, as SD's scaling_factor makes them unit-variance."""
    with torch.no_grad():
        z = vae.encode(_crops(ds, 10**6, 64, seed) * 2 - 1).latent_dist.mode()
    return float(1 / z.std())


def train_diffusion(out: Path, data: Path, vae, steps: int, batch: int, seed: int) -> tuple[Path, Path]:
    """``base_diffusion/`` and ``base_random/`` diffusers directories."""
    from tqdm.auto import tqdm

    from ..data.dataset import ImageDataset
    from ..testing import load_tokenizer, sd2_configs, write_tokenizer
    from ..models.components import build_components

    done, rand = out / "base_diffusion", out / "base_random"
    if (done / "unet" / "config.json").is_file() and (rand / "unet" / "config.json").is_file():
        return done, rand
    ds = ImageDataset(data / "train", crop=CROP, seed=seed + 1)
    vae.register_to_config(scaling_factor=_latent_scale(vae, ds, seed))
    cfg = sd2_configs(unet_width=UNET_WIDTH, text_width=TEXT_WIDTH, sample_size=CROP // 4)
    comps = build_components(VAE_CONFIG, cfg["unet"], cfg["text_encoder"],
                             load_tokenizer(write_tokenizer(out / "tokenizer")), seed=seed)
    comps.vae = vae
    comps.save_pretrained(rand)
    unet, sched = comps.unet, comps.scheduler
    with torch.no_grad():
        ids = comps.tokenizer("", padding="max_length", max_length=comps.tokenizer.model_max_length,
                              return_tensors="pt").input_ids
        text = comps.text_encoder(ids)[0]
    abar = sched.alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=3e-4, weight_decay=0.0)
    lr = _warmup_cosine(opt, steps)
    g = torch.Generator().manual_seed(seed + 2)
    unet.train()
    bar = tqdm(range(steps), desc="diffusion")
    avg = None
    for step in bar:
        with torch.no_grad():
            z0 = vae.encode(_crops(ds, step, batch, seed + 1) * 2 - 1).latent_dist.sample() * vae.config.scaling_factor
        t = torch.randint(0, len(abar), (batch,), generator=g)
        eps = torch.randn(z0.shape, generator=g)
        a = abar[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
        loss = F.mse_loss(unet(zt, t, text.expand(batch, -1, -1)).sample, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr.step()
        avg = loss.item() if avg is None else 0.99 * avg + 0.01 * loss.item()
        bar.set_postfix(eps_mse=f"{avg:.4f}")
    unet.eval()
    comps.save_pretrained(done)
    (out / "diffusion_loss.txt").write_text(f"{avg}\n")
    return done, rand


def heldout_patches(data: Path, per_image: int = 8) -> torch.Tensor:
    """``[N, 3, 64, 64]``: an even grid of crops of each held-out image."""
    from ..data.io import read_image

    out = []
    for p in sorted((data / "heldout").glob("*.png")):
        img, _ = read_image(p)
        _, H, W = img.shape
        side = math.ceil(math.sqrt(per_image))
        for i in range(per_image):
            y = (H - CROP) * (i // side) // max(side - 1, 1)
            x = (W - CROP) * (i % side) // max(side - 1, 1)
            out.append(img[:, y:y + CROP, x:x + CROP])
    return torch.stack(out)


class Evaluator:
    """Fixed held-out (degraded, target) pairs; PSNR and LPIPS-substitute of a generator."""

    def __init__(self, data: Path, degradation, seed: int = 1234):
        from ..data.realesrgan import degrade
        from ..train.losses import LPIPS

        gt = heldout_patches(data)
        lq, self.target = degrade(gt, seed, degradation)
        self.lq_small = lq
        self.lq = F.interpolate(lq, size=gt.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        self.lpips = LPIPS(seed=0)

    def scores(self, x: torch.Tensor) -> dict[str, float]:
        x = x.clamp(0, 1)
        mse = ((x - self.target) ** 2).flatten(1).mean(1)
        with torch.no_grad():
            lp = self.lpips(x * 2 - 1, self.target * 2 - 1)
        return {"psnr": float((10 * torch.log10(1 / mse)).mean()), "lpips": float(lp.mean())}

    @torch.no_grad()
    def restore(self, trainer) -> torch.Tensor:
        from ..models.texture import texture_richness

        unet = trainer._net
        unet.eval()
        ctx = trainer.ema.applied() if trainer.ema is not None else contextlib.nullcontext()
        outs = []
        with ctx:
            for i in range(0, len(self.lq), 8):
                lq = self.lq[i:i + 8]
                rich = texture_richness(self.target[i:i + 8]) if trainer.cfg.model.texture else None
                outs.append((trainer.generate(lq, [""] * len(lq), rich, seed=0, unet=unet) + 1) / 2)
        unet.train()
        return torch.cat(outs).clamp(0, 1)


def run_arm(name: str, base: Path, out: Path, data: Path, args) -> dict:
    from ..config import parse
    from ..train.config import TrainConfig
    from ..train.trainer import HypirTrainer

    result_path = out / f"hypir-{name}" / "curve.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    cfg = parse(TrainConfig, {
        "model": {"base_model": str(base), "lora_rank": args.lora_rank, "posterior": "mode"},
        "data": {"source": str(data / "train"), "crop": CROP, "batch_size": args.batch},
        "degradation": {"scale": 4},
        "discriminator": {"backbone": "conv", "head_channels": 32},
        "optim": {"lr_g": args.lr, "lr_d": args.lr},
        "run": {"output_dir": str(out / f"hypir-{name}"), "steps": args.hypir_steps, "seed": args.seed,
                "ema": 0.99, "log_every": 1, "checkpoint_every": 0, "sample_every": 0, "tensorboard": False},
    })
    ev = Evaluator(data, cfg.degradation)
    trainer = HypirTrainer(cfg, progress=True)
    curve = [{"step": 0, **ev.scores(ev.restore(trainer))}]
    _log(f"{name} step 0: {curve[-1]}")

    def on_step(step, logs):
        keep = {k: logs[k] for k in ("loss_g", "mse", "lpips", "gan_g", "loss_d", "d_real", "d_fake", "gnorm_g")}
        if step % args.eval_every == 0 or step == args.hypir_steps:
            curve.append({"step": step, **ev.scores(ev.restore(trainer)), "train": keep})
            _log(f"{name} step {step}: psnr {curve[-1]['psnr']:.2f} lpips {curve[-1]['lpips']:.4f}")

    trainer.train(on_step=on_step)
    torch.save(ev.restore(trainer), out / f"hypir-{name}" / "heldout.pt")
    result_path.write_text(json.dumps(curve))
    return curve


def report(out: Path, data: Path, curves: dict, vae, degradation) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data.io import write_image

    ev = Evaluator(data, degradation)
    with torch.no_grad():
        rec = (vae.decode(vae.encode(ev.target * 2 - 1).latent_dist.mode()).sample + 1) / 2
    ref = {"bicubic": ev.scores(ev.lq), "vae_reconstruction": ev.scores(rec)}
    logs = {}
    for name in curves:
        logs[name] = [json.loads(line) for line in (out / f"hypir-{name}" / "log.jsonl").read_text().splitlines()]
    results = {"reference": ref, "curves": curves}
    (out / "results.json").write_text(json.dumps(results, indent=1))

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for name, curve in curves.items():
        steps = [c["step"] for c in curve]
        axes[0].plot(steps, [c["psnr"] for c in curve], marker="o", label=f"{name} init")
        axes[1].plot(steps, [c["lpips"] for c in curve], marker="o", label=f"{name} init")
        s = [r["step"] for r in logs[name]]
        smooth = lambda v: [sum(v[max(0, i - 24):i + 1]) / len(v[max(0, i - 24):i + 1]) for i in range(len(v))]
        axes[2].plot(s, smooth([r["d_real"] for r in logs[name]]), label=f"{name}: D(real)")
        axes[2].plot(s, smooth([r["d_fake"] for r in logs[name]]), linestyle="--", label=f"{name}: D(fake)")
        axes[3].plot(s, smooth([r["gnorm_g"] for r in logs[name]]), label=f"{name} init")
    for ax, key in zip(axes[:2], ("psnr", "lpips")):
        for rname, style in (("bicubic", ":"), ("vae_reconstruction", "-.")):
            ax.axhline(ref[rname][key], color="grey", linestyle=style, label=rname.replace("_", " "))
    for ax, title in zip(axes, ("held-out PSNR (dB, higher is better)", "held-out LPIPS substitute (lower is better)",
                                "discriminator logits (25-step mean)", "generator gradient norm (25-step mean)")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
    axes[3].set_yscale("log")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=90)

    rows = [ev.lq[:8]] + [torch.load(out / f"hypir-{n}" / "heldout.pt")[:8] for n in curves] + [ev.target[:8]]
    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)
    write_image(out / "grid.png", F.interpolate(grid[None], scale_factor=2, mode="nearest")[0])

    lines = ["| | held-out PSNR (dB) | held-out LPIPS (substitute) |", "|---|---:|---:|"]
    lines += [f"| {k.replace('_', ' ')} | {v['psnr']:.2f} | {v['lpips']:.4f} |" for k, v in ref.items()]
    for name, curve in curves.items():
        for c in curve:
            if c["step"] in (0, curve[-1]["step"]) or c is max(curve, key=lambda c: c["psnr"]):
                lines.append(f"| {name} init, step {c['step']} | {c['psnr']:.2f} | {c['lpips']:.4f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m hypir.experiments.diffusion_init", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/diffusion-init", help="output folder (stages already there are reused)")
    ap.add_argument("--vae-steps", type=int, default=1200)
    ap.add_argument("--diffusion-steps", type=int, default=2500)
    ap.add_argument("--hypir-steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--batch", type=int, default=4, help="HYPIR batch (VAE and diffusion use 16)")
    ap.add_argument("--lora-rank", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = write_data(out)
    vae = train_vae(out, data, args.vae_steps, 16, args.seed)
    _log(f"vae ready ({time.perf_counter() - t0:.0f} s)")
    bases = dict(zip(("diffusion", "random"), train_diffusion(out, data, vae, args.diffusion_steps, 16, args.seed)))
    _log(f"bases ready ({time.perf_counter() - t0:.0f} s)")
    curves = {}
    for name, base in bases.items():
        curves[name] = run_arm(name, base, out, data, args)
        _log(f"arm {name} done ({time.perf_counter() - t0:.0f} s)")
    from ..models.components import load_components
    from ..data.realesrgan import DegradationConfig

    report(out, data, curves, load_components(bases["diffusion"]).vae, DegradationConfig(scale=4))
    _log(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
