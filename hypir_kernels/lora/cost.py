"""Which strategy runs a LoRA layer: the estimated time (multiply-adds / peak + bytes / bandwidth)
of the ``activation`` and ``weight`` strategies per device (the model is in the package docstring)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

STRATEGIES = ("auto", "activation", "weight")


@dataclass(frozen=True)
class Device:
    """Rough machine figures for :func:`choose_strategy`: multiply-adds per second by element
    size and bytes per second. Ratios matter, not absolute values."""

    macs_per_s: dict
    bytes_per_s: float
    # Rate of k x k (k > 1) convolutions relative to GEMMs of the same multiply-adds: oneDNN's
    # CPU convolutions (Winograd / direct kernels) run 3x3 layers ~2.5x faster than the GEMM count
    # says (measured on the SD2 suite: 944M-MAC conv in 10 ms vs 36 GMAC/s for sgemm).
    conv_speedup: float = 1.0


DEVICES = {
    "cpu": Device({4: 4e10, 8: 2e10, 2: 1e10}, 1e10, conv_speedup=2.5),  # few-core AVX2/AVX-512 server
    "cuda": Device({4: 2.5e13, 8: 3e13, 2: 4e14}, 2e12),  # A100/H100 class: tensor cores for 16-bit
}


def strategy_costs(n: int, fan_in: int, fan_out: int, rank: int, taps: int = 1, elem_bytes: int = 4,
                   device: str = "cpu", training: bool = True) -> dict[str, float]:
    """Estimated seconds of the LoRA work each strategy adds to the base layer.

    ``n`` output positions (tokens, or batch x output pixels), ``fan_in``/``fan_out`` channels,
    ``taps`` kernel taps (``kh * kw``; 1 for linear), ``rank`` r.
    """
    dev = DEVICES["cuda" if device == "cuda" else "cpu"]
    peak = dev.macs_per_s.get(elem_bytes, dev.macs_per_s[4])
    conv = dev.conv_speedup if taps > 1 else 1.0  # GEMM-equivalent cost of a k x k convolution MAC
    w_elems = fan_out * fan_in * taps
    passes = 3 if training else 1  # forward; backward: input and weight gradient of each product
    # activation: conv/linear with A (x -> h) and the 1x1/linear with B (h -> out), each pass
    act_macs = passes * n * rank * (fan_in * taps / conv + fan_out)
    act_bytes = elem_bytes * ((n * fan_in + 6 * n * rank) if training else 2 * n * rank)  # x re-read; h, g
    if training:  # W_eff formed twice, dA and dB from dW_eff (GEMMs); dW_eff itself (base-shaped conv)
        weight_macs = 4 * w_elems * rank + n * w_elems / conv
        weight_bytes = elem_bytes * 6 * w_elems
    else:
        weight_macs = w_elems * rank
        weight_bytes = elem_bytes * 2 * w_elems
    return {
        "activation": act_macs / peak + act_bytes / dev.bytes_per_s,
        "weight": weight_macs / peak + weight_bytes / dev.bytes_per_s,
    }


def choose_strategy(n: int, fan_in: int, fan_out: int, rank: int, taps: int = 1, elem_bytes: int = 4,
                    device: str = "cpu", training: bool = True, dropout_p: float = 0.0) -> str:
    """The strategy ``auto`` picks: the cheaper by :func:`strategy_costs`; ``activation`` when
    dropout is on (the weight strategy cannot express it). Memoised per shape (a call is on the
    host-time path of every patched layer)."""
    if dropout_p > 0:
        return "activation"
    return _cheaper_strategy(n, fan_in, fan_out, rank, taps, elem_bytes, device, training)


@functools.lru_cache(maxsize=4096)
def _cheaper_strategy(n, fan_in, fan_out, rank, taps, elem_bytes, device, training) -> str:
    costs = strategy_costs(n, fan_in, fan_out, rank, taps, elem_bytes, device, training)
    return "weight" if costs["weight"] < costs["activation"] else "activation"
