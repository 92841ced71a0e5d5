"""Triton kernels and the registry of their ahead-of-time configurations.

Triton is optional at import time (it does not exist on macOS, for instance): every kernel module
here is imported lazily by the op that uses it. ``TRITON_INTERPRET=1`` must be set before the
first import of a kernel module, because Triton decides at decoration time whether ``@triton.jit``
builds a compiled or an interpreted kernel.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any

# Kernel modules whose configurations the AOT check and gpu_report compile.
KERNEL_MODULES = (
    "hypir_kernels.triton.blend",
    "hypir_kernels.triton.attention",
    "hypir_kernels.triton.lora",
    "hypir_kernels.triton.group_norm",
)


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreter_active() -> bool:
    """True when Triton kernels run under the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


@dataclass(frozen=True)
class AotConfig:
    """One shipped kernel configuration, compiled ahead of time by tier 3 (DESIGN §3)."""

    name: str  # readable id, e.g. "blend[gaussian,fp16,BLOCK=256]"
    kernel: Any  # the @triton.jit function
    signature: dict[str, str]  # argument -> Triton type ("*fp32", "i32", "constexpr", ...)
    constexprs: dict[str, Any] = field(default_factory=dict)
    # Arguments Triton's runtime specialisation would mark 16-divisible (pointers from torch's
    # allocator, strides of aligned layouts); the compiled code assumes it, as at run time.
    divisible_by_16: tuple[str, ...] = ()
    num_warps: int = 4
    num_stages: int = 3


def aot_configs() -> list[AotConfig]:
    """Every shipped configuration of every Triton kernel (imports the kernel modules)."""
    configs: list[AotConfig] = []
    for name in KERNEL_MODULES:
        configs.extend(importlib.import_module(name).aot_configs())
    return configs
