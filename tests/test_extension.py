"""Tier 4 (DESIGN §3): the extension is built with its CPU and CUDA parts, imports on a CPU-only
machine and carries device code for sm_80 and sm_90."""
import os
import re
import subprocess

import pytest
import torch

import hypir_kernels as hk
from hypir_kernels import _extension

KERNEL_OPS = ["_blend_tiles", "_separable_filter", "_apply_mask", "_add_noise"]


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
    # CPU-only kernel ops: test hooks and the fused filter2d (other devices compose torch ops).
    for op in ("_apply_mask_groupwise", "_filter2d_fft"):
        assert _extension.has_kernel(op, "CPU"), op


def _big_blend():
    # 1 x 3 x 400 x 400 float32 = 1.9 MB output: large enough for the CPU output cache.
    o = hk.plan_tiles(400, 400, 128, 112)
    tiles = torch.randn(1, o.shape[0], 3, 128, 128)
    return tiles, o


def test_cpu_output_cache_reuses_freed_buffers_only():
    hk.empty_cpu_cache()
    tiles, o = _big_blend()
    with hk.use_backend("reference"):
        ref = hk.blend_tiles(tiles, o, 400, 400)
    a = hk.blend_tiles(tiles, o, 400, 400)
    b = hk.blend_tiles(tiles * 2, o, 400, 400)
    assert a.data_ptr() != b.data_ptr()  # live outputs never share memory
    torch.testing.assert_close(a, ref)
    torch.testing.assert_close(b, ref * 2)
    ptr = a.data_ptr()
    del a
    assert hk.cpu_cache_bytes() >= 400 * 400 * 3 * 4
    c = hk.blend_tiles(tiles, o, 400, 400)
    assert c.data_ptr() == ptr and hk.cpu_cache_bytes() == 0  # reused, fully overwritten
    torch.testing.assert_close(c, ref)
    torch.testing.assert_close(b, ref * 2)
    del b, c
    assert hk.cpu_cache_bytes() > 0
    hk.empty_cpu_cache()
    assert hk.cpu_cache_bytes() == 0


def test_cpu_output_cache_can_be_disabled(monkeypatch):
    monkeypatch.setenv("HYPIR_KERNELS_CPU_CACHE_MB", "0")
    hk.empty_cpu_cache()
    tiles, o = _big_blend()
    out = hk.blend_tiles(tiles, o, 400, 400)
    del out
    assert hk.cpu_cache_bytes() == 0


def test_cached_outputs_behave_like_tensors():
    tiles, o = _big_blend()
    tiles.requires_grad_(True)
    out = hk.blend_tiles(tiles, o, 400, 400)
    out.square().sum().backward()
    assert tiles.grad is not None and tiles.grad.shape == tiles.shape
    out2 = hk.blend_tiles(tiles.detach(), o, 400, 400)
    out2.add_(1)  # in-place on a cached buffer
    out2[0, 0, 0, 0] = 5.0
    assert out2[0, 0, 0, 0].item() == 5.0


def test_cached_outputs_resize_like_torch_outputs():
    """Outputs from the CPU output cache (>= 1 MiB) behave like torch's: resize_ and out=
    arguments work, growing moves to fresh memory and hands the cached buffer back."""
    import warnings

    hk.empty_cpu_cache()
    x = torch.rand(4, 3, 256, 256)
    y = hk.gaussian_blur(x, 1.0)
    assert y.nbytes >= 1 << 20 and y.untyped_storage().resizable()
    before = y.clone()
    y.resize_(8, 3, 256, 256)
    assert torch.equal(y[:4], before) and hk.cpu_cache_bytes() >= before.nbytes
    z = hk.gaussian_blur(x, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notice for resizing non-empty out=
        torch.add(x[:2], 1, out=z)
    assert z.shape == (2, 3, 256, 256) and torch.equal(z, x[:2] + 1)
    z.resize_(0)
    torch.mul(x, 2, out=z)
    assert torch.equal(z, x * 2)
