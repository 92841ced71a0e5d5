"""Builds hypir_kernels._C: the CPU part always, the CUDA part when torch is a CUDA build and a
CUDA toolkit is found.

Environment:
  HYPIR_KERNELS_CUDA      "1" forces the CUDA part (fails without a toolkit), "0" skips it,
                          unset/"auto" builds it when possible.
  CUDA_HOME               toolkit root (holds bin/nvcc and lib64/libcudart.so); found if unset.
  TORCH_CUDA_ARCH_LIST    CUDA architectures, default "8.0;9.0".
"""
import glob
import os
import sys

from setuptools import setup


def _toolkit_root():
    """hypir_kernels/tools/cuda_toolkit.py, loaded by path: the package is not built yet."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hypir_kernels", "tools", "cuda_toolkit.py")
    spec = importlib.util.spec_from_file_location("_hk_cuda_toolkit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.toolkit_root()


def _want_cuda(torch_cuda, root):
    mode = os.environ.get("HYPIR_KERNELS_CUDA", "auto").strip().lower()
    if mode in ("0", "false", "off", "no"):
        return False
    possible = torch_cuda is not None and root is not None
    if mode in ("1", "true", "on", "yes"):
        if not possible:
            sys.exit(
                "HYPIR_KERNELS_CUDA=1 but the CUDA part cannot be built: "
                f"torch CUDA version={torch_cuda}, toolkit root={root} (set CUDA_HOME)"
            )
        return True
    return possible


root = _toolkit_root()
if root:
    os.environ["CUDA_HOME"] = root  # read by torch.utils.cpp_extension at import
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 2))

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
with_cuda = _want_cuda(torch.version.cuda, root)
include_dirs = [os.path.join(here, "csrc", "include")]
cxx_flags = ["-O3", "-fopenmp"]  # torch adds -std=c++20, which its headers need
sources = ["csrc/ops.cpp", "csrc/output_cache.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))

if with_cuda:
    archs = os.environ["TORCH_CUDA_ARCH_LIST"]
    # The pip CUDA runtime packages carry headers some torch CUDA headers include.
    import site

    for sp in site.getsitepackages():
        inc = os.path.join(sp, "nvidia", "cu13", "include")
        if os.path.isdir(inc):
            include_dirs.append(inc)
    defines = ["-DHK_WITH_CUDA", f'-DHK_CUDA_ARCHS="{archs}"']
    ext = CUDAExtension(
        "hypir_kernels._C",
        sources + sorted(glob.glob("csrc/cuda/*.cpp")) + sorted(glob.glob("csrc/cuda/*.cu")),
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags + defines, "nvcc": ["-O3", "-lineinfo"] + defines},
        extra_link_args=["-fopenmp"],
    )
else:
    ext = CppExtension(
        "hypir_kernels._C",
        sources,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )

print(f"hypir_kernels: CUDA part {'ON (' + os.environ['TORCH_CUDA_ARCH_LIST'] + ', ' + str(root) + ')' if with_cuda else 'OFF'}")

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)})
