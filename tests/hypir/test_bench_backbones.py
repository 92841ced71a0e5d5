"""hypir.bench.backbones: both variants of each comparison compute the same thing (the anchor on
peft's layers and diffusers' stock modules), and the released models' sizes are those published."""
import math

import pytest
import torch

from hypir.bench.backbones import released_sizes, restorers, train_trainers

pytest.importorskip("diffusers")


def test_released_sizes_are_the_published_ones():
    n = released_sizes()
    # SD2.1 UNet 865 M, SDXL UNet 2.567 B, SD3.5 Large 8.06 B, Flux.1 [dev] 11.9 B; T5-XXL encoder 4.76 B
    for backbone, (lo, hi) in {"sd2": (0.86e9, 0.87e9), "sdxl": (2.56e9, 2.57e9), "sd3": (8.0e9, 8.1e9),
                               "flux": (11.85e9, 11.95e9)}.items():
        assert lo < n[backbone]["denoiser"] < hi, (backbone, n[backbone])
    assert 4.7e9 < n["flux"]["text"] - 123e6 < 4.8e9 and 83e6 < n["sd2"]["vae"] < 84e6
    assert all(0.01 * v["denoiser"] < v["lora"] < 0.1 * v["denoiser"] for v in n.values())  # rank 64: 2-8 %


@pytest.mark.parametrize("backbone", ["sdxl", "flux"])
def test_pipeline_variants_compute_the_same(tmp_path, backbone):
    rs = restorers(backbone, str(tmp_path / "r"), rank=4)
    assert rs["ours"].merged and not rs["peft"].merged
    image = torch.rand(3, 24, 32, generator=torch.Generator().manual_seed(0))
    assert (rs["ours"](image, upscale=2) - rs["peft"](image, upscale=2)).abs().max() < 2 / 255
    ts = train_trainers(backbone, str(tmp_path / "t"), size=64, batch=1, rank=4)
    lora_layer = lambda t: next(m for n, m in t._net.named_modules() if n.endswith("to_q"))  # noqa: E731
    assert getattr(lora_layer(ts["ours"]), "_hk_patched", False)
    assert not getattr(lora_layer(ts["peft"]), "_hk_patched", False) and ts["peft"].degrade_ops is None
    from hypir.bench.train import batches

    data = batches(ts["ours"], 1)
    a, b = ts["ours"].train_step(0, data), ts["peft"].train_step(0, data)
    assert math.isclose(a["mse"], b["mse"], rel_tol=1e-4) and math.isclose(a["loss_d"], b["loss_d"], rel_tol=1e-4)
