"""Versions, extension build and backend choices: ``hk.info()`` and ``python -m hypir_kernels.info``."""
from __future__ import annotations

import torch

from . import __version__, _extension, backend


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def collect() -> dict:
    ops = {}
    for name, op in sorted(backend.REGISTRY.items()):
        row = {}
        for device in ("cpu", "cuda"):
            try:
                row[device] = backend.select(op, device)
            except RuntimeError as exc:  # a forced backend that cannot run there
                row[device] = f"error: {exc}"
        row["implemented"] = list(op.impls)
        if op.kernel_op:
            row["registered"] = [k for k in ("CPU", "CUDA") if _extension.has_kernel(op.kernel_op, k)]
        ops[name] = row
    return {
        "hypir_kernels": __version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": _triton_version(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "extension_cpu": _extension.cpu_available(),
        "extension_cuda": _extension.cuda_built(),
        "extension_cuda_archs": _extension.cuda_archs(),
        "extension_error": None if _extension.import_error() is None else str(_extension.import_error()),
        "forced_backend": backend.forced_backend(),
        "cpu_output_cache_bytes": _extension.cpu_cache_bytes(),
        "ops": ops,
        "attention_auto": _attention_table(),
    }


def _attention_table() -> dict:
    """What ``attention(backend="auto")`` picks for the SD2.1 shapes on this machine's device
    (or on an H100-class sm_90 device when there is none), forward and training."""
    from .attention_op import choose_attention_backend

    device, cap = ("cuda", torch.cuda.get_device_capability()) if torch.cuda.is_available() else ("cuda", (9, 0))
    table = {}
    for name, sq, sk in (("512px self 4096", 4096, 4096), ("512px self 1024", 1024, 1024), ("512px cross 4096x77", 4096, 77),
                         ("1024px self 16384", 16384, 16384), ("1024px self 256", 256, 256)):
        for training in (False, True):
            key = f"{name} {'fwd+bwd' if training else 'fwd'} bf16 sm_{cap[0]}{cap[1]}"
            table[key] = choose_attention_backend(device, cap, torch.bfloat16, 64, sq, sk, training)
    table["CPU tensors"] = choose_attention_backend("cpu", None, torch.float32, 64, 4096, 4096, False)
    return table


def format_info(data: dict) -> str:
    lines = [
        f"hypir_kernels {data['hypir_kernels']}",
        f"torch         {data['torch']} (CUDA {data['torch_cuda']})",
        f"triton        {data['triton']}",
        f"CUDA device   {data['cuda_device'] or 'none'}",
        f"extension     CPU part: {'built' if data['extension_cpu'] else 'missing'}; "
        f"CUDA part: {'built for ' + ', '.join(data['extension_cuda_archs']) if data['extension_cuda'] else 'not built'}",
    ]
    if data["extension_error"]:
        lines.append(f"              import error: {data['extension_error']}")
    lines.append(f"forced        {data['forced_backend'] or 'none (automatic)'}")
    lines.append(f"CPU out cache {data['cpu_output_cache_bytes'] / 2**20:.1f} MiB held")
    lines.append("")
    width = max([len("op")] + [len(name) for name in data["ops"]]) + 2
    lines.append(f"{'op':<{width}}{'CPU tensors':<14}{'CUDA tensors':<14}{'C++ registered':<16}implemented")
    for name, row in data["ops"].items():
        reg = ",".join(row.get("registered", [])) or "-"
        lines.append(f"{name:<{width}}{row['cpu']:<14}{row['cuda']:<14}{reg:<16}{','.join(row['implemented'])}")
    lines.append("")
    lines.append("attention(backend='auto') on SD2.1 shapes:")
    for case, choice in data["attention_auto"].items():
        lines.append(f"  {case:<40}{choice}")
    return "\n".join(lines)


def main() -> None:
    print(format_info(collect()))


if __name__ == "__main__":
    main()
