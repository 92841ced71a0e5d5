"""Loads the compiled extension ``hypir_kernels._C`` (op registrations for the CPU and CUDA
backends) and reports what it contains."""
from __future__ import annotations

import torch

try:
    from . import _C  # noqa: F401  (importing registers the C++ ops)

    _IMPORT_ERROR: Exception | None = None
except ImportError as exc:  # a source checkout without a build, or a broken build
    _C = None
    _IMPORT_ERROR = exc


def cpu_available() -> bool:
    """True when the C++ CPU kernels are built and loaded."""
    return _C is not None


def cuda_built() -> bool:
    """True when the CUDA part of the extension was compiled into ``_C``."""
    return _C is not None and bool(_C.build_info()["cuda"])


def cuda_available() -> bool:
    """True when the CUDA kernels are built *and* a CUDA device is usable."""
    return cuda_built() and torch.cuda.is_available()


def cuda_archs() -> list[str]:
    """CUDA architectures the extension was compiled for (``[]`` without the CUDA part)."""
    if not cuda_built():
        return []
    return [a for a in _C.build_info()["cuda_archs"].replace(",", ";").split(";") if a]


def import_error() -> Exception | None:
    """Why ``_C`` failed to import, or None."""
    return _IMPORT_ERROR


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether ``hypir_kernels::<op>`` has a kernel registered for ``dispatch_key`` (e.g. CUDA)."""
    if _C is None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"hypir_kernels::{op}", dispatch_key)


def cpu_cache_bytes() -> int:
    """Bytes held by the cache of freed large CPU outputs (0 without the extension)."""
    return 0 if _C is None else int(_C.cpu_cache_bytes())


def empty_cpu_cache() -> None:
    """Free the buffers held by the CPU output cache.

    Large CPU outputs of the C++ kernels reuse freed output buffers instead of faulting in fresh
    pages (``HYPIR_KERNELS_CPU_CACHE_MB`` bounds the cache, default 1024, 0 disables it).
    """
    if _C is not None:
        _C.empty_cpu_cache()


if _C is not None:  # shapes for torch.compile of Python-composed ops that allocate through the cache
    torch.library.register_fake("hypir_kernels::_empty_like_cached")(lambda x: torch.empty_like(x))
