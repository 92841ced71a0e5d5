"""Tier 3 (DESIGN §3): every shipped Triton configuration compiles ahead of time for sm_80 and
sm_90 with no spills and shared memory within the limit; the CUDA kernels' ptxas figures too.
Compilation runs in subprocesses because this test process runs Triton interpreted."""
import json
import os
import subprocess
import sys

import pytest

from hypir_kernels.tools.aot import SHARED_LIMIT, Resources, parse_ptxas

HERE = os.path.dirname(os.path.abspath(__file__))


def _compiled_env():
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    return env


def test_parse_ptxas():
    text = (
        "ptxas info    : Function properties for k\n"
        "    24 bytes stack frame, 8 bytes spill stores, 16 bytes spill loads\n"
        "ptxas info    : Used 255 registers, used 1 barriers, 24 bytes cumulative stack size\n"
    )
    assert parse_ptxas(text) == (255, 24, 8, 16)
    with pytest.raises(RuntimeError):
        parse_ptxas("nothing here")


def test_resource_check_flags_spills_and_shared_overflow():
    ok = Resources("k", 90, 64, 0, 0, 0, 1024, SHARED_LIMIT[90])
    assert ok.ok
    assert not Resources("k", 90, 64, 4, 8, 8, 0, SHARED_LIMIT[90]).ok
    over = Resources("k", 80, 64, 0, 0, 0, SHARED_LIMIT[80] + 1, SHARED_LIMIT[80])
    assert not over.ok and "shared memory" in over.problems[0]


def test_aot_compile_detects_a_real_spill():
    # The interpreter would run this kernel happily; only code generation shows the spill.
    res = subprocess.run([sys.executable, os.path.join(HERE, "spilling_kernel.py")], env=_compiled_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    assert {r["arch"] for r in rows} == {80, 90}
    assert all(not r["ok"] and r["spill_stores"] > 0 for r in rows)


def test_gpu_report_check_passes_for_every_shipped_kernel():
    res = subprocess.run([sys.executable, "-m", "hypir_kernels.tools.gpu_report", "--check"], env=_compiled_env(),
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    env = _compiled_env()
    env["TRITON_INTERPRET"] = "0"
    listing = subprocess.run(
        [sys.executable, "-c", "from hypir_kernels.triton import aot_configs; print('\\n'.join(c.name for c in aot_configs()))"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert len(listing) >= 12
    lines = res.stdout.splitlines()
    for name in listing:
        for arch in ("sm_80", "sm_90"):
            assert any(line.startswith(name) and arch in line and line.rstrip().endswith("ok") for line in lines), (name, arch)
    # CUDA C++ kernels, every dtype instantiation, both architectures
    for arch in ("sm_80", "sm_90"):
        assert sum("blend.cu:" in line and arch in line and line.endswith("ok") for line in lines) == 4
        assert sum("filter.cu:" in line and arch in line and line.endswith("ok") for line in lines) == 8
        assert sum("mask.cu:" in line and arch in line and line.endswith("ok") for line in lines) == 3
        assert sum("noise.cu:" in line and arch in line and line.endswith("ok") for line in lines) == 4


def test_gpu_report_refuses_interpreted_kernels():
    env = _compiled_env()
    env["TRITON_INTERPRET"] = "1"
    res = subprocess.run([sys.executable, "-m", "hypir_kernels.tools.gpu_report"], env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "TRITON_INTERPRET" in res.stderr


_ORPHAN_PARENT = """
import os, sys, time
from hypir_kernels.tools.aot import worker_pool
pool = worker_pool(2)
futures = [pool.submit(time.sleep, 120) for _ in range(2)]
time.sleep(1.0)  # both workers started and busy
print(" ".join(str(p) for p in pool._processes), flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_compile_workers_die_with_a_killed_parent():
    """gpu_report's pool workers were found alive 46 min after their parent was killed."""
    import signal
    import time

    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN_PARENT], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [p for p in workers if _alive(p)]
    for p in survivors:
        os.kill(p, signal.SIGKILL)
    assert not survivors, f"workers {survivors} outlived their killed parent"
