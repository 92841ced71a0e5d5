"""RSD phase II end to end on tiny teachers: each task distils (generator and fake score move, the
teacher does not), the generator starts as the teacher's denoiser at sigma_init, the views corrupt
differentiably and read only what the corruption observes, resume is bit for bit, proximal-FID
selection exports the best step, and the CLI distils and samples in one step."""
from pathlib import Path

import pytest
import torch

from hypir.cli import main
from hypir.rsd.config import TaskConfig, load_distill_config, load_pretrain_config
from hypir.rsd.distill import Distiller, is_student, load_student, one_step_sample
from hypir.rsd.pretrain import Pretrainer
from hypir.rsd.tasks import make_task

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A 3-step tiny teacher per task (weights random-ish, shapes and metadata real)."""
    root = tmp_path_factory.mktemp("teachers")
    out = {}
    for task in ("blur", "inpainting", "mri", "blur-noisy", "inpainting-noisy"):
        kind, _, noisy = task.partition("-")
        cfg = load_pretrain_config(CONFIGS / f"rsd-{kind}-tiny.yaml", {
            "run.output_dir": str(root / task), "run.steps": 3, "run.checkpoint_every": 0, "run.sample_every": 0,
            "data.limit": 32, "optim.batch_size": 4, "task.sigma_n": 0.2 if noisy else 0.0})
        out[task] = Pretrainer(cfg, progress=False).train()
    return out


def tiny(teacher, out, **overrides):
    base = {"teacher": str(teacher), "run.output_dir": str(out), "run.steps": 3, "run.log_every": 1,
            "run.checkpoint_every": 0, "run.sample_every": 0, "optim.batch_size": 4, "select.samples": 16}
    return load_distill_config(CONFIGS / "rsd-distill-tiny.yaml", {**base, **overrides})


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("task", ["blur", "inpainting", "mri"])
def test_each_task_distils_and_exports_a_one_step_student(tmp_path, teachers, task):
    d = Distiller(tiny(teachers[task], tmp_path / task), progress=False)
    teacher_before = {k: v.clone() for k, v in d.teacher.state_dict().items()}
    # the generator starts as the teacher's denoiser at sigma_init on sigma_init * z (through fixed masks)
    z = torch.randn(2, d.image_channels, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = {n: getattr(d._gen, n) for n in d._gen.cond_names}
    with torch.no_grad():
        want = make_task(d.task).denoise_fixed(d.teacher, cond, 2.5 * z, 2.5)
        torch.testing.assert_close(d._gen(z), want)
    g0 = {k: p.detach().clone() for k, p in d.named_g.items()}
    f0 = {k: p.detach().clone() for k, p in d.named_f.items()}
    path = d.train()
    logs = [__import__("json").loads(line) for line in (tmp_path / task / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor([r["loss_g"], r["loss_fake"]])).all() for r in logs)
    assert sum(not torch.equal(g0[k], p) for k, p in d.named_g.items()) > len(g0) // 2
    assert sum(not torch.equal(f0[k], p) for k, p in d.named_f.items()) > len(f0) // 2
    assert all(torch.equal(teacher_before[k], v) for k, v in d.teacher.state_dict().items())
    assert is_student(path) and not is_student(teachers[task])
    gen, meta = load_student(path)
    assert meta["task"].kind == task and meta["sigma_init"] == 2.5
    x = one_step_sample(gen, (5, d.image_channels, 16, 16), seed=1)
    assert x.shape == (5, d.image_channels, 16, 16) and torch.isfinite(x).all() and x.abs().max() <= 1
    with pytest.raises(ValueError, match="^shape"):
        one_step_sample(gen, (0, d.image_channels, 16, 16))
    # the export is the EMA generator
    k = next(iter(d.ema.state_dict()))
    assert torch.equal(gen.state_dict()[k], d.ema.state_dict()[k])


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("task", ["blur-noisy", "inpainting-noisy"])
def test_noisy_teachers_distil_with_the_datas_noise_in_the_fake_step(tmp_path, teachers, task, monkeypatch, capsys):
    """sigma_n = 0.2: the fake score learns from A(G(z)) + sigma_n e (masked after the noise, as the
    data was made), and the student carries the noisy task."""
    d = Distiller(tiny(teachers[task], tmp_path / task), progress=False)
    seen = []
    real_loss = d.view.loss

    def recording(model, w, mask, *rest):
        seen.append((w.detach().clone(), None if mask is None else mask.clone()))
        return real_loss(model, w, mask, *rest)

    monkeypatch.setattr(d.view, "loss", recording)
    assert d.task.sigma_n == 0.2
    x = d._gen(torch.randn(64, 1, 16, 16, generator=torch.Generator().manual_seed(0))).detach()
    d.view.fake_loss(d.fake, x, 5, torch.Generator().manual_seed(1))
    w, mask = seen[-1]
    clean, _ = d.view.observe(x, 5)
    residual = w - clean
    if mask is not None:
        assert torch.equal(w * (1 - mask), torch.zeros_like(w))  # unobserved pixels stay zero
        residual = residual[mask.expand_as(w) > 0]
    assert float(residual.std()) == pytest.approx(0.2, rel=0.1)
    path = d.train()
    gen, meta = load_student(path)
    assert meta["task"].sigma_n == 0.2 and meta["task"].kind == task.split("-")[0]
    assert torch.isfinite(one_step_sample(gen, (3, 1, 16, 16), seed=2)).all()
    assert main(["rsd", "sample", "--checkpoint", str(path), "--n", "2", "-o", str(tmp_path / "g.png")]) == 0
    assert "one-step student (data noise sigma_n 0.2)" in capsys.readouterr().err


@pytest.mark.usefixtures("one_thread")
def test_resume_is_bit_for_bit(tmp_path, teachers):
    straight = Distiller(tiny(teachers["inpainting"], tmp_path / "a", **{"run.steps": 4}), progress=False)
    straight.train()
    Distiller(tiny(teachers["inpainting"], tmp_path / "b", **{"run.steps": 2}), progress=False).train()
    resumed = Distiller(tiny(teachers["inpainting"], tmp_path / "b", **{"run.steps": 4}), progress=False)
    resumed.train(resume="auto")
    for a, b in ((straight.named_g, resumed.named_g), (straight.named_f, resumed.named_f)):
        assert all(torch.equal(a[k], b[k]) for k in a)
    ea, eb = straight.ema.state_dict(), resumed.ema.state_dict()
    assert ea.keys() == eb.keys() and all(torch.equal(ea[k], eb[k]) for k in ea)


@pytest.mark.parametrize("task", ["blur", "mri"])  # MRI: zero-filled reconstructions are compared
def test_proximal_fid_selection_exports_the_best_step(tmp_path, teachers, task):
    from hypir.metrics.features import DigitFeatures, save_features

    torch.manual_seed(0)
    save_features(DigitFeatures(width=8), tmp_path / "f.safetensors", accuracy=0.0, size=16)  # random weights suffice
    seen = []
    d = Distiller(tiny(teachers[task], tmp_path / "run", **{"run.steps": 4, "select.every": 2,
                                                              "select.features": str(tmp_path / "f.safetensors")}),
                  progress=False, on_eval=lambda step, x, fid: seen.append((step, x.shape, fid)))
    d.train()
    channels = 2 if task == "mri" else 1
    assert [s for s, _, _ in seen] == [2, 4] and all(shape == (16, channels, 16, 16) for _, shape, _ in seen)
    best = min(seen, key=lambda r: r[2])
    assert d.best == {"proximal_fid": best[2], "step": best[0]}
    _, meta = load_student(tmp_path / "run" / "student-best.safetensors")
    assert meta["steps"] == best[0] and meta["proximal_fid"] == pytest.approx(best[2])


def test_image_views_corrupt_differentiably_and_score_only_observed_pixels():
    task = TaskConfig(kind="inpainting", keep=0.3)
    view = make_task(task)
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    w, (mask, seen) = view.observe(x, seed=5)
    assert torch.equal(w, mask * x) and bool((seen <= mask).all()) and 0 < float(mask.mean()) < 0.6
    w.sum().backward()
    assert torch.equal(x.grad, mask.expand_as(x))  # the operator's adjoint

    class Probe(torch.nn.Module):
        def forward(self, x, sigma, cond=None, seen=None):
            self.args = (x, cond, seen)
            return torch.ones_like(x)

    probe = Probe()
    out = view.predict(probe, torch.randn(2, 1, 8, 8), torch.ones(2), (mask, seen), 0)
    assert torch.equal(out, mask.expand_as(out))  # compared on M only
    assert torch.equal(probe.args[0] * (1 - seen), torch.zeros_like(probe.args[0]))  # sees only M~ w_t
    assert torch.equal(probe.args[1], seen) and torch.equal(probe.args[2], seen)
    blur = make_task(TaskConfig(kind="blur"))
    xb = torch.randn(1, 1, 12, 12, requires_grad=True)
    wb, _ = blur.observe(xb, 0)
    (wb * torch.randn_like(wb)).sum().backward()
    assert xb.grad is not None and float(xb.grad.abs().sum()) > 0


def test_mri_view_compares_through_the_operator():
    task = TaskConfig(kind="mri", coils=3, acceleration=4, center_fraction=0.125)
    view = make_task(task)
    x = torch.randn(2, 2, 16, 16, requires_grad=True)
    w, (mask, further) = view.observe(x, seed=3)
    assert w.shape == (2, 3, 16, 16) and w.is_complex()
    unsampled = (mask == 0).view(2, 1, 1, 16).expand_as(w)
    assert torch.equal(w[unsampled], torch.zeros_like(w[unsampled]))  # only the acquired columns
    assert bool(((further != 0) <= (mask != 0)).all())
    torch.view_as_real(w).pow(2).sum().backward()
    assert float(x.grad.abs().sum()) > 0

    class Identity(torch.nn.Module):
        def forward(self, x, sigma, cond=None):
            return x

    # an identity "denoiser" sees A~^H(M~ w_t); its prediction is mapped through A (the data's mask M)
    from hypir_kernels import mri_adjoint, mri_forward

    maps = view.maps(16).expand(2, -1, -1, -1)
    pred = view.predict(Identity(), w.detach(), torch.ones(2), (mask, further), 0)
    torch.testing.assert_close(pred, mri_forward(mri_adjoint(w.detach(), maps, further), maps, mask))
    # what the further mask removed is not read: changing those columns changes nothing
    removed = ((mask != 0) & (further == 0)).view(2, 1, 1, 16).expand_as(w)
    assert bool(removed.any())
    w2 = torch.where(removed, torch.full_like(w, 1e3), w.detach())
    torch.testing.assert_close(view.predict(Identity(), w2, torch.ones(2), (mask, further), 0), pred)


def test_cli_distils_a_tiny_teacher_and_samples_in_one_step(tmp_path, capsys, teachers):
    out = tmp_path / "student"
    assert main(["rsd", "distill", "--config", str(CONFIGS / "rsd-distill-tiny.yaml"), "--set",
                 f"teacher={teachers['mri']}", "--set", f"run.output_dir={out}", "--set", "run.steps=4",
                 "--set", "optim.batch_size=4", "--quiet"]) == 0
    assert "distilled 4 steps from the mri teacher" in capsys.readouterr().err
    grid = tmp_path / "grid.png"
    assert main(["rsd", "sample", "--checkpoint", str(out / "student.safetensors"), "--n", "4", "-o", str(grid),
                 "--save-tensor", str(tmp_path / "s.pt")]) == 0
    assert "one-step student" in capsys.readouterr().err
    assert torch.load(tmp_path / "s.pt").shape == (4, 2, 16, 16)
    # a missing teacher and a wrong data size are named
    assert main(["rsd", "distill", "--config", str(CONFIGS / "rsd-distill-tiny.yaml"), "--set",
                 f"teacher={tmp_path / 'none.safetensors'}", "--quiet"]) == 2
    assert "checkpoint: no such file" in capsys.readouterr().err
    assert main(["rsd", "distill", "--config", str(CONFIGS / "rsd-distill-tiny.yaml"), "--set",
                 f"teacher={teachers['mri']}", "--set", "data.size=32", "--quiet"]) == 2
    assert "data.size: 32, but the teacher was trained at 16" in capsys.readouterr().err


@pytest.mark.parametrize("override,message", [
    ({"teacher": ""}, r"^teacher: expected the path"),
    ({"sid.alpha": -1}, r"^sid\.alpha: expected a positive number"),
    ({"sid.t_max": 1.5}, r"^sid\.t_max: expected a number in \(0, 1\]"),
    ({"sid.fake_steps": 0}, r"^sid\.fake_steps"),
    ({"optim.betas": [0.0, 1.0]}, r"^optim\.betas"),
    ({"select.best": "b.pt"}, r"^select\.best"),
    ({"run.stepz": 1}, r"^run\.stepz: unknown key"),
])
def test_bad_distill_config_values_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_distill_config(CONFIGS / "rsd-distill-tiny.yaml", override)


def test_shipped_distill_config_loads_with_sids_defaults():
    cfg = load_distill_config(CONFIGS / "rsd-distill-blur.yaml")
    assert (cfg.sid.alpha, cfg.sid.t_max, cfg.sid.sigma_init, cfg.optim.betas) == (1.2, 0.8, 2.5, (0.0, 0.999))


def test_two_processes_stay_identical(tmp_path, teachers):
    """accelerate DDP on 2 CPU processes (gloo): generator and fake score are averaged across ranks
    (the fake score is called unwrapped in the generator step, so no stray gradient sync), both
    ranks end with the same weights, one export."""
    import sys

    from safetensors import safe_open
    from safetensors.torch import load_file

    sys.path.insert(0, str(Path(__file__).parent))
    from test_train_ddp import _run, torchrun_command

    cmd = torchrun_command()
    if cmd is None:
        pytest.skip("torchrun not installed")
    out = tmp_path / "ddp"
    _run([*cmd, "--standalone", "--nproc_per_node", "2", str(Path(__file__).with_name("ddp_rsd_distill.py")),
          str(teachers["inpainting"]), str(out)], tmp_path)
    r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    with safe_open(str(out / "rank1.safetensors"), "pt") as f:
        assert f.metadata() == {"processes": "2", "distributed": "MULTI_CPU"}
    assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"
    load_student(out / "student.safetensors")
