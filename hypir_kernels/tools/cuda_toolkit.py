"""Finds the CUDA toolkit root (the directory holding ``bin/nvcc`` and ``lib64/libcudart.so``).

Standalone on purpose: ``setup.py`` loads this file by path before the package is built.
"""
from __future__ import annotations

import glob
import os
import shutil


def toolkit_root() -> str | None:
    """``CUDA_HOME`` / ``CUDA_PATH`` if valid, else ``/usr/local/cuda*``, else nvcc's parent.

    A ``nvcc`` on PATH may be a wrapper script outside the toolkit (``/usr/local/bin/nvcc``), so
    its parent is only the last guess.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    candidates += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for root in candidates:
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")) and glob.glob(
            os.path.join(root, "lib64", "libcudart.so*")
        ):
            return root
    return None


def nvcc() -> str | None:
    root = toolkit_root()
    return os.path.join(root, "bin", "nvcc") if root else None
