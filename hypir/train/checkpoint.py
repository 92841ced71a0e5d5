"""Training checkpoints (shared by the HYPIR and RSD trainers): one directory per step,

    <root>/step-00000020/
        tensors.safetensors   every state tensor, under "<group>/<name>" keys
        optimizers.pt         optimizer and scheduler state dicts (read with weights_only=True)
        state.json            step, RNG states and whatever small JSON the trainer adds

written to a temporary directory, fsynced and renamed into place (:func:`hypir.files.atomic_directory`:
a kill -9 or a full disk never leaves a half-written checkpoint under a final name), keeping the
last ``keep_last``. ``--resume auto`` takes the newest complete one.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from ..files import FileFormatError, atomic_directory, atomic_write, read_state_dict, read_torch, remove_stale

_STEP_DIR = re.compile(r"^step-(\d{8})$")


def step_dir(root: str | os.PathLike, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


_FILES = ("tensors.safetensors", "optimizers.pt", "state.json")


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``root`` (all three files present), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and all((p / f).is_file() for f in _FILES)]
    return [p for _, p in sorted(found)]


def save(root: str | os.PathLike, step: int, tensors: dict[str, dict[str, torch.Tensor]], optimizers: dict,
         state: dict, keep_last: int | None = None) -> Path:
    """Write a checkpoint atomically; ``tensors``: group -> name -> tensor."""
    from safetensors.torch import save_file

    remove_stale(root)  # what a killed run left half-written
    final = step_dir(root, step)
    flat = {f"{group}/{name}": t.detach().to("cpu").contiguous() for group, d in tensors.items() for name, t in d.items()}
    rng = {"torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        rng["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    with atomic_directory(final) as tmp:
        save_file(flat, str(tmp / "tensors.safetensors"))
        torch.save(optimizers, tmp / "optimizers.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "rng": rng, **state}))
    if keep_last:
        for old in list_checkpoints(root)[:-keep_last]:
            # renamed first: a kill during the removal leaves a hidden folder, not a damaged checkpoint
            doomed = old.with_name(f".{old.name}.old-{os.getpid()}")
            os.replace(old, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
    return final


def load(path: str | os.PathLike, map_location="cpu") -> tuple[dict[str, dict[str, torch.Tensor]], dict, dict]:
    """``(tensors by group, optimizers, state)`` of a checkpoint directory; restores the RNG states.
    A damaged file in it raises :class:`hypir.files.FileFormatError` naming it."""
    path = Path(path)
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"resume: {str(path)!r} is not a checkpoint directory (no state.json)")
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in read_state_dict(path / "tensors.safetensors", "resume", device=map_location).items():
        group, _, name = key.partition("/")
        tensors.setdefault(group, {})[name] = t
    optimizers = read_torch(path / "optimizers.pt", "resume", "optimizer states written by torch.save", map_location)
    try:
        state = json.loads((path / "state.json").read_text())
        rng_torch = torch.tensor(state["rng"]["torch"], dtype=torch.uint8)
        int(state["step"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise FileFormatError("resume", path / "state.json", "the JSON state of a checkpoint",
                              f"a damaged file ({type(e).__name__}: {e})") from None
    torch.set_rng_state(rng_torch)
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["rng"]["cuda"]])
    return tensors, optimizers, state


def resolve(resume: str | os.PathLike, root: str | os.PathLike) -> Path | None:
    """``"auto"``: the newest complete checkpoint under ``root`` (None if there is none); else the path."""
    if str(resume) == "auto":
        found = list_checkpoints(root)
        return found[-1] if found else None
    return Path(resume)


def trim_log(path: str | os.PathLike, step: int) -> None:
    """Keep the records of ``log.jsonl`` up to ``step``, the step a run resumes from: the steps after
    it are run (and logged) again, and a kill may have cut the last line short."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line)
    with atomic_write(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))
