"""SD2 LoRA layer suite, shared by ``python -m hypir_kernels.bench`` and ``benchmarks/``.

Every layer HYPIR puts LoRA on (DESIGN §5 target modules) in the SD2.1-base UNet, at the shape
it runs at for one 256x256 image (latent 32x32, 77 text tokens): the UNet is built on the meta
device (no weights, no memory) and a forward with hooks records each targeted layer's input
shape. Layers of the same shape are timed once and weighted by their count.

For each layer: forward + backward (input and LoRA gradients; base frozen) of plain peft vs the
same peft model after :func:`hypir_kernels.lora.patch_peft` (``auto`` strategy), and the bytes
autograd saves (non-parameter tensors, via saved-tensor hooks).
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass

import torch

SD21_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True, norm_num_groups=32,
)
HYPIR_TARGETS = ("to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut", "conv_out",
                 "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")


@dataclass(frozen=True)
class Layer:
    kind: str  # "linear" or "conv"
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    @property
    def tokens(self) -> int:
        """Output positions: tokens for linear, batch x output pixels for conv."""
        if self.kind == "linear":
            n = 1
            for s in self.input_shape[:-1]:
                n *= s
            return n
        h = (self.input_shape[2] + 2 * self.padding[0] - self.weight_shape[2]) // self.stride[0] + 1
        w = (self.input_shape[3] + 2 * self.padding[1] - self.weight_shape[3]) // self.stride[1] + 1
        return self.input_shape[0] * h * w

    def describe(self) -> str:
        if self.kind == "linear":
            return f"linear {self.weight_shape[1]}->{self.weight_shape[0]} x{self.tokens} tok"
        k = f"{self.weight_shape[2]}x{self.weight_shape[3]}" + (f"/s{self.stride[0]}" if self.stride[0] > 1 else "")
        return f"conv{k} {self.weight_shape[1]}->{self.weight_shape[0]} @{self.input_shape[2]}x{self.input_shape[3]}"


def _targeted(name: str) -> bool:
    return any(name == t or name.endswith("." + t) for t in HYPIR_TARGETS)


def sd2_lora_layers(resolution: int = 256, batch: int = 1) -> Counter:
    """``Counter`` of :class:`Layer` -> how many targeted layers of SD2.1's UNet have that shape."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD21_UNET)
    seen: Counter = Counter()
    hooks = []
    for name, module in unet.named_modules():
        if not _targeted(name) or not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            continue

        def record(m, args, _out):
            shape = tuple(args[0].shape)
            if isinstance(m, torch.nn.Linear):
                seen[Layer("linear", shape, tuple(m.weight.shape))] += 1
            else:
                seen[Layer("conv", shape, tuple(m.weight.shape), tuple(m.stride), tuple(m.padding))] += 1

        hooks.append(module.register_forward_hook(record))
    latent = resolution // 8
    with torch.device("meta"), torch.no_grad():
        unet(torch.empty(batch, 4, latent, latent), torch.tensor([10] * batch), torch.empty(batch, 77, 1024))
    for h in hooks:
        h.remove()
    return seen


class _Holder(torch.nn.Module):
    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.layer = layer


def make_peft_layer(layer: Layer, rank: int, dtype=torch.float32, seed: int = 0) -> torch.nn.Module:
    """A peft-LoRA-wrapped module of ``layer``'s shape (random weights, non-zero lora_B)."""
    import peft

    g = torch.Generator().manual_seed(seed)
    if layer.kind == "linear":
        base = torch.nn.Linear(layer.weight_shape[1], layer.weight_shape[0], device="meta")
    else:
        base = torch.nn.Conv2d(layer.weight_shape[1], layer.weight_shape[0], layer.weight_shape[2:], layer.stride,
                               layer.padding, device="meta")
    base = base.to_empty(device="cpu")
    with torch.no_grad():
        base.weight.copy_(torch.randn(base.weight.shape, generator=g) / base.weight[0].numel() ** 0.5)
        base.bias.zero_()
    holder = peft.inject_adapter_in_model(
        peft.LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=["layer"]), _Holder(base))
    with torch.no_grad():
        for name, p in holder.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)
    return holder.to(dtype)


def make_input(layer: Layer, dtype=torch.float32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(layer.input_shape, generator=g).to(dtype).requires_grad_()


def step(holder: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Forward + backward of one layer (upstream gradient of ones)."""
    out = holder.layer(x)
    out.backward(torch.ones_like(out))
    return out


def saved_bytes(holder: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the non-parameter tensors autograd saves for backward in one forward."""
    params = {p.data_ptr() for p in holder.parameters()}
    total = 0

    def pack(t):
        nonlocal total
        if t.data_ptr() not in params:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        holder.layer(x)
    return total


@dataclass
class SuiteResult:
    peft_ms: float
    ours_ms: float
    peft_saved: int
    ours_saved: int
    max_err: float
    rows: list  # (Layer, count, peft ms, ours ms, strategy)

    @property
    def speedup(self) -> float:
        return self.peft_ms / self.ours_ms

    @property
    def saved_ratio(self) -> float:
        return self.ours_saved / self.peft_saved


def _strategy(layer: Layer, rank: int) -> str:
    from ..lora import choose_strategy

    taps = 1 if layer.kind == "linear" else layer.weight_shape[2] * layer.weight_shape[3]
    return choose_strategy(layer.tokens, layer.weight_shape[1], layer.weight_shape[0], rank, taps)


def run_suite(rank: int = 256, repeats: int = 3, resolution: int = 256, layers: Counter | None = None) -> SuiteResult:
    """Time every layer shape (peft and patched interleaved, median of ``repeats`` after one
    warm-up each) and total them weighted by count; check outputs and gradients agree."""
    from ..lora import patch_peft, unpatch_peft

    layers = layers if layers is not None else sd2_lora_layers(resolution)
    rows, max_err = [], 0.0
    totals = dict(peft=0.0, ours=0.0, peft_saved=0, ours_saved=0)
    for layer, count in layers.items():
        holder = make_peft_layer(layer, rank)
        x = make_input(layer)
        times: dict[str, list[float]] = {"peft": [], "ours": []}
        outputs = {}
        for i in range(repeats + 1):
            for name in ("peft", "ours"):
                (patch_peft if name == "ours" else unpatch_peft)(holder)
                x.grad = None
                holder.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                out = step(holder, x)
                dt = (time.perf_counter() - t0) * 1e3
                if i > 0:
                    times[name].append(dt)
                outputs[name] = [out.detach(), x.grad] + [p.grad for n, p in holder.named_parameters() if "lora_" in n]
        for a, b in zip(outputs["ours"], outputs["peft"]):
            max_err = max(max_err, ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item())
        unpatch_peft(holder)
        peft_saved = saved_bytes(holder, x)
        patch_peft(holder)
        ours_saved = saved_bytes(holder, x)
        p_ms, o_ms = statistics.median(times["peft"]), statistics.median(times["ours"])
        rows.append((layer, count, p_ms, o_ms, _strategy(layer, rank)))
        totals["peft"] += count * p_ms
        totals["ours"] += count * o_ms
        totals["peft_saved"] += count * peft_saved
        totals["ours_saved"] += count * ours_saved
        del holder, x, outputs
    return SuiteResult(totals["peft"], totals["ours"], totals["peft_saved"], totals["ours_saved"], max_err, rows)


def training_macs(layer: Layer, rank: int) -> dict[str, int]:
    """Multiply-adds of one forward + backward (input and LoRA gradients, base frozen) of each
    exact formulation, with K = fan_in x taps and N output positions:

    * ``peft``: base, x A^T, h B^T forward; dy W, dh = dy B, dB = dy^T h, dA = dh^T x, dh A back;
    * ``weight``: W_eff = W + sBA, x W_eff^T; dy W_eff, dW_eff = dy^T x, dA and dB from dW_eff;
    * ``mixed``: peft's forward and LoRA gradients, the input gradient as dy W_eff (W_eff formed
      once more) -- cheaper than both when N is between K out / (K + out) and out.
    """
    n = layer.tokens
    out = layer.weight_shape[0]
    k = layer.weight_shape[1] * (layer.weight_shape[2] * layer.weight_shape[3] if layer.kind == "conv" else 1)
    base, w_eff, lora_pass = n * k * out, k * out * rank, n * rank * (k + out)
    return {
        "peft": 2 * base + 3 * lora_pass,
        "weight": 3 * base + 3 * w_eff,
        "mixed": 2 * base + lora_pass + n * out * rank * 2 + n * rank * k + w_eff,
    }


def work_bound(layers: Counter, rank: int) -> float:
    """peft's multiply-adds over those of the cheapest exact formulation per layer: the speedup a
    compute-bound implementation can reach at equal efficiency."""
    peft = best = 0
    for layer, count in layers.items():
        macs = training_macs(layer, rank)
        peft += count * macs["peft"]
        best += count * min(macs.values())
    return peft / best


def format_suite(result: SuiteResult) -> str:
    lines = [f"| {'layer':<36} | {'count':>5} | {'peft ms':>8} | {'ours ms':>8} | {'speedup':>7} | strategy |",
             f"|{'-' * 38}|{'-' * 7}|{'-' * 10}|{'-' * 10}|{'-' * 9}|----------|"]
    for layer, count, p_ms, o_ms, strategy in result.rows:
        lines.append(f"| {layer.describe():<36} | {count:>5} | {p_ms:8.2f} | {o_ms:8.2f} | {p_ms / o_ms:6.2f}x | {strategy} |")
    lines.append(f"total (count-weighted): peft {result.peft_ms:.0f} ms, ours {result.ours_ms:.0f} ms, "
                 f"speedup {result.speedup:.2f}x; saved bytes {result.ours_saved / 2**20:.1f} MiB vs "
                 f"{result.peft_saved / 2**20:.1f} MiB ({result.saved_ratio:.2f}x); max rel. diff {result.max_err:.1e}")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m hypir_kernels.bench.lora [rank]
    import sys

    rank = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    print(format_suite(run_suite(rank)))
    print(f"multiply-add bound (peft / cheapest exact formulation per layer): {work_bound(sd2_lora_layers(), rank):.3f}x "
          f"at 256 px, {work_bound(sd2_lora_layers(512), rank):.3f}x at 512 px")
