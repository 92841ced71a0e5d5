"""A training run as the operating system treats it (issue 28), on the tiny RSD teacher config in
real subprocesses: SIGINT / SIGTERM finish the step, write a checkpoint and exit 130 / 143 with one
line saying where it is; ``kill -9`` at random moments (several of them while a checkpoint is being
written), then ``--resume auto``, ends bit for bit where an uninterrupted run ends; a full disk
(``ulimit -f``) while checkpointing keeps the previous checkpoint and exits 2 with one line."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TINY_RSD = Path(__file__).parents[2] / "configs" / "rsd-blur-tiny.yaml"
STEPS = 16
ENV = dict(os.environ, OMP_NUM_THREADS="1")  # one thread: the same arithmetic in every process


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hypir", "rsd", "pretrain", "--config", str(TINY_RSD), "--quiet",
            "--set", f"run.output_dir={out}", "--set", f"run.steps={STEPS}", "--set", "run.sample_every=0",
            "--set", "run.checkpoint_every=1", "--set", "run.keep_last=100", "--set", "run.log_every=1", "--set", "optim.batch_size=8",
            "--set", "net.channels=[8, 16]", *extra]


def _checkpoints(out: Path) -> list[str]:
    folder = out / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _log(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run, every step's checkpoint kept."""
    out = tmp_path_factory.mktemp("reference") / "run"
    res = subprocess.run(_command(out), capture_output=True, text=True, timeout=600, env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def _wait_for(proc: subprocess.Popen, condition, timeout: float = 300) -> bool:
    """Poll (1 ms) until ``condition()`` or the process ends; True if the condition came first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.001)
    raise TimeoutError("the run neither reached the condition nor ended")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_finishes_the_step_writes_a_checkpoint_and_exits_128_plus_it(tmp_path, reference, sig):
    out = tmp_path / "run"
    proc = subprocess.Popen(_command(out), stderr=subprocess.PIPE, text=True, env=ENV)
    assert _wait_for(proc, lambda: "step-00000002" in _checkpoints(out)), "the run ended before step 2"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    m = re.fullmatch(rf"hypir: stopped by {sig.name} after step (\d+); checkpoint (\S+) \(continue with --resume auto\)",
                     lines[-1])
    assert m, lines[-3:]
    step, where = int(m.group(1)), Path(m.group(2))
    assert 2 <= step < STEPS and where == out / "checkpoints" / f"step-{step:08d}"
    assert _checkpoints(out)[-1] == where.name and not (out / "teacher.safetensors").exists()
    # the checkpoint is the uninterrupted run's at that step, and resuming finishes the same run
    assert _same(_tensors(where / "tensors.safetensors"), _tensors(reference / "checkpoints" / where.name / "tensors.safetensors"))
    res = subprocess.run(_command(out, "--resume", "auto"), capture_output=True, text=True, timeout=600, env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _same(_tensors(out / "teacher.safetensors"), _tensors(reference / "teacher.safetensors"))


def test_kill_9_at_random_moments_then_resume_is_bit_for_bit(tmp_path, reference):
    """Five or more SIGKILLs: odd ones the moment a checkpoint's temporary folder appears (mid-write),
    even ones at a random time; every restart is ``--resume auto``."""
    out = tmp_path / "run"
    rng = random.Random(28)
    kills, mid_write = 0, 0
    for attempt in range(40):
        if kills >= 5:
            break
        proc = subprocess.Popen(_command(out, "--resume", "auto"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=ENV)
        start = set(_checkpoints(out))
        folder = out / "checkpoints"
        if attempt % 2 == 0:  # mid-write: a hidden temporary checkpoint folder exists
            def writing():
                return folder.is_dir() and any(p.name.startswith(".step-") and ".tmp-" in p.name for p in folder.iterdir())
            hit = _wait_for(proc, writing)
            delay = rng.uniform(0, 0.004)
        else:  # a random moment after training got going
            hit = _wait_for(proc, lambda: set(_checkpoints(out)) - start != set())
            delay = rng.uniform(0, 0.6)
        time.sleep(delay)
        if hit and proc.poll() is None:
            was_writing = attempt % 2 == 0 and any(".tmp-" in p.name for p in folder.iterdir())
            proc.kill()
            proc.wait()
            kills += 1
            mid_write += was_writing
        else:
            proc.wait()
            if proc.returncode == 0:
                break  # finished before it could be killed
    assert kills >= 5, f"only {kills} kills before the run finished"
    assert mid_write >= 1, "no kill landed while a checkpoint was being written"
    res = subprocess.run(_command(out, "--resume", "auto"), capture_output=True, text=True, timeout=600, env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _same(_tensors(out / "teacher.safetensors"), _tensors(reference / "teacher.safetensors"))
    # the log reads as the uninterrupted run's: the steps re-run after each kill are logged once
    assert _log(out) == _log(reference)
    for name in _checkpoints(out):  # every checkpoint left is complete and the uninterrupted run's
        assert not name.startswith("."), name
        assert _same(_tensors(out / "checkpoints" / name / "tensors.safetensors"),
                     _tensors(reference / "checkpoints" / name / "tensors.safetensors")), name


def test_a_full_disk_while_checkpointing_keeps_the_previous_one(tmp_path, reference):
    import shutil

    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copytree(reference / "checkpoints" / "step-00000003", out / "checkpoints" / "step-00000003")
    size = (out / "checkpoints" / "step-00000003" / "tensors.safetensors").stat().st_size
    limited = subprocess.list2cmdline(_command(out, "--resume", "auto"))
    res = subprocess.run(["bash", "-c", f"ulimit -f {size // 1024 - 1}; exec {limited}"], capture_output=True,
                         text=True, timeout=600, env=ENV)
    assert res.returncode == 2, res.stderr[-3000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines == [f"hypir: could not write {str(out / 'checkpoints' / 'step-00000004')!r}: the disk is full or a "
                     "file-size limit was reached; nothing was left under that name"], lines
    assert _checkpoints(out) == ["step-00000003"]
    # room again: the run continues from the kept checkpoint to the uninterrupted result
    res = subprocess.run(_command(out, "--resume", "auto"), capture_output=True, text=True, timeout=600, env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _same(_tensors(out / "teacher.safetensors"), _tensors(reference / "teacher.safetensors"))
