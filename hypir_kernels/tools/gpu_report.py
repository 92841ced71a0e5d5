"""``python -m hypir_kernels.tools.gpu_report``: resource use of every GPU kernel we ship, for
sm_80 and sm_90, computed on a machine without a GPU (DESIGN §3 tiers 3 and 4).

* Triton: every registered configuration (``hypir_kernels.triton.aot_configs``) compiled ahead of
  time; registers/spills from ptxas, shared memory from the kernel metadata.
* CUDA C++: every ``csrc/cuda/*.cu`` compiled with ``nvcc -Xptxas -v`` (the kernels are
  torch-free, so this needs only the toolkit and ``csrc/include``).

``--check`` exits 1 if any kernel spills registers or exceeds the shared-memory limit.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

from .aot import ARCHS, SHARED_LIMIT, Resources, compile_all, parse_ptxas
from .cuda_toolkit import nvcc

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cuda_sources(root: str = SOURCE_ROOT) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "csrc", "cuda", "*.cu")))


def _demangle(names: list[str]) -> list[str]:
    if not shutil.which("c++filt"):
        return names
    res = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
    out = res.stdout.splitlines()
    return out if len(out) == len(names) else names


def cuda_resources(source: str, arch: int) -> list[Resources]:
    """Per-kernel resources of one .cu file for ``sm_<arch>`` via ``nvcc -Xptxas -v``."""
    compiler = nvcc()
    if compiler is None:
        raise FileNotFoundError("no CUDA toolkit found (set CUDA_HOME)")
    include = os.path.join(os.path.dirname(os.path.dirname(source)), "include")
    with tempfile.TemporaryDirectory() as d:
        res = subprocess.run(
            [compiler, "-O3", "-std=c++17", "-cubin", f"-arch=sm_{arch}", "-Xptxas", "-v", "-I", include,
             source, "-o", os.path.join(d, "k.cubin")],
            capture_output=True, text=True,
        )
    if res.returncode != 0:
        raise RuntimeError(f"nvcc failed on {source}:\n{res.stderr}")
    text = res.stderr + res.stdout
    # Split the log into one chunk per entry function.
    chunks = re.split(r"ptxas info\s*: Compiling entry function '([^']+)' for 'sm_\d+'", text)
    names, bodies = chunks[1::2], chunks[2::2]
    out = []
    for name, body in zip(_demangle(names), bodies):
        regs, stack, stores, loads = parse_ptxas(body)
        smem = re.search(r"(\d+) bytes smem", body)
        short = re.sub(r"^void ", "", name.replace("(anonymous namespace)::", ""))
        label = f"{os.path.basename(source)}:{re.sub(r'[(<].*', '', short)}<{_template_arg(name)}>"
        out.append(Resources(label, arch, regs, stores, loads, stack, int(smem.group(1)) if smem else 0, SHARED_LIMIT[arch]))
    return out


def _template_arg(name: str) -> str:
    m = re.search(r"<([^<>]*)>\(", name)
    return m.group(1).replace("hk::", "") if m else "?"


def format_table(rows: list[Resources]) -> str:
    head = f"{'kernel':<60} {'arch':>5} {'regs':>5} {'spill st/ld':>12} {'stack':>6} {'smem':>8}  status"
    lines = [head, "-" * len(head)]
    for r in rows:
        status = "ok" if r.ok else "FAIL: " + "; ".join(r.problems)
        lines.append(
            f"{r.name:<60} {'sm_' + str(r.arch):>5} {r.registers:>5} {f'{r.spill_stores}/{r.spill_loads}':>12} "
            f"{r.stack_bytes:>6} {r.shared_bytes:>8}  {status}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GPU kernel resource report (no GPU needed)")
    parser.add_argument("--check", action="store_true", help="exit 1 on spills or shared-memory overflow")
    parser.add_argument("--skip-cuda", action="store_true", help="Triton kernels only")
    parser.add_argument("--skip-triton", action="store_true", help="CUDA C++ kernels only")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("unset TRITON_INTERPRET: interpreted kernels cannot be compiled", file=sys.stderr)
        return 2
    rows: list[Resources] = []
    if not args.skip_triton:
        rows += compile_all()
        print(f"Triton: {len(rows)} kernel configurations x archs compiled for {', '.join(f'sm_{a}' for a in ARCHS)}")
    if not args.skip_cuda:
        sources = cuda_sources()
        if not sources:
            print(f"no CUDA sources under {SOURCE_ROOT}/csrc/cuda (run from a source checkout)", file=sys.stderr)
            return 2
        n = len(rows)
        rows += [r for src in sources for arch in ARCHS for r in cuda_resources(src, arch)]
        print(f"CUDA C++: {len(rows) - n} kernels x archs from {len(sources)} sources")
    print(format_table(rows))
    bad = [r for r in rows if not r.ok]
    if bad:
        print(f"{len(bad)} kernel(s) failed the resource check", file=sys.stderr)
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    raise SystemExit(main())
