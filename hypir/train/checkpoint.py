"""Training checkpoints (shared by the HYPIR and RSD trainers): one directory per step,

    <root>/step-00000020/
        tensors.safetensors   every state tensor, under "<group>/<name>" keys
        optimizers.pt         optimizer and scheduler state dicts (read with weights_only=True)
        state.json            step, RNG states and whatever small JSON the trainer adds

written to a temporary directory and renamed into place (a crash never leaves a half-written
checkpoint under a final name), keeping the last ``keep_last``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

_STEP_DIR = re.compile(r"^step-(\d{8})$")


def step_dir(root: str | os.PathLike, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and (p / "state.json").is_file()]
    return [p for _, p in sorted(found)]


def save(root: str | os.PathLike, step: int, tensors: dict[str, dict[str, torch.Tensor]], optimizers: dict,
         state: dict, keep_last: int | None = None) -> Path:
    """Write a checkpoint atomically; ``tensors``: group -> name -> tensor."""
    from safetensors.torch import save_file

    final = step_dir(root, step)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    flat = {f"{group}/{name}": t.detach().to("cpu").contiguous() for group, d in tensors.items() for name, t in d.items()}
    save_file(flat, str(tmp / "tensors.safetensors"))
    torch.save(optimizers, tmp / "optimizers.pt")
    rng = {"torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        rng["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    (tmp / "state.json").write_text(json.dumps({"step": step, "rng": rng, **state}))
    if final.exists():  # re-saving a step: replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep_last:
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load(path: str | os.PathLike, map_location="cpu") -> tuple[dict[str, dict[str, torch.Tensor]], dict, dict]:
    """``(tensors by group, optimizers, state)`` of a checkpoint directory; restores the RNG states."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"resume: {str(path)!r} is not a checkpoint directory (no state.json)")
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in load_file(str(path / "tensors.safetensors"), device=str(map_location)).items():
        group, _, name = key.partition("/")
        tensors.setdefault(group, {})[name] = t
    optimizers = torch.load(path / "optimizers.pt", map_location=map_location, weights_only=True)
    state = json.loads((path / "state.json").read_text())
    torch.set_rng_state(torch.tensor(state["rng"]["torch"], dtype=torch.uint8))
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["rng"]["cuda"]])
    return tensors, optimizers, state


def resolve(resume: str | os.PathLike, root: str | os.PathLike) -> Path | None:
    """``"auto"``: the latest checkpoint under ``root`` (None if there is none); else the path."""
    if str(resume) == "auto":
        found = list_checkpoints(root)
        return found[-1] if found else None
    return Path(resume)
