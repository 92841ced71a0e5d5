"""Backend selection for every op in :mod:`hypir_kernels`.

Backends (DESIGN §2):

* ``cuda``      C++/CUDA kernels from ``hypir_kernels._C`` on CUDA tensors; for an op registered
                without a ``kernel_op`` (MRI, down-sampling), a torch composition tuned for the
                device that needs no extension.
* ``cpu``       C++ kernels from ``hypir_kernels._C`` on CPU tensors (likewise).
* ``triton``    Triton kernels on CUDA tensors; on CPU tensors only when the process started with
                ``TRITON_INTERPRET=1`` (this is how tests run Triton kernels without a GPU).
* ``reference`` the pure-torch reference in :mod:`hypir_kernels.reference`, on any device.

Automatic choice by the device of the input: CUDA tensors take ``cuda``, else ``triton``, else
``reference``; CPU tensors take ``cpu``, else ``reference``. A backend is forced for the ops that
implement it with the environment variable ``HYPIR_KERNELS_BACKEND`` or, taking precedence, the
context manager :func:`use_backend`. Ops that do not implement the forced backend keep the
automatic choice; forcing a backend an op implements but cannot run on the given device raises.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from . import _extension
from .triton import interpreter_active, triton_available

BACKENDS = ("cuda", "cpu", "triton", "reference")
ENV_VAR = "HYPIR_KERNELS_BACKEND"

_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar("hypir_kernels_backend", default=None)


def _check_name(name: str | None, what: str) -> str | None:
    if name is None or name == "" or name == "auto":
        return None
    if name not in BACKENDS:
        raise ValueError(f"{what}: unknown backend {name!r}; expected one of {BACKENDS} or 'auto'")
    return name


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Force backend ``name`` (or ``"auto"``/``None``) for ops called inside the block."""
    token = _forced.set(_check_name(name, "name") or "auto")
    try:
        yield
    finally:
        _forced.reset(token)


def forced_backend() -> str | None:
    """The backend forced by :func:`use_backend` or ``HYPIR_KERNELS_BACKEND``, or None."""
    name = _forced.get()
    if name is not None:
        return None if name == "auto" else name
    return _check_name(os.environ.get(ENV_VAR), ENV_VAR)


@dataclass
class Op:
    """An op family's implementations, keyed by backend name."""

    name: str
    impls: dict[str, Callable] = field(default_factory=dict)
    # Kernel op in the C++ extension backing the cpu/cuda implementations; None when those are
    # torch compositions, which then run without the extension.
    kernel_op: str | None = None


REGISTRY: dict[str, Op] = {}


def register(name: str, kernel_op: str | None = None, **impls: Callable) -> Op:
    """Register the implementations of op ``name`` (keyword per backend)."""
    unknown = set(impls) - set(BACKENDS)
    if unknown:
        raise ValueError(f"impls: unknown backends {sorted(unknown)}")
    if "reference" not in impls:
        raise ValueError("impls: every op needs a 'reference' implementation")
    op = Op(name, dict(impls), kernel_op)
    REGISTRY[name] = op
    _AUTO.clear()
    return op


def runnable(op: Op, backend: str, device_type: str) -> tuple[bool, str]:
    """Whether ``backend`` can run ``op`` on ``device_type`` now, and why not."""
    if backend not in op.impls:
        return False, f"{op.name} has no {backend} implementation"
    if backend == "reference":
        return True, ""
    if backend == "cpu":
        if device_type != "cpu":
            return False, "the cpu backend takes CPU tensors"
        if op.kernel_op is not None and not _extension.cpu_available():
            return False, f"hypir_kernels._C is not built ({_extension.import_error()})"
        return True, ""
    if backend == "cuda":
        if device_type != "cuda":
            return False, "the cuda backend takes CUDA tensors"
        if op.kernel_op is not None and not _extension.cuda_built():
            return False, "hypir_kernels._C was built without its CUDA part"
        return True, ""
    # triton
    if not triton_available():
        return False, "triton is not installed"
    if device_type == "cuda":
        return True, ""
    if device_type == "cpu" and interpreter_active():
        return True, ""
    return False, "the triton backend takes CUDA tensors (CPU tensors only with TRITON_INTERPRET=1)"


def select(op: Op, device: torch.device | str) -> str:
    """The backend that runs ``op`` on ``device`` under the current forcing."""
    device_type = device.type if isinstance(device, torch.device) else torch.device(device).type
    forced = forced_backend()
    if forced is None:  # the automatic choice depends only on (op, device type): memoised
        key = (op.name, device_type)
        if key not in _AUTO:
            _AUTO[key] = _select(op, device_type, None)
        return _AUTO[key]
    return _select(op, device_type, forced)


_AUTO: dict[tuple[str, str], str] = {}


def _select(op: Op, device_type: str, forced: str | None) -> str:
    if forced is not None and forced in op.impls:
        ok, why = runnable(op, forced, device_type)
        if not ok:
            raise RuntimeError(f"{op.name}: forced backend {forced!r} cannot run on {device_type}: {why}")
        return forced
    order = ("cuda", "triton", "reference") if device_type == "cuda" else ("cpu", "reference")
    for backend in order:
        if runnable(op, backend, device_type)[0]:
            return backend
    return "reference"


def dispatch(name: str, device: torch.device | str) -> Callable:
    """The implementation of op ``name`` for ``device``."""
    device_type = device.type if isinstance(device, torch.device) else torch.device(device).type
    return REGISTRY[name].impls[_selected(name, device_type)]


@torch.compiler.assume_constant_result  # traced once: dynamo before torch 2.14 cannot read the ContextVar
def _selected(name: str, device_type: str) -> str:
    return select(REGISTRY[name], device_type)
