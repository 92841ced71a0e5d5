"""HYPIR on each backbone at reduced width (issue 24), ours against the same work built with
peft's LoRA layers and diffusers' stock modules (same weights, inputs, draws and attention):

* ``lora``: the LoRA training step of the SD3 and Flux.1 denoisers alone (forward + backward of the
  generator's loss; HYPIR's LoRA on every block layer, :data:`hypir.models.lora.BACKBONE_TARGETS`);
  ours = peft's layers run by hypir_kernels' fused linear LoRA (``patch_peft``).
* ``train``: a whole ``hypir train`` step (generator + discriminator, degradation included) per
  backbone (:func:`hypir.bench.train.build`: "ours" vs "peft", the LoRA layers the only difference).
* ``restore``: a whole restoration per backbone: ours = the default preset (LoRA merged, fused
  GroupNorm+SiLU in the VAE, channels-last) vs the same pipeline with peft's unmerged layers and
  diffusers' stock modules in torch's default layout; fp32 both.

    python -m hypir.bench.backbones [--what lora,train,restore] [--width 256 --layers 2 --rank 64 ...]
    pytest benchmarks/test_backbone_lora_step.py benchmarks/test_backbone_pipelines.py --benchmark-only
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ..models.lora import BACKBONE_TARGETS, LoraSpec, add_lora
from ..testing import randomize_lora, tiny_transformer, transformer_inputs

BACKBONES = ("sd3", "flux")
ALL_BACKBONES = ("sd2", "sdxl", "sd3", "flux")
TEXT_TOKENS = 77


def build(backbone: str, variant: str, width: int = 256, layers: int = 2, rank: int = 64, seed: int = 0):
    """The model with its adapter; ``variant`` "ours" patches it with hypir_kernels, "peft" does not.
    Rank 64: the paper's (the SD2 release used 256)."""
    from hypir_kernels.lora import patch_peft

    if variant not in ("ours", "peft"):
        raise ValueError(f"variant: expected 'ours' or 'peft', got {variant!r}")
    model = tiny_transformer(backbone, seed=seed, width=width, layers=layers, heads=max(width // 64, 1),
                             text_width=width)
    add_lora(model, LoraSpec(rank=rank, targets=BACKBONE_TARGETS[backbone]))
    randomize_lora(model, seed=seed)
    if variant == "ours":
        patch_peft(model)
    return model


def inputs(backbone: str, width: int = 256, latent: int = 32, batch: int = 2) -> dict:
    return transformer_inputs(backbone, batch=batch, latent=latent, tokens=TEXT_TOKENS, text_width=width)


def step(model, kwargs) -> float:
    """Forward + backward of a regression loss on the output (the generator's MSE term); its value."""
    model.zero_grad(set_to_none=True)
    loss = model(**kwargs).sample.float().square().mean()
    loss.backward()
    return float(loss.detach())


def train_trainers(backbone: str, out: str, size: int = 128, batch: int = 2, rank: int = 64) -> dict:
    """"ours" and "peft" trainers of ``backbone`` at the benchmark's widths: UNets 64 (VAE 32, as
    ``hypir.bench.train``), transformers 256 with 2 blocks of each kind and a VAE 16 wide, so the
    denoiser's share of the step stays near a real model's (Flux.1: 12 B transformer, 84 M VAE)."""
    from .train import build as build_trainer

    transformer = backbone in BACKBONES
    width, vae = (256, 16) if transformer else (64, 32)
    return {v: build_trainer(v, f"{out}/{v}", width, rank, size, batch, backbone=backbone, vae_width=vae)
            for v in ("ours", "peft")}


def restorers(backbone: str, out: str, rank: int = 64, seed: int = 0) -> dict:
    """"ours" and "peft" restorers of one random-weight ``backbone`` model with a non-zero LoRA
    (widths as :func:`train_trainers`), fp32, on the CPU."""
    import dataclasses

    from ..models.lora import LoraSpec, save_checkpoint, targets_for
    from ..pipelines.presets import get_preset
    from ..pipelines.restorer import Restorer
    from ..testing import tiny_backbone_components, trained_like_unet

    transformer = backbone in BACKBONES
    widths = dict(unet_width=256 if transformer else 64, vae_width=32, text_width=64, sample_size=16,
                  heads=4 if transformer else 2)
    components = tiny_backbone_components(backbone, f"{out}/tok", seed=seed, **widths)
    base = components.save_pretrained(f"{out}/model")
    trained_like_unet(components, LoraSpec(rank=rank, targets=targets_for(components.denoiser)), seed=seed)
    weights = save_checkpoint(components.denoiser, f"{out}/hypir.safetensors")
    stock = dataclasses.replace(get_preset("default"), merge=False, fused_group_norm=False, channels_last=False)
    return {"ours": Restorer.from_pretrained(base, weights, device="cpu", dtype="fp32"),
            "peft": Restorer.from_pretrained(base, weights, device="cpu", dtype="fp32", preset=stock)}


def _interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each callable, run round by round (a noisy machine's drift hits all alike)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m hypir.bench.backbones", description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--what", default="lora,train,restore", help="comma-separated: lora, train, restore, sizes")
    a = p.parse_args(argv)
    what = set(a.what.split(","))
    if "sizes" in what:
        _sizes()
    if "train" in what or "restore" in what:
        _pipelines(what, a.repeats)
    if "lora" in what:
        _lora(a)


def _pipelines(what: set, repeats: int) -> None:
    import tempfile

    from .train import batches

    print(f"whole steps per backbone (reduced width: UNets 64, transformers 256 x 2+2 blocks; LoRA rank 64; fp32), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for backbone in ALL_BACKBONES:
        with tempfile.TemporaryDirectory() as tmp:
            if "train" in what:
                trainers = train_trainers(backbone, f"{tmp}/train")
                data = batches(trainers["ours"], 1)
                med = _interleaved({k: (lambda t=t: t.train_step(1, data)) for k, t in trainers.items()}, repeats)
                print(f"{backbone:5s} train step (G + D, 2 x 128 px)  ours {med['ours'] * 1e3:8.1f} ms  "
                      f"peft {med['peft'] * 1e3:8.1f} ms  speed-up {med['peft'] / med['ours']:.2f}x")
            if "restore" in what:
                rs = restorers(backbone, f"{tmp}/restore")
                image = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(0))
                med = _interleaved({k: (lambda r=r: r(image, upscale=2)) for k, r in rs.items()}, repeats)
                print(f"{backbone:5s} restore 128x96 x2              ours {med['ours'] * 1e3:8.1f} ms  "
                      f"peft {med['peft'] * 1e3:8.1f} ms  speed-up {med['peft'] / med['ours']:.2f}x")


def _sizes() -> None:
    print("| backbone | denoiser | text encoders | VAE | LoRA r64 | bf16 weights (all parts) | bf16 without text encoders |")
    print("|---|---|---|---|---|---|---|")
    for backbone, n in released_sizes().items():
        total = sum(n.values())
        print(f"| {backbone} | {n['denoiser'] / 1e9:.2f} B | {n['text'] / 1e9:.2f} B | {n['vae'] / 1e6:.0f} M | "
              f"{n['lora'] / 1e6:.0f} M | {2 * total / 2**30:.1f} GiB | {2 * (total - n['text']) / 2**30:.1f} GiB |")


def _lora(a) -> None:
    print(f"LoRA training step (fwd + bwd), width {a.width}, {a.layers} layers, rank {a.rank}, batch {a.batch}, "
          f"{a.latent}x{a.latent} latent, {TEXT_TOKENS} text tokens, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for backbone in BACKBONES:
        models = {v: build(backbone, v, a.width, a.layers, a.rank) for v in ("ours", "peft")}
        kwargs = inputs(backbone, a.width, a.latent, a.batch)
        losses = {v: step(m, kwargs) for v, m in models.items()}  # warm-up, and the same loss on both sides
        times: dict[str, list[float]] = {v: [] for v in models}
        for _ in range(a.repeats):  # interleaved: a noisy machine's drift hits both alike
            for v, m in models.items():
                t0 = time.perf_counter()
                step(m, kwargs)
                times[v].append(time.perf_counter() - t0)
        med = {v: statistics.median(t) * 1e3 for v, t in times.items()}
        print(f"{backbone:5s} ours {med['ours']:8.1f} ms  peft {med['peft']:8.1f} ms  speed-up {med['peft'] / med['ours']:.2f}x"
              f"  (loss ours {losses['ours']:.6f}, peft {losses['peft']:.6f})")



# ---- sizes of the released models (for the README's backbone table) -----------------------------

_CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, projection_dim=768)
_OPENCLIP_H = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16, projection_dim=512)
_OPENCLIP_BIGG = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                      projection_dim=1280)
_T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
               feed_forward_proj="gated-gelu", is_encoder_decoder=False)
_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2)
# The published configs of each backbone's parts (diffusers/transformers kwargs): SD2.1, SDXL base
# 1.0, SD3.5 Large, Flux.1 [dev].
RELEASED = {
    "sd2": dict(
        denoiser=("UNet2DConditionModel", dict(block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
                                               cross_attention_dim=1024, use_linear_projection=True, layers_per_block=2)),
        text=[("CLIPTextModel", _OPENCLIP_H)], vae=dict(_VAE, latent_channels=4)),
    "sdxl": dict(
        denoiser=("UNet2DConditionModel", dict(
            block_out_channels=(320, 640, 1280), layers_per_block=2, transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)),
        text=[("CLIPTextModel", _CLIP_L), ("CLIPTextModelWithProjection", _OPENCLIP_BIGG)], vae=dict(_VAE, latent_channels=4)),
    "sd3": dict(
        denoiser=("SD3Transformer2DModel", dict(
            sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=38, attention_head_dim=64,
            num_attention_heads=38, joint_attention_dim=4096, caption_projection_dim=2432, pooled_projection_dim=2048,
            pos_embed_max_size=192, qk_norm="rms_norm")),
        text=[("CLIPTextModelWithProjection", _CLIP_L), ("CLIPTextModelWithProjection", _OPENCLIP_BIGG),
              ("T5EncoderModel", _T5_XXL)],
        vae=dict(_VAE, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)),
    "flux": dict(
        denoiser=("FluxTransformer2DModel", dict(
            patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
            num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
            axes_dims_rope=(16, 56, 56))),
        text=[("CLIPTextModel", _CLIP_L), ("T5EncoderModel", _T5_XXL)],
        vae=dict(_VAE, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)),
}


def released_sizes(rank: int = 64) -> dict[str, dict[str, int]]:
    """Parameter counts of each backbone's released parts, built on the meta device from
    :data:`RELEASED` (no weights, no download): denoiser, text encoders, VAE, and HYPIR's LoRA at
    ``rank`` on :data:`hypir.models.lora.BACKBONE_TARGETS`."""
    import diffusers
    import transformers

    def count(module):
        return sum(p.numel() for p in module.parameters())

    out = {}
    for backbone, parts in RELEASED.items():
        with torch.device("meta"):
            cls, cfg = parts["denoiser"]
            denoiser = getattr(diffusers, cls)(**cfg)
            text = 0
            for cls_name, cfg_text in parts["text"]:
                config = (transformers.T5Config if cls_name == "T5EncoderModel" else transformers.CLIPTextConfig)(**cfg_text)
                text += count(getattr(transformers, cls_name)(config))
            vae = count(diffusers.AutoencoderKL(**parts["vae"]))
            n_denoiser = count(denoiser)
            add_lora(denoiser, LoraSpec(rank=rank, targets=BACKBONE_TARGETS[backbone]))
            lora = count(denoiser) - n_denoiser
        out[backbone] = {"denoiser": n_denoiser, "text": text, "vae": vae, "lora": lora}
    return out


if __name__ == "__main__":
    main()
