"""hypir.train.loop: the one training loop of HYPIR's trainer and RSD's two phases -- its cadence
(logs, samples, checkpoints), resume (the log trimmed to the checkpoint, the step continued) and
interruption, on a counting stand-in whose state is one number."""
import json
import os
import signal
from types import SimpleNamespace

import pytest
import torch

from hypir.rsd.distill import Distiller
from hypir.rsd.pretrain import Pretrainer
from hypir.train import HypirTrainer, checkpoint
from hypir.train.interrupt import Interrupted
from hypir.train.loop import TrainLoop, derive_seed


class _Accelerator:
    is_main_process, num_processes, process_index, device = True, 1, 0, torch.device("cpu")

    def wait_for_everyone(self):
        pass


class Counter(TrainLoop):
    """Adds ``step + 1`` to a running total each step; checkpoints hold the total."""

    desc = "counter"

    def __init__(self, out, steps=7, signal_at=None, **run):
        self.cfg = SimpleNamespace(run=SimpleNamespace(**{"steps": steps, "log_every": 2, "sample_every": 3,
                                                         "checkpoint_every": 3, "keep_last": 10, **run}))
        self.acc, self.out, self.progress, self.ema, self.step = _Accelerator(), out, False, None, 0
        self.total, self.signal_at, self.started_at = 0.0, signal_at, None

    def start(self):
        self.started_at = self.step

    def run_step(self):
        self.total += self.step + 1
        if self.step + 1 == self.signal_at:
            os.kill(os.getpid(), signal.SIGINT)
        return {"loss": self.total}

    @property
    def images_per_step(self):
        return 4

    def must_log(self, logs):
        return self.step == 1

    def sample_grid(self):
        return torch.full((3, 4, 4), self.step / 10)

    def save(self):
        return checkpoint.save(self.out / "checkpoints", self.step, {"state": {"total": torch.tensor(self.total)}}, {},
                               {}, self.cfg.run.keep_last)

    def load(self, path):
        tensors, _, state = checkpoint.load(path)
        self.total, self.step = float(tensors["state"]["total"]), int(state["step"])

    def export(self):
        (self.out / "total.txt").write_text(str(self.total))
        return self.out / "total.txt"


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_cadence_of_logs_samples_and_checkpoints(tmp_path):
    path = Counter(tmp_path).train()
    assert path.read_text() == str(float(sum(range(1, 8))))
    records = _log(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 4, 6, 7]  # must_log, the log_every grid, the last step
    assert all(r["images_per_s"] > 0 for r in records) and records[-1]["loss"] == 28.0
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step-00000003.png", "step-00000006.png"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000003", "step-00000006", "step-00000007"]


def test_resume_continues_from_the_checkpoint_and_trims_the_log(tmp_path):
    Counter(tmp_path, steps=4).train()  # checkpoints at 3 and 4; log up to 4
    # a longer run resumed from step 3 (as after a crash just past it): the log's step 4 is dropped and redone
    checkpoint_4 = tmp_path / "checkpoints" / "step-00000004"
    import shutil

    shutil.rmtree(checkpoint_4)
    run = Counter(tmp_path, steps=7)
    run.train(resume="auto")
    assert run.started_at == 3 and run.total == float(sum(range(1, 8)))
    assert [r["step"] for r in _log(tmp_path)] == [1, 2, 4, 6, 7]


def test_interruption_checkpoints_the_finished_step_and_raises(tmp_path):
    run = Counter(tmp_path, steps=7, signal_at=5)
    with pytest.raises(Interrupted) as info:
        run.train()
    assert info.value.step == 5 and info.value.checkpoint.name == "step-00000005"
    resumed = Counter(tmp_path, steps=7)
    resumed.train(resume="auto")
    assert resumed.started_at == 5 and resumed.total == float(sum(range(1, 8)))


def test_every_trainer_runs_on_the_one_loop():
    for cls in (HypirTrainer, Pretrainer, Distiller):
        assert issubclass(cls, TrainLoop)
        assert "train" not in vars(cls) and not any("train" in vars(b) for b in cls.__mro__[1:] if b is not TrainLoop
                                                      and b is not object), cls


def test_derive_seed_is_a_fixed_function_of_its_parts():
    assert derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(2, 1)
    assert 0 <= derive_seed(2**62, 2**62, 7) < 2**63


@pytest.mark.parametrize("forced,expected", [("fp32", "no"), ("bf16", "bf16")])
def test_auto_mixed_precision_follows_the_cpu(monkeypatch, forced, expected):
    """``run.mixed_precision: auto`` on the CPU is bf16 autocast where bf16 is native (the same rule
    as the restorer's ``dtype="auto"``, overridden here by HYPIR_AUTO_CPU_DTYPE), else none."""
    from hypir.train.loop import resolve_mixed_precision

    if torch.cuda.is_available():
        pytest.skip("on CUDA auto is always bf16")
    monkeypatch.setenv("HYPIR_AUTO_CPU_DTYPE", forced)
    assert resolve_mixed_precision("auto") == expected
    assert resolve_mixed_precision("no") == "no" and resolve_mixed_precision("bf16") == "bf16"
