"""The build without its CUDA part (what a CPU-only torch gets): compiles, imports, registers
the CPU kernels only. Built into a temporary directory and loaded in a fresh process."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOAD = """
import glob, importlib.util, json, sys, torch
path = glob.glob(sys.argv[1] + '/hypir_kernels/_C*.so')[0]
spec = importlib.util.spec_from_file_location('_C', path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
has = torch._C._dispatch_has_kernel_for_dispatch_key
print(json.dumps([module.build_info(), has('hypir_kernels::_blend_tiles', 'CPU'), has('hypir_kernels::_blend_tiles', 'CUDA')]))
"""


def test_cpu_only_build(tmp_path):
    env = dict(os.environ, HYPIR_KERNELS_CUDA="0")
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"), "--build-temp", str(tmp_path / "tmp")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "CUDA part OFF" in build.stdout
    import json

    res = subprocess.run([sys.executable, "-c", LOAD, str(tmp_path / "lib")], capture_output=True, text=True, check=True)
    info, cpu, cuda = json.loads(res.stdout.strip().splitlines()[-1])
    assert info == {"cuda": False, "cuda_archs": ""} and cpu and not cuda
