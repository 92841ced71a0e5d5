"""The main job (``python -m hypir_kernels.bench``): checks and times every family."""
import importlib.util
import subprocess
import sys

import torch

from hypir_kernels import bench
from hypir_kernels.bench import blend as case


def test_time_ms_runs_setup_untimed():
    calls = []
    ms = bench.time_ms(lambda arg: calls.append(arg), setup=lambda: "fresh", repeats=3, warmup=1)
    assert calls == ["fresh"] * 4 and ms >= 0


def test_blend_case_anchors_agree_with_ours():
    # On a small case all three produce the image the tiles were cut from.
    image, tiles, origins = case.make_case(size=96, tile=32, stride=24, channels=2)
    ours = case.ours(tiles, origins, 96)
    acc = case.accumulate_with_count(tiles, origins, case.gaussian_tile_weights(32, 2), 96)
    merged = case.diffusers_merge(case.diffusers_grid_tiles(image, 32, 24), 32, 24)
    for out in (ours, acc, merged):
        torch.testing.assert_close(out, image, rtol=1e-5, atol=1e-5)
    assert case.check(tiles, origins, 96) < 1e-5


def test_main_job_prints_a_table_with_ratios():
    res = subprocess.run([sys.executable, "-m", "hypir_kernels.bench", "--repeats", "1"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "accumulate+count loop" in res.stdout and "diffusers blend_v/blend_h" in res.stdout
    assert "x |" in res.stdout and "ok" in res.stdout
    deepinv = importlib.util.find_spec("deepinv") is not None and importlib.util.find_spec("torchvision") is not None
    assert "gaussian_blur" in res.stdout and ("deepinv Blur" if deepinv else "deepinv (not installed)") in res.stdout
    assert "FAIL" not in res.stdout
    assert "diffusers AttnProcessor2_0" in res.stdout
    assert "SD2 256px 257 layers r=256" in res.stdout and "| peft" in res.stdout
    assert "torch rand-compare-multiply" in res.stdout
    assert "deepinv MultiCoilMRI" in res.stdout and "BasicSR grouped conv2d" in res.stdout


def test_attention_shapes_and_flops():
    from hypir_kernels.bench import attention

    shapes = attention.sd2_shapes(512)
    assert [(s.sq, s.heads) for s in shapes if "self" in s.name] == [(4096, 5), (1024, 10), (256, 20), (64, 20)]
    assert {s.sk for s in shapes if "cross" in s.name} == {77}
    assert [s.sq for s in attention.sd2_shapes(1024) if "self" in s.name] == [16384, 4096, 1024, 256]
    s = shapes[0]
    assert s.flops(False) == 4 * 2 * 5 * 4096 * 4096 * 64 and s.flops(True) == 3.5 * s.flops(False)


def test_sd2_lora_layer_list():
    from hypir_kernels.bench import lora

    layers = lora.sd2_lora_layers(256)
    assert sum(layers.values()) == 257  # every HYPIR-targeted Linear/Conv2d of SD2.1's UNet
    assert layers[lora.Layer("linear", (1, 1024, 320), (320, 320))] == 40  # level-1 q/k/v/out, proj_in/out
    assert layers[lora.Layer("linear", (1, 77, 1024), (320, 1024))] == 10  # cross-attention k/v
    assert layers[lora.Layer("conv", (1, 320, 32, 32), (4, 320, 3, 3), (1, 1), (1, 1))] == 1  # conv_out


def test_lora_multiply_add_bound():
    """The arithmetic behind the rank-256 suite's ceiling: per-formulation multiply-adds on a
    hand-checked layer, and the suite bound (peft over the cheapest exact formulation per layer)."""
    from hypir_kernels.bench import lora

    layer = lora.Layer("linear", (1, 64, 1280), (1280, 1280))  # 64 tokens, 1280 -> 1280
    n, d, r = 64, 1280, 256
    macs = lora.training_macs(layer, r)
    assert macs["peft"] == 2 * n * d * d + 6 * n * d * r
    assert macs["weight"] == 3 * n * d * d + 3 * d * d * r
    assert macs["mixed"] == 2 * n * d * d + 2 * n * d * r + 3 * n * d * r + d * d * r
    assert min(macs, key=macs.get) == "peft"  # few tokens: nothing beats peft's own products
    big = lora.training_macs(lora.Layer("linear", (1, 4096, 320), (320, 320)), r)
    assert min(big, key=big.get) == "weight"
    layers = lora.sd2_lora_layers(256)
    assert 1.10 < lora.work_bound(layers, 256) < 1.15
    assert 1.0 <= lora.work_bound(layers, 64) < 1.05
