"""Tier 3 of DESIGN §3: compile Triton kernels ahead of time for sm_80 and sm_90 without a GPU
and read their resource use (registers and spills from ``ptxas -v``, shared memory from the
compiled kernel's metadata).

Must run in a process where ``TRITON_INTERPRET`` is unset (interpreted kernels have no code to
compile); ``python -m hypir_kernels.tools.gpu_report`` is such a process.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

ARCHS = (80, 90)
# Largest shared memory one block may use (opt-in), bytes: A100 163 KiB, H100 227 KiB.
SHARED_LIMIT = {80: 166912, 90: 232448}


@dataclass
class Resources:
    name: str
    arch: int
    registers: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int
    shared_bytes: int
    shared_limit: int

    @property
    def problems(self) -> list[str]:
        out = []
        if self.spill_stores or self.spill_loads:
            out.append(f"spills {self.spill_stores} B stores / {self.spill_loads} B loads")
        if self.shared_bytes > self.shared_limit:
            out.append(f"shared memory {self.shared_bytes} B > {self.shared_limit} B")
        if self.registers > 255:
            out.append(f"{self.registers} registers > 255")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems


_PTXAS_USED = re.compile(r"Used (\d+) registers")
_PTXAS_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def parse_ptxas(text: str) -> tuple[int, int, int, int]:
    """(registers, stack bytes, spill stores, spill loads) from one kernel's ``ptxas -v`` lines."""
    used = _PTXAS_USED.search(text)
    spill = _PTXAS_SPILL.search(text)
    if not used or not spill:
        raise RuntimeError(f"could not parse ptxas output:\n{text}")
    return int(used.group(1)), int(spill.group(1)), int(spill.group(2)), int(spill.group(3))


def ptxas_path() -> str:
    """Triton's bundled ptxas (matches the PTX version Triton emits)."""
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Triton's ptxas not found at {path}")
    return path


def ptxas_resources(ptx: str) -> tuple[int, int, int, int]:
    target = re.search(r"^\.target\s+(sm_\w+)", ptx, re.M)
    if not target:
        raise RuntimeError("PTX has no .target line")
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        res = subprocess.run(
            [ptxas_path(), "-v", f"--gpu-name={target.group(1)}", src, "-o", os.path.join(d, "k.cubin")],
            capture_output=True, text=True,
        )
    if res.returncode != 0:
        raise RuntimeError(f"ptxas failed:\n{res.stderr}")
    return parse_ptxas(res.stderr + res.stdout)


def compile_config(config, arch: int) -> Resources:
    """Compile one :class:`hypir_kernels.triton.AotConfig` for ``sm_<arch>``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if not isinstance(config.kernel, triton.runtime.jit.JITFunction):
        raise RuntimeError(
            f"{config.name}: kernel is not a compiled-mode JITFunction (is TRITON_INTERPRET set?)"
        )
    names = config.kernel.arg_names
    attrs = {(names.index(a),): [["tt.divisibility", 16]] for a in config.divisible_by_16}
    src = ASTSource(fn=config.kernel, signature=config.signature, constexprs=config.constexprs, attrs=attrs)
    kernel = triton.compile(
        src,
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": config.num_warps, "num_stages": config.num_stages},
    )
    regs, stack, stores, loads = ptxas_resources(kernel.asm["ptx"])
    return Resources(config.name, arch, regs, stores, loads, stack, int(kernel.metadata.shared), SHARED_LIMIT[arch])


def _compile_nth(job: tuple[int, int]) -> Resources:
    from ..triton import aot_configs

    index, arch = job
    return compile_config(aot_configs()[index], arch)


def _die_with_parent(parent: int) -> None:
    """Pool-worker initializer: a worker must not outlive a killed parent (a forked worker holds
    the job pipe open itself, so it would wait for work forever). Linux: the kernel sends SIGKILL
    when the parent dies; elsewhere a daemon thread polls the parent's pid."""
    import signal
    import threading

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        armed = False
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        def watch():
            while os.getppid() == parent:
                threading.Event().wait(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()


def worker_pool(workers: int):
    """A process pool whose workers die with this process (see :func:`_die_with_parent`)."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, initializer=_die_with_parent, initargs=(os.getpid(),))


def compile_all(archs=ARCHS, workers: int | None = None) -> list[Resources]:
    """Compile every shipped configuration for every arch, ``workers`` processes in parallel
    (default: one per CPU); results in configuration order."""
    from ..triton import aot_configs

    jobs = [(i, arch) for i in range(len(aot_configs())) for arch in archs]
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        return [_compile_nth(job) for job in jobs]
    with worker_pool(workers) as pool:
        return list(pool.map(_compile_nth, jobs))
