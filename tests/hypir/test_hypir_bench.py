"""The restoration benchmark's anchor: the released-style loop (unmerged peft LoRA, tiles one at a
time, accumulate-with-count blending) must compute what the Restorer computes with the same plan,
so the benchmark compares equal work. An independent implementation of the tiling, it also pins
the Restorer's tile placement and blending tightly."""

from hypir.bench import SD21_WIDTHS, make_image, make_restorers, released_style
from hypir.models.lora import HYPIR_TARGETS
from hypir.testing import sd2_configs


def test_released_style_anchor_matches_the_restorer_with_the_same_plan():
    widths = dict(unet_width=32, vae_width=8, text_width=32, heads=1, sample_size=8)
    assert sd2_configs(**widths)["unet"]["block_out_channels"] == (32, 64, 128, 128)
    ours, released = make_restorers(rank=8, widths=widths)
    image = make_image(64)  # x2 -> 128 px: 3 x 3 tiles of 64 px at stride 32, 8/4 latent tiles
    want = released_style(released, image[0:1], upscale=2, tile=64, stride=32)
    got = ours(image, upscale=2, tile=64, stride=32, batch_tiles=2)
    assert {p.tile for p in ours.last.plans.values()} == {64, 8}
    assert got.shape == want.shape == (1, 3, 128, 128)
    assert (got - want).abs().max() < 2e-4  # merged vs unmerged LoRA rounding only
    untiled = ours(image, upscale=2)
    assert (untiled - want).abs().max() > 1e-2  # and the plan matters


def test_sd21_widths_are_sd21_and_the_targets_are_the_kernel_suites():
    from hypir_kernels.bench import lora as kernel_suite

    unet = sd2_configs(**SD21_WIDTHS)["unet"]
    assert {k: unet[k] for k in kernel_suite.SD21_UNET} == kernel_suite.SD21_UNET
    assert sorted(HYPIR_TARGETS) == sorted(kernel_suite.HYPIR_TARGETS)
    vae = sd2_configs(**SD21_WIDTHS)["vae"]
    assert vae["block_out_channels"] == (128, 256, 512, 512) and vae["norm_num_groups"] == 32
