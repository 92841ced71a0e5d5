"""Every file the model layer reads or writes goes through here (issue 28).

Reading: :func:`read_state_dict` / :func:`read_torch` choose the reader by the file's *content*
(safetensors header, torch zip archive, pickle), never only by its suffix; pickles load with
``weights_only=True``, so a file carrying code is refused without running it. Whatever goes wrong
-- a truncated or damaged file, the wrong format, a checkpoint with missing, unexpected or
mis-shaped keys -- raises :class:`FileFormatError` (a ``ValueError``) whose message is one line:
what the file was for, the file, what was expected, what was found. The command line prints that
line and exits 2.

Writing: :func:`atomic_write` writes to a temporary name in the target's folder, fsyncs it and
renames it into place, so a kill or a full disk never leaves a half-written file under the final
name (the previous file, if any, is kept); :func:`atomic_directory` does the same for a folder of
files (training checkpoints).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import re
import shutil
import struct
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

SAFETENSORS, TORCH_ZIP, PICKLE, EMPTY, UNKNOWN = "safetensors", "torch-zip", "pickle", "empty", "unknown"
_DESCRIBE = {SAFETENSORS: "a safetensors file", TORCH_ZIP: "a torch.save zip archive", PICKLE: "a pickle",
             EMPTY: "an empty file"}
STATE_DICT = "a state dict of tensors (.safetensors, or a .pth/.pt saved with torch.save)"


class FileFormatError(ValueError):
    """A file is not what it should be. ``str(e)`` is one line:
    ``"<what>: <path>: expected <expected>; found <found>"``."""

    def __init__(self, what: str, path: str | os.PathLike, expected: str, found: str):
        self.what, self.path, self.expected, self.found = what, str(path), expected, found
        super().__init__(f"{what}: {str(path)!r}: expected {expected}; found {_one_line(found)}")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def detect_format(path: str | os.PathLike) -> str:
    """``"safetensors"``, ``"torch-zip"``, ``"pickle"``, ``"empty"`` or ``"unknown"``, from the
    first bytes of the file (a safetensors file starts with its header length, then ``{``)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if not head:
        return EMPTY
    if head[:4] == b"PK\x03\x04":
        return TORCH_ZIP
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return PICKLE
    if len(head) == 9 and head[8:9] == b"{":
        return SAFETENSORS
    return UNKNOWN


def _found(path: Path, kind: str) -> str:
    if kind != UNKNOWN:
        return _DESCRIBE[kind]
    with open(path, "rb") as f:
        head = f.read(16)
    return f"a file of another kind ({path.stat().st_size} bytes, starting {head!r})"


def _require_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file {str(path)!r}")
    return path


def _check_safetensors(path: Path, what: str, expected: str) -> dict:
    """The parsed header of a safetensors file, after checking that the file holds every byte the
    header promises (a truncated file is named as such, not left to the reader's message)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if 8 + n > size:
            raise FileFormatError(what, path, expected, f"a truncated safetensors file ({size} bytes; its header "
                                                        f"alone needs {8 + n})")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FileFormatError(what, path, expected, f"a damaged safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise FileFormatError(what, path, expected, "a damaged safetensors header (not a mapping)")
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise FileFormatError(what, path, expected, "a damaged safetensors header (bad data_offsets)") from None
    if 8 + n + end > size:
        raise FileFormatError(what, path, expected, f"a truncated safetensors file ({size} bytes of {8 + n + end})")
    return header


def check_safetensors(path: str | os.PathLike, what: str, expected: str = "a safetensors file") -> None:
    """Check, without loading it, that a file is a complete safetensors file (a header that parses
    and every byte it promises); else a :class:`FileFormatError`."""
    safetensors_metadata(path, what, expected)


def safetensors_metadata(path: str | os.PathLike, what: str, expected: str = "a safetensors file") -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (``{}`` when it has none); any other kind of file,
    or a damaged one, is a :class:`FileFormatError`."""
    path = _require_file(path, what)
    kind = detect_format(path)
    if kind != SAFETENSORS:
        raise FileFormatError(what, path, expected, _found(path, kind))
    meta = _check_safetensors(path, what, expected).get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise FileFormatError(what, path, expected, "a damaged safetensors header (bad __metadata__)")
    return meta


def read_torch(path: str | os.PathLike, what: str, expected: str = "a file written by torch.save",
               map_location="cpu") -> Any:
    """``torch.load(path, weights_only=True)`` of a torch zip archive or a pickle, with every failure
    -- a pickle holding code or other objects (never run), a truncated archive, another format --
    as a :class:`FileFormatError`."""
    path = _require_file(path, what)
    kind = detect_format(path)
    if kind not in (TORCH_ZIP, PICKLE):
        raise FileFormatError(what, path, expected, _found(path, kind))
    try:
        # an open file, not the path: torch.load hands a path ending in .safetensors to safetensors
        with warnings.catch_warnings(), open(path, "rb") as f:
            warnings.simplefilter("ignore")
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is a paragraph; the line after "WeightsUnpickler error:" says what was refused
        detail = re.search(r"unsupported GLOBAL \S+|WeightsUnpickler error:\s*(.+)", str(e), re.IGNORECASE)
        detail = f" ({(detail.group(1) or detail.group(0)).strip()})" if detail else ""
        raise FileFormatError(what, path, expected, "a pickle holding objects other than tensors and containers "
                                                    f"(code, classes); refused, nothing in it was run{detail}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, struct.error, UnicodeDecodeError,
            AttributeError, IndexError, TypeError, OverflowError, MemoryError) as e:
        first = re.split(r"(?<=\.)\s", str(e).strip(), maxsplit=1)[0] if str(e).strip() else type(e).__name__
        noun = {TORCH_ZIP: "torch.save zip archive", PICKLE: "pickle"}[kind]
        raise FileFormatError(what, path, expected, f"a truncated or damaged {noun} ({first})") from None


def read_state_dict(path: str | os.PathLike, what: str = "weights", device="cpu") -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` state dict from a safetensors file or a torch/pickle file, chosen by
    content. Anything else is a :class:`FileFormatError`."""
    path = _require_file(path, what)
    kind = detect_format(path)
    if kind == SAFETENSORS:
        _check_safetensors(path, what, STATE_DICT)
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device=str(device))
        except Exception as e:  # safetensors raises its own error types; the header checks above catch most
            raise FileFormatError(what, path, STATE_DICT, f"a damaged safetensors file ({e})") from None
    elif kind in (TORCH_ZIP, PICKLE):
        state = read_torch(path, what, STATE_DICT, map_location=device)
    else:
        raise FileFormatError(what, path, STATE_DICT, _found(path, kind))
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise FileFormatError(what, path, STATE_DICT, f"{_DESCRIBE[kind]} holding a {type(state).__name__}, "
                                                      "not a state dict (a flat mapping of names to tensors)")
    return state


def _listing(keys: list[str], limit: int = 3) -> str:
    return f"{len(keys)} ({', '.join(keys[:limit])}{', ...' if len(keys) > limit else ''})"


def check_keys(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], what: str,
               path: str | os.PathLike, wanted: str) -> None:
    """Raise a :class:`FileFormatError` naming the missing, unexpected and mis-shaped keys of
    ``state`` against ``expected`` (name -> shape); ``wanted`` says what the file should be."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state) if tuple(expected[k]) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        problems = []
        if missing:
            problems.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_listing(unexpected)}")
        if shapes:
            problems.append("shape mismatches: " + _listing([f"{k} {tuple(state[k].shape)} vs {tuple(expected[k])}"
                                                        for k in shapes]))
        raise FileFormatError(what, path, wanted, "; ".join(problems))


# ---- writing ------------------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened for fsync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_failed(path: Path, e: BaseException) -> OSError:
    why = getattr(e, "strerror", None) or str(e) or type(e).__name__
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or any(
            s in why for s in ("File too large", "No space left", "unexpected pos")):  # the last: torch.save's
        why = "the disk is full or a file-size limit was reached"
    kept = "the previous file is kept" if path.exists() else "nothing was left under that name"
    err = OSError(f"could not write {str(path)!r}: {_one_line(why, 200)}; {kept}")
    err.errno = getattr(e, "errno", None)
    return err


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_write(path) as tmp: <write tmp>``: on success ``tmp`` is fsynced and renamed to
    ``path`` (the folder is created if needed); on any error ``tmp`` is removed, ``path`` keeps its
    previous content, and an ``OSError`` names the file (a full disk or ``ulimit -f`` included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, (KeyboardInterrupt, SystemExit, ValueError, TypeError)):
            raise
        raise _write_failed(path, e) from e
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_write` for a folder: the files written into the yielded temporary folder
    are fsynced, then the folder is renamed to ``path`` (replacing an older one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        for f in tmp.iterdir():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if path.exists():  # re-saving: move the old one aside first, so a kill never leaves neither
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (KeyboardInterrupt, SystemExit, ValueError, TypeError)):
            raise
        raise _write_failed(path, e) from e
    _fsync_dir(path.parent)


def remove_stale(folder: str | os.PathLike) -> None:
    """Remove the temporary files and folders that a killed writer left in ``folder`` (names
    ``.<name>.tmp-<pid>`` / ``.<name>.old-<pid>`` of processes no longer running)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        name, sep, pid = p.name.rpartition("-")
        if not (p.name.startswith(".") and sep and pid.isdigit() and (name.endswith(".tmp") or name.endswith(".old"))):
            continue
        if int(pid) != os.getpid() and _running(int(pid)):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file (``.safetensors``) or a ``torch.save`` of a plain dict (``.pth``/``.pt``),
    written atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    if path.suffix not in (".safetensors", ".pth", ".pt"):
        raise ValueError(f"path: expected a .safetensors, .pth or .pt file name, got {str(path)!r}")
    with atomic_write(path) as tmp:
        if path.suffix == ".safetensors":
            save_file(tensors, str(tmp), metadata=metadata)
        else:
            torch.save(tensors, tmp)
    return path


__all__ = ["FileFormatError", "atomic_directory", "atomic_write", "check_keys", "check_safetensors", "detect_format", "read_state_dict",
           "read_torch", "remove_stale", "safetensors_metadata", "save_tensors"]
