"""One RSD distillation iteration (fake-score step + generator step, ``Distiller.train_step``) at the
paper's 64x64 shapes on the CPU: our operators vs the same iteration with deepinv's (``Blur`` with
the same 9x9 std-2 filter and reflect padding; ``Inpainting`` with a ``torch.bernoulli`` mask).
Grey 64 px, batch 4, the teacher's UNet at reduced width (channels 32/64/64, attention at the
lowest level).

    pytest benchmarks/test_distill_step.py --benchmark-only

Groups ``rsd_distill_step_<task>_64``.
"""
import pytest
import torch

from hypir.rsd.config import DataConfig, DistillConfig, DistillOptimConfig, DistillRunConfig, NetConfig, TaskConfig
from hypir.rsd.distill import Distiller
from hypir.rsd.objectives import further_mask
from hypir.rsd.tasks import Blur, Inpainting, make_task
from hypir.rsd.teacher import build_denoiser, save_teacher
from hypir_kernels.bench.blur import filter_2d

SIZE, BATCH, ROUNDS = 64, 4, 8


class DeepinvBlur(Blur):
    """The same task with deepinv's operator (the anchor)."""

    def observe(self, x, seed):
        import deepinv

        t = self.cfg
        physics = deepinv.physics.Blur(filter=filter_2d(t.blur_size, t.blur_sigma)[None, None], padding="reflect")
        return physics.A(x), None


class DeepinvInpainting(Inpainting):
    """The same task with deepinv's operator and a ``torch.bernoulli`` mask (the anchor)."""

    def observe(self, x, seed):
        import deepinv

        t = self.cfg
        g = torch.Generator().manual_seed(seed)
        mask = torch.bernoulli(torch.full((x.shape[0], 1, *x.shape[-2:]), t.keep), generator=g)
        physics = deepinv.physics.Inpainting(img_size=tuple(x.shape[1:]), mask=mask)
        return physics.A(x), (mask, further_mask(mask, t.delta, seed + 1))


@pytest.fixture(scope="module", params=["blur", "inpainting"])
def teacher(request, tmp_path_factory):
    task = TaskConfig(kind=request.param)
    net = NetConfig(channels=(32, 64, 64), layers_per_block=1, attention=True)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_teacher(build_denoiser(net, 1, make_task(task).cond_channels, SIZE), path, net, task, 1, SIZE)
    return request.param, path


@pytest.mark.parametrize("impl", ["ours", "deepinv"])
def test_distill_step(benchmark, teacher, impl, tmp_path):
    if impl == "deepinv":
        pytest.importorskip("deepinv")
    task, path = teacher
    cfg = DistillConfig(teacher=str(path), data=DataConfig(size=SIZE), optim=DistillOptimConfig(batch_size=BATCH),
                        run=DistillRunConfig(output_dir=str(tmp_path), mixed_precision="no"))
    d = Distiller(cfg, progress=False)
    if impl == "deepinv":
        d.view = {"blur": DeepinvBlur, "inpainting": DeepinvInpainting}[task](d.task)
    benchmark.group = f"rsd_distill_step_{task}_{SIZE}"
    d.train_step(0)  # warm-up
    logs = benchmark.pedantic(lambda: d.train_step(1), rounds=ROUNDS, warmup_rounds=0)
    assert all(torch.isfinite(torch.tensor([logs["loss_g"], logs["loss_fake"]])))
