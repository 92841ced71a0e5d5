"""hypir.rsd.tasks: one class per task owns its operator, its dataset, its phase-II observation and
its evaluation view; the phase-I data and the phase-II observation are the same operator."""
from pathlib import Path

import pytest
import torch

from hypir.rsd.config import TASK_KINDS, TaskConfig
from hypir.rsd.tasks import MRI, TASKS, Blur, Clean, Inpainting, SR, Task, corrupt, make_task


def _images(n=4, c=1, s=16, seed=0):
    return torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_every_kind_has_a_class_and_make_task_picks_it():
    assert set(TASKS) == set(TASK_KINDS)
    for cls in (Clean, Blur, SR, Inpainting, MRI):
        task = make_task(TaskConfig(kind=cls.kind))
        assert type(task) is cls and task.kind == cls.kind
        assert make_task(task) is task
    with pytest.raises(ValueError, match="^task"):
        make_task({"kind": "blur"})
    with pytest.raises(ValueError, match="^task"):
        Blur(TaskConfig(kind="sr"))


def test_channels_per_task():
    assert make_task(TaskConfig(kind="mri")).image_channels(1) == 2
    assert make_task(TaskConfig(kind="blur")).image_channels(3) == 3
    assert [make_task(TaskConfig(kind=k)).cond_channels for k in ("clean", "blur", "sr", "inpainting", "mri")] == [0, 0, 0, 1, 1]
    assert make_task(TaskConfig(kind="inpainting")).masked_pixels and not make_task(TaskConfig(kind="mri")).masked_pixels


@pytest.mark.parametrize("kind", ["blur", "sr", "inpainting"])
def test_the_dataset_and_the_distillers_observation_are_one_operator(kind):
    """Noiseless, the fixed dataset of x equals the phase-II observation of x under the same seed."""
    task = make_task(TaskConfig(kind=kind, keep=0.3))
    x = _images()
    data = task.dataset(x, seed=7)
    w, ctx = task.observe(x, 7)
    torch.testing.assert_close(data.y, w, rtol=0, atol=1e-6)
    if kind == "inpainting":
        assert torch.equal(data.mask, ctx[0]) and bool((ctx[1] <= ctx[0]).all())
    else:
        assert data.mask is None and ctx is None
    torch.testing.assert_close(task.proximal_view(x, 7), data.y)


def test_noisy_datasets_and_proximal_views_carry_the_tasks_noise():
    task = make_task(TaskConfig(kind="blur", sigma_n=0.2))
    x = _images(32, 1, 32)
    clean = task.A(x)
    for y in (task.dataset(x).y, task.proximal_view(x, 3)):
        assert float((y - clean).std()) == pytest.approx(0.2, rel=0.05)
    assert not torch.equal(task.proximal_view(x, 3), task.proximal_view(x, 4))  # fresh draws per seed


def test_image_datasets_do_not_depend_on_the_batch():
    x = _images(6)
    data = corrupt(x, "inpainting", sigma_n=0.1, seed=2, keep=0.5)
    part = corrupt(x[:3], "inpainting", sigma_n=0.1, seed=2, keep=0.5)
    assert torch.equal(data.y[:3], part.y) and torch.equal(data.mask[:3], part.mask)


def test_mri_dataset_and_observation_keep_only_acquired_columns():
    task = make_task(TaskConfig(kind="mri", coils=3, acceleration=4, center_fraction=0.125))
    data = task.dataset(_images(4, 1, 16))
    assert data.y.shape == (4, 3, 16, 16) and data.y.is_complex() and data.maps.shape == (3, 16, 16)
    assert torch.equal(data.y * (data.mask == 0).view(4, 1, 1, 16), torch.zeros_like(data.y))
    x = torch.randn(2, 2, 16, 16)
    w, (mask, further) = task.observe(x, 5)
    assert torch.equal(w * (mask == 0).view(2, 1, 1, 16), torch.zeros_like(w))
    assert bool(((further != 0) <= (mask != 0)).all())
    assert task.proximal_view(x, 5).shape == (2, 1, 16, 16)
    assert task.data_view(data).shape == (4, 1, 16, 16)
    with pytest.raises(ValueError, match="^x"):
        task.dataset(_images(2, 3, 16))


def test_fixed_conditioning_is_what_the_teacher_sees():
    inp = make_task(TaskConfig(kind="inpainting", keep=0.5, delta=0.2))
    cond = inp.fixed_conditioning(3, 8, seed=1)
    assert cond["seen"].shape == (3, 1, 8, 8)

    class Probe(torch.nn.Module):
        def forward(self, x, sigma, cond=None, seen=None):
            self.args = (x, cond, seen)
            return x

    probe = Probe()
    x = torch.randn(3, 1, 8, 8)
    inp.denoise_fixed(probe, cond, x, 1.0)
    assert torch.equal(probe.args[0], cond["seen"] * x) and probe.args[1] is probe.args[2]
    assert make_task(TaskConfig(kind="blur")).fixed_conditioning(3, 8, 1) == {}


def test_no_task_kind_switch_is_left_outside_the_task_classes():
    """A new task is one class in tasks.py: the phases, the sampler and the evaluation ask the task
    object, not ``task.kind`` (the config validates kinds; that is all)."""
    rsd = Path(__file__).parents[2] / "hypir" / "rsd"
    for path in rsd.glob("*.py"):
        if path.name in ("tasks.py", "config.py"):
            continue
        text = path.read_text()
        assert "kind ==" not in text and "kind in (" not in text, path.name
    assert issubclass(MRI, Task)
