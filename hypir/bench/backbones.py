"""A LoRA training step of the transformer backbones (issue 24): SD3 and Flux.1 denoisers at
reduced width with HYPIR's LoRA on every block layer (:data:`hypir.models.lora.BACKBONE_TARGETS`),
forward + backward of the generator's loss, ours (peft layers run by hypir_kernels' fused linear
LoRA, ``patch_peft``) against the same model with peft's own layers; same weights, inputs and
attention (diffusers' stock processor on both sides).

    python -m hypir.bench.backbones [--width 256 --layers 2 --rank 64 --latent 32 --batch 2 --repeats 7]
    pytest benchmarks/test_backbone_lora_step.py --benchmark-only
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ..models.lora import BACKBONE_TARGETS, LoraSpec, add_lora
from ..testing import randomize_lora, tiny_transformer, transformer_inputs

BACKBONES = ("sd3", "flux")
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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m hypir.bench.backbones", description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
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


if __name__ == "__main__":
    main()
