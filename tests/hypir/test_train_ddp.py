"""Two CPU processes (gloo, DDP through accelerate) train a few steps: both ranks end with the
same weights, equal to a one-process run with the same global batch (accumulation 2)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("ddp_train.py")


def _run(cmd, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def torchrun_command() -> list[str] | None:
    """The venv's torchrun (or one on PATH); None when there is none."""
    local = Path(sys.executable).with_name("torchrun")
    if local.exists():
        return [str(local)]
    return ["torchrun"] if shutil.which("torchrun") else None


@pytest.mark.skipif(torchrun_command() is None, reason="torchrun not installed")
def test_two_processes_equal_one_with_accumulation(tmp_path):
    _run([*torchrun_command(), "--standalone", "--nproc_per_node", "2", str(SCRIPT), str(tmp_path / "ddp")], tmp_path)
    _run([sys.executable, str(SCRIPT), str(tmp_path / "single")], tmp_path)
    r0, r1 = load_file(str(tmp_path / "ddp" / "rank0.safetensors")), load_file(str(tmp_path / "ddp" / "rank1.safetensors"))
    single = load_file(str(tmp_path / "single" / "rank0.safetensors"))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ddp" / "rank1.safetensors"), "pt") as f:
        assert f.metadata() == {"processes": "2", "distributed": "MULTI_CPU"}
    assert r0.keys() == r1.keys() == single.keys()
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"
    initial_b = [k for k in r0 if "lora_B" in k]
    assert any(r0[k].abs().max() > 0 for k in initial_b), "nothing trained"
    for k in r0:  # same samples, degradations and global batch; only the gradient summation order differs
        torch.testing.assert_close(r0[k], single[k], rtol=1e-4, atol=1e-6, msg=k)
