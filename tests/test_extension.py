"""Tier 4 (DESIGN §3): the extension is built with its CPU and CUDA parts, imports on a CPU-only
machine and carries device code for sm_80 and sm_90."""
import os
import re
import subprocess

import pytest
import torch

import hypir_kernels as hk
from hypir_kernels import _extension

KERNEL_OPS = ["_blend_tiles"]


def test_extension_imports_with_cpu_part():
    assert _extension.import_error() is None
    assert _extension.cpu_available()
    for op in KERNEL_OPS:
        assert _extension.has_kernel(op, "CPU"), op


needs_cuda_build = pytest.mark.skipif(
    torch.version.cuda is None or os.environ.get("HYPIR_KERNELS_CUDA") == "0",
    reason="CPU-only torch or CUDA part disabled",
)


@needs_cuda_build
def test_cuda_registrations_exist():
    assert _extension.cuda_built(), "torch is a CUDA build but the CUDA part of _C was not built"
    for op in KERNEL_OPS:
        assert _extension.has_kernel(op, "CUDA"), op
    assert _extension.cuda_archs() == (os.environ.get("TORCH_CUDA_ARCH_LIST") or "8.0;9.0").split(";")


@needs_cuda_build
def test_binary_holds_sass_for_each_architecture():
    import triton

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    res = subprocess.run([cuobjdump, "-lelf", _extension._C.__file__], capture_output=True, text=True, check=True)
    archs = set(re.findall(r"sm_(\d+)", res.stdout))
    want = {a.replace(".", "") for a in _extension.cuda_archs()}
    assert want <= archs, (want, res.stdout)


def test_public_ops_are_torch_library_ops():
    assert hasattr(torch.ops.hypir_kernels, "blend_tiles")
    assert hasattr(torch.ops.hypir_kernels, "_blend_tiles")
    assert _extension.has_kernel("_blend_tiles_pixelwise", "CPU")
