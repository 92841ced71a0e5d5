"""The restoration benchmark's anchor is the released preset (held to the official enhancer in
``test_pipelines_released.py``), on the same weights as ours, and does the same tiled work as
``ours_same_plan``: the same passes, tile sizes and strides, so the benchmark compares equal work."""

import torch

from hypir.bench.restore import SD21_WIDTHS, cases, cpu_cases, make_image, make_restorers
from hypir.models.lora import HYPIR_TARGETS
from hypir.testing import sd2_configs


def test_the_anchor_is_the_released_preset_with_the_same_plan():
    widths = dict(unet_width=32, vae_width=8, text_width=32, heads=1, sample_size=8)
    assert sd2_configs(**widths)["unet"]["block_out_channels"] == (32, 64, 128, 128)
    ours, released = make_restorers(rank=8, widths=widths)
    assert released.preset.name == "released" and not released.merged and ours.merged
    image = make_image(80)
    runs = cases(ours, released, image)
    assert set(runs) == {"released", "ours_same_plan", "ours_auto"}
    released(image, upscale=8)  # 640 px: the released plan's 512/256 px encoder tiles, 64/32 latent
    ours(image, upscale=8, tile=512, stride=256)
    plan = lambda r: {k: (p.tile, p.stride) for k, p in r.last.plans.items()}  # noqa: E731
    assert plan(released) == plan(ours)
    assert released.last.plans["encode"].tile == 512 and released.last.plans["unet"].tile == 64


def test_sd21_widths_are_sd21_and_the_targets_are_the_kernel_suites():
    from hypir_kernels.bench import lora as kernel_suite

    unet = sd2_configs(**SD21_WIDTHS)["unet"]
    assert {k: unet[k] for k in kernel_suite.SD21_UNET} == kernel_suite.SD21_UNET
    assert sorted(HYPIR_TARGETS) == sorted(kernel_suite.HYPIR_TARGETS)
    vae = sd2_configs(**SD21_WIDTHS)["vae"]
    assert vae["block_out_channels"] == (128, 256, 512, 512) and vae["norm_num_groups"] == 32


def test_the_cpu_table_runs_each_case_in_fp32_and_bf16_on_the_same_weights():
    widths = dict(unet_width=32, vae_width=8, text_width=32, heads=1, sample_size=8)
    runs, restorers = cpu_cases(make_image(16), widths=widths, rank=8)
    assert set(runs) == {f"{c}_{d}" for c in ("released", "ours_same_plan", "ours_auto") for d in ("fp32", "bf16")}
    (o32, r32), (o16, r16) = restorers["fp32"], restorers["bf16"]
    assert (o32.dtype, r32.dtype, o16.dtype, r16.dtype) == (torch.float32, torch.float32, torch.bfloat16, torch.bfloat16)
    assert r16.preset.name == "released" and not r16.merged
    w32 = r32.components.vae.decoder.conv_out.weight
    torch.testing.assert_close(r16.components.vae.decoder.conv_out.weight.float(), w32, rtol=1e-2, atol=1e-2)
