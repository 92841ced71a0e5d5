"""A whole HYPIR training step and a whole restoration per backbone (SD2, SDXL, SD3, Flux.1) at
reduced width on the CPU (UNets 64 wide, transformers 256 with 2 + 2 blocks; LoRA rank 64; fp32):
ours vs the same work built with peft's LoRA layers and diffusers' stock modules
(``hypir.bench.backbones``: ``train_trainers``, ``restorers``).

    pytest benchmarks/test_backbone_pipelines.py --benchmark-only
"""
import pytest
import torch

from hypir.bench.backbones import ALL_BACKBONES, restorers, train_trainers
from hypir.bench.train import batches


@pytest.fixture(scope="module", params=ALL_BACKBONES)
def trainers(request, tmp_path_factory):
    ts = train_trainers(request.param, str(tmp_path_factory.mktemp(request.param)))
    data = batches(ts["ours"], 1)
    for t in ts.values():  # both warmed up before either is timed
        t.train_step(0, data)
    return request.param, ts, data


@pytest.mark.parametrize("variant", ["ours", "peft"])
def test_backbone_train_step(benchmark, trainers, variant):
    backbone, ts, data = trainers
    benchmark.group = f"train_step_{backbone}_2x128_r64"
    logs = benchmark.pedantic(lambda: ts[variant].train_step(1, data), rounds=5, warmup_rounds=0)
    assert logs["loss_g"] > 0


@pytest.fixture(scope="module", params=ALL_BACKBONES)
def pipelines(request, tmp_path_factory):
    rs = restorers(request.param, str(tmp_path_factory.mktemp(request.param)))
    image = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(0))
    outs = {k: r(image, upscale=2) for k, r in rs.items()}  # warm-up; the same picture both ways
    assert (outs["ours"] - outs["peft"]).abs().max() < 2 / 255
    return request.param, rs, image


@pytest.mark.parametrize("variant", ["ours", "peft"])
def test_backbone_restore(benchmark, pipelines, variant):
    backbone, rs, image = pipelines
    benchmark.group = f"restore_{backbone}_128x96_x2"
    benchmark.pedantic(lambda: rs[variant](image, upscale=2), rounds=5, warmup_rounds=0)
