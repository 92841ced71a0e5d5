"""RSD phase I end to end on tiny configs: every task trains on its corrupted data only, resumes
bit for bit, exports a teacher `hypir rsd sample` reads; configs name bad keys."""
import json
import sys
import math
from pathlib import Path

import pytest
import torch

from hypir.cli import main
from hypir.rsd.config import load_pretrain_config
from hypir.rsd.data import digits
from hypir.rsd.pretrain import Pretrainer
from hypir.rsd.teacher import load_teacher, sample

CONFIGS = Path(__file__).parents[2] / "configs"
sys.path.insert(0, str(Path(__file__).parent))  # the DDP helpers of test_train_ddp


def tiny(task, out, **overrides):
    base = {"run.output_dir": str(out), "run.steps": 4, "run.log_every": 1, "run.checkpoint_every": 0,
            "run.sample_every": 0, "data.limit": 64, "optim.batch_size": 8}
    return load_pretrain_config(CONFIGS / f"rsd-{task}-tiny.yaml", {**base, **overrides})


@pytest.mark.parametrize("task", ["blur", "inpainting", "sr", "mri"])
def test_each_task_trains_on_corrupted_data_only(tmp_path, task):
    trainer = Pretrainer(tiny(task, tmp_path / task), progress=False)
    clean = digits(16, "train")[0][:64]
    # nothing the trainer holds is a clean image
    held = [v for v in vars(trainer).values() if torch.is_tensor(v)] + [trainer.data.y]
    assert all(not torch.allclose(t.float(), clean) for t in held if t.shape == clean.shape)
    assert trainer.data.task == task
    before = {k: p.detach().clone() for k, p in trainer.named.items()}
    path = trainer.train()
    logs = [json.loads(line) for line in (tmp_path / task / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2, 3, 4] and all(math.isfinite(r["loss"]) for r in logs)
    moved = sum(not torch.equal(before[k], p) for k, p in trainer.named.items())
    assert moved > len(before) // 2
    model, meta = load_teacher(path)
    channels = 2 if task == "mri" else 1  # MRI: complex images as (real, imaginary)
    assert meta["task"].kind == task and meta["size"] == 16 and meta["image_channels"] == channels
    # the export is the EMA weights
    k = next(iter(trainer.ema.state_dict()))
    assert torch.equal(model.state_dict()[k], trainer.ema.state_dict()[k])
    x = sample(model, meta["task"], (3, channels, 16, 16), steps=4)
    assert x.shape == (3, channels, 16, 16) and torch.isfinite(x).all()
    if task == "inpainting":  # a teacher exported before the masked preconditioning is refused
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        with safe_open(str(path), "pt") as f:
            old = json.loads(f.metadata()["hypir_rsd_teacher"])
        del old["preconditioning"]
        save_file(load_file(str(path)), str(tmp_path / "old.safetensors"), metadata={"hypir_rsd_teacher": json.dumps(old)})
        with pytest.raises(ValueError, match="before the masked preconditioning"):
            load_teacher(tmp_path / "old.safetensors")


def test_resume_continues_bit_for_bit(tmp_path):
    straight = Pretrainer(tiny("inpainting", tmp_path / "a"), progress=False)
    straight.train()
    Pretrainer(tiny("inpainting", tmp_path / "b", **{"run.steps": 2}), progress=False).train()
    resumed = Pretrainer(tiny("inpainting", tmp_path / "b"), progress=False)
    resumed.train(resume="auto")
    assert resumed.step == 4
    for k, p in straight.named.items():
        assert torch.equal(p, resumed.named[k]), k
    for k, v in straight.ema.state_dict().items():
        assert torch.equal(v, resumed.ema.state_dict()[k]), k
    other = Pretrainer(tiny("inpainting", tmp_path / "c", **{"net.channels": [16, 16]}), progress=False)
    with pytest.raises(ValueError, match="^resume: "):
        other.train(resume=str(tmp_path / "b" / "checkpoints" / "step-00000004"))


def test_noisy_data_uses_the_ambient_tweedie_objective_and_sampler(tmp_path, monkeypatch):
    import hypir.rsd.tasks as tasks
    import hypir.rsd.teacher as teacher

    calls = []
    real = tasks.ambient_tweedie_loss
    monkeypatch.setattr(tasks, "ambient_tweedie_loss", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    trainer = Pretrainer(tiny("blur", tmp_path, **{"task.sigma_n": 0.2, "run.steps": 1}), progress=False)
    trainer.train()
    assert calls == [0.2]
    seen = []
    real_sampler = teacher.ambient_tweedie_sample
    monkeypatch.setattr(teacher, "ambient_tweedie_sample", lambda *a, **k: seen.append(a[2]) or real_sampler(*a, **k))
    trainer.samples(2)
    assert seen == [0.2]


@pytest.mark.parametrize("override, message", [
    ({"task.kind": "deblur"}, r"^task\.kind: expected one of 'blur', 'inpainting', 'sr', 'mri', 'clean'"),
    ({"task.keep": 0}, r"^task\.keep: expected a number in \(0, 1\]"),
    ({"net.channels": [12, 24]}, r"^net\.channels: expected multiples of 8"),
    ({"data.size": 17}, r"^data\.size: 17 is not divisible by 2\^1"),
    ({"optim.lr": -1}, r"^optim\.lr: expected a positive number"),
    ({"run.export": "t.pt"}, r"^run\.export"),
    ({"run.stepz": 3}, r"^run\.stepz: unknown key"),
    ({"task.kind": "mri", "task.sigma_n": 0.1}, r"^task\.sigma_n: the mri task is noiseless here"),
    ({"task.kind": "mri", "data.source": "imgs/"}, r"^data\.source: the mri task builds complex images"),
])
def test_bad_config_values_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_pretrain_config(CONFIGS / "rsd-blur-tiny.yaml", override)


@pytest.mark.parametrize("task", ["blur", "inpainting", "sr", "mri"])
def test_cli_tiny_config_pretrains_in_under_two_minutes_and_samples(tmp_path, capsys, task):
    import time

    out = tmp_path / "run"
    start = time.perf_counter()
    assert main(["rsd", "pretrain", "--config", str(CONFIGS / f"rsd-{task}-tiny.yaml"), "--set",
                 f"run.output_dir={out}", "--quiet"]) == 0
    assert time.perf_counter() - start < 120
    assert f"trained 200 steps on {task} observations" in capsys.readouterr().err
    assert len(list((out / "samples").glob("*.png"))) == 2
    grid = tmp_path / "grid.png"
    assert main(["rsd", "sample", "--checkpoint", str(out / "teacher.safetensors"), "--n", "9", "-o", str(grid),
                 "--steps", "6", "--quiet", "--save-tensor", str(tmp_path / "s.pt")]) == 0
    from PIL import Image

    assert Image.open(grid).size == (3 * 17 + 1, 3 * 17 + 1)
    assert torch.load(tmp_path / "s.pt").shape == (9, 2 if task == "mri" else 1, 16, 16)
    assert main(["rsd", "sample", "--checkpoint", str(out / "log.jsonl"), "-o", str(grid)]) == 2
    assert "checkpoint: " in capsys.readouterr().err


@pytest.mark.parametrize("task", ["blur", "inpainting", "sr", "mri"])
def test_shipped_configs_load(task):
    full = load_pretrain_config(CONFIGS / f"rsd-{task}.yaml")
    assert full.task.kind == task and full.data.size == 32 and full.run.steps == 20000
    assert (full.task.blur_sigma, full.task.blur_size, full.task.keep) == (2.0, 9, 0.1)  # the paper's tasks
    assert load_pretrain_config(CONFIGS / f"rsd-{task}-tiny.yaml").data.size == 16
    if task == "mri":
        assert (full.task.acceleration, full.task.coils) == (4, 4)


def test_two_processes_stay_identical(tmp_path):
    """accelerate DDP on 2 CPU processes (gloo): each takes its half of the global batch, the
    gradients are averaged, both ranks end with the same weights; one export, one checkpoint."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    from test_train_ddp import _run, torchrun_command

    cmd = torchrun_command()
    if cmd is None:
        pytest.skip("torchrun not installed")
    out = tmp_path / "ddp"
    _run([*cmd, "--standalone", "--nproc_per_node", "2", str(Path(__file__).with_name("ddp_rsd_pretrain.py")), str(out)],
         tmp_path)
    r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    with safe_open(str(out / "rank1.safetensors"), "pt") as f:
        assert f.metadata() == {"processes": "2", "distributed": "MULTI_CPU"}
    assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"
    model, _ = load_teacher(out / "teacher.safetensors")
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000003"]


@pytest.mark.slow
def test_compiled_network_matches_eager_and_trains(tmp_path):
    """run.compile: torch.compile in place (inductor on the CPU here; a one-off compile of about a
    minute): the same weights give the same denoiser output, training runs, and the
    checkpoint/export keys are unchanged. (Weights after Adam steps are not compared: fused
    kernels round differently and Adam's first steps amplify that for near-zero gradients.)"""
    small = {"net.channels": [8, 16], "run.steps": 2, "data.limit": 16, "optim.batch_size": 4}
    eager = Pretrainer(tiny("blur", tmp_path / "eager", **small), progress=False)
    compiled = Pretrainer(tiny("blur", tmp_path / "compiled", **small, **{"run.compile": True}), progress=False)
    assert compiled.named.keys() == eager.named.keys()
    assert all(torch.equal(compiled.named[k], p) for k, p in eager.named.items())  # same init
    y, sigma = compiled.data.y[:4], torch.tensor([0.1, 0.5, 2.0, 20.0])
    with torch.no_grad():
        torch.testing.assert_close(compiled._model(y, sigma), eager._model(y, sigma), rtol=1e-4, atol=1e-5)
    compiled.train()
    logs = [json.loads(line) for line in (tmp_path / "compiled" / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in logs)
    model, _ = load_teacher(tmp_path / "compiled" / "teacher.safetensors")
    assert model.state_dict().keys() == eager._model.state_dict().keys()
