"""The HYPIR restorer on a tiny SD2-architecture model: sizes, tiling, merging, controls, memory."""
import warnings

import pytest
import torch
from PIL import Image

import hypir_kernels as hk
from hypir import Restorer
from hypir.models.texture import texture_richness
from hypir.pipelines.memory import PeakMemory
from hypir.pipelines.restorer import _resize


def _image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(h, w), mode="bilinear")
    return (smooth + 0.15 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)[0]


@pytest.mark.parametrize("h, w, upscale", [(21, 33, 2), (40, 24, 1.5), (7, 9, 4)])
def test_output_size_is_upscale_times_input(restorer, h, w, upscale):
    out = restorer(_image(h, w), upscale=upscale)
    assert out.shape == (3, round(h * upscale), round(w * upscale))
    assert out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert restorer.last.output_size == (round(h * upscale), round(w * upscale))
    assert set(restorer.last.seconds) == {"encode", "unet", "decode"} and min(restorer.last.seconds.values()) > 0


def test_pil_in_pil_out(restorer):
    arr = (_image(20, 30).permute(1, 2, 0).numpy() * 255).astype("uint8")
    out = restorer(Image.fromarray(arr), upscale=2)
    assert isinstance(out, Image.Image) and out.size == (60, 40) and out.mode == "RGB"


def test_small_images_are_restored_at_the_native_size_and_resized_back(tmp_path, model_dir, checkpoint):
    # native size = UNet sample_size x 8 = 64 px for the test model; a 32 px result is worked at 64 px
    r = Restorer.from_pretrained(model_dir, checkpoint["pth"], device="cpu")
    out = r(_image(16, 24), upscale=2)
    assert out.shape == (3, 32, 48) and r.last.work_size == (64, 96)


def test_one_tile_covering_the_image_equals_untiled(restorer):
    x = _image(40, 56)
    whole = restorer(x, upscale=2)
    assert all(p.tile is None for p in restorer.last.plans.values())
    covering = restorer(x, upscale=2, tile=128, stride=64)  # padded image 128 x 128: one tile
    assert all(p.tile is None for p in restorer.last.plans.values())
    assert torch.equal(whole, covering)


def test_tiled_is_close_to_untiled(restorer):
    # Tiles see less context (the UNet's attention and every GroupNorm are global), so tiled
    # results differ from untiled ones, and with random weights more than with trained ones.
    # Stated tolerance for this model (192 px output, 128/64 px tiles, 16/8 latent tiles): mean
    # absolute difference below 0.15, where restorations of different images differ by > 0.2.
    # (test_hypir_bench checks the tiling itself tightly, against an independent implementation.)
    x = _image(96, 96)
    whole = restorer(x, upscale=2)
    tiled = restorer(x, upscale=2, tile=128, stride=64)
    plans = restorer.last.plans
    assert (plans["encode"].tile, plans["unet"].tile, plans["decode"].tile, plans["unet"].stride) == (128, 16, 16, 8)
    assert (tiled - whole).abs().mean() < 0.15
    for seed in (9, 10):
        assert (restorer(_image(96, 96, seed=seed), upscale=2) - whole).abs().mean() > 0.2


def test_merged_equals_unmerged(model_dir, checkpoint):
    x = _image(30, 30)
    merged = Restorer.from_pretrained(model_dir, checkpoint["safetensors"], device="cpu")
    unmerged = Restorer.from_pretrained(model_dir, checkpoint["pth"], device="cpu", merge=False)
    assert merged.merged and not unmerged.merged
    assert not any("lora" in n for n, _ in merged.components.unet.named_parameters())  # adapters unloaded
    assert any("lora" in n for n, _ in unmerged.components.unet.named_parameters())
    a, b = merged(x, upscale=2), unmerged(x, upscale=2)
    assert (a - b).abs().max() < 2e-4
    plain = Restorer.from_pretrained(model_dir, None, device="cpu")  # no LoRA: the LoRA matters
    assert (plain(x, upscale=2) - a).abs().max() > 1e-2


def test_noise_and_seed_controls(restorer):
    x = _image(32, 32)
    base = restorer(x, upscale=2, seed=0)
    assert torch.equal(base, restorer(x, upscale=2, seed=123))  # noise 0: deterministic, seed unused
    n1 = restorer(x, upscale=2, noise=0.5, seed=1)
    assert torch.equal(n1, restorer(x, upscale=2, noise=0.5, seed=1))
    n2 = restorer(x, upscale=2, noise=0.5, seed=2)
    assert (n1 - n2).abs().max() > 1e-2 and (n1 - base).abs().max() > 1e-2
    stronger = restorer(x, upscale=2, noise=2.0, seed=1)
    assert (stronger - base).abs().mean() > (n1 - base).abs().mean()


def test_prompt_conditions_the_result(restorer):
    x = _image(32, 32)
    assert (restorer(x, upscale=2, prompt="a cat") - restorer(x, upscale=2)).abs().max() > 1e-4


def test_texture_is_a_no_op_without_the_embedding_and_warns(model_dir, checkpoint):
    r = Restorer.from_pretrained(model_dir, checkpoint["safetensors"], device="cpu")
    x = _image(32, 32)
    plain = r(x, upscale=2)
    with pytest.warns(UserWarning, match="no texture-richness embedding"):
        low = r(x, upscale=2, texture=5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        high = r(x, upscale=2, texture=5000.0)  # warned once per restorer
    assert torch.equal(plain, low) and torch.equal(low, high) and r.last.texture is None


def test_texture_conditions_a_checkpoint_with_the_embedding(model_dir, texture_checkpoint):
    r = Restorer.from_pretrained(model_dir, texture_checkpoint, device="cpu")
    assert r.has_texture_control
    x = _image(32, 32)
    low, high = r(x, upscale=2, texture=5.0), r(x, upscale=2, texture=5000.0)
    assert (low - high).abs().max() > 1e-3
    auto = r(x, upscale=2)
    expected = texture_richness(_resize(x[None], 64, 64)).item()
    assert r.last.texture == pytest.approx(expected)
    assert torch.equal(auto, r(x, upscale=2, texture=r.last.texture))


def test_memory_budget_bounds_every_pass(restorer):
    """The plan's estimate bounds the measured peak of a call, and the plan keeps it within the
    budget: a budget below the whole-image peak forces tiles whose measured peak fits it."""
    x = _image(96, 96)
    restorer(x, upscale=2)
    whole = restorer.last.plans
    budget = int(0.6 * max(p.estimate for p in whole.values()))
    restorer(x, upscale=2, max_memory=budget)
    plans = restorer.last.plans
    assert all(p.estimate <= budget for p in plans.values())
    tiled = [name for name, p in whole.items() if p.estimate > budget]
    assert tiled and all(plans[name].tile is not None for name in tiled)
    c = restorer.components
    size = {"encode": 192, "unet": 24, "decode": 24}  # the padded 192 px image, in each pass's units
    calls = {
        "encode": (restorer._encode_fn(None), 3),
        "unet": (restorer._unet_fn(restorer._conditioning(""), None), 4),
        "decode": (restorer._decode_fn(), 4),
    }
    with torch.inference_mode():
        for name, (fn, ch) in calls.items():
            t = plans[name].tile or size[name]
            inp = torch.randn(plans[name].batch, ch, t, t)
            with PeakMemory("cpu") as m:
                fn(inp)
            assert m.peak <= plans[name].estimate <= budget, name
    assert c.vae_scale == 8


def test_bad_arguments_name_themselves(restorer):
    x = _image(16, 16)
    for kwargs, name in [({"upscale": 0}, "upscale"), ({"noise": -1.0}, "noise"), ({"seed": -1}, "seed"),
                         ({"seed": 1.5}, "seed"), ({"tile": 100}, "tile"), ({"tile": 128, "stride": 12}, "stride"),
                         ({"max_memory": 0}, "max_memory"), ({"texture": -2.0}, "texture"), ({"batch_tiles": 0}, "batch_tiles"),
                         ({"prompt": 3}, "prompt")]:
        with pytest.raises(ValueError, match=name):
            restorer(x, **kwargs)
    for bad in (torch.rand(4, 16, 16), torch.rand(2, 3, 8, 8), torch.zeros(3, 0, 8), "image.png"):
        with pytest.raises(ValueError, match="image"):
            restorer(bad)
    with pytest.raises(ValueError, match="max_memory: .* too small"):
        restorer(x, max_memory=1000)


def test_constructor_checks(model_dir):
    with pytest.raises(ValueError, match="model_t"):
        Restorer.from_pretrained(model_dir, None, model_t=1000)
    with pytest.raises(ValueError, match="dtype"):
        Restorer.from_pretrained(model_dir, None, dtype="int8")
    with pytest.raises(ValueError, match="attention"):
        Restorer.from_pretrained(model_dir, None, attention="xformers")


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_runs_close_to_fp32(model_dir, checkpoint, dtype):
    x = _image(32, 32)
    ref = Restorer.from_pretrained(model_dir, checkpoint["safetensors"], device="cpu")(x, upscale=2)
    half = Restorer.from_pretrained(model_dir, checkpoint["safetensors"], device="cpu", dtype=dtype)
    assert half.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    out = half(x, upscale=2)
    assert out.dtype == torch.float32 and (out - ref).abs().mean() < 0.05


@pytest.mark.gpu
def test_cuda_matches_cpu(model_dir, checkpoint):
    x = _image(48, 40)
    cpu = Restorer.from_pretrained(model_dir, checkpoint["safetensors"], device="cpu")(x, upscale=2)
    gpu = Restorer.from_pretrained(model_dir, checkpoint["safetensors"], device="cuda", dtype="fp32")
    out = gpu(x.cuda(), upscale=2)
    assert out.device.type == "cuda" and (out.cpu() - cpu).abs().max() < 1e-2
    gpu(x.cuda(), upscale=2, noise=0.3, seed=4)
    assert gpu.last.plans["unet"].tile is None


def test_auto_dtype_on_the_cpu_is_bf16_where_the_cpu_has_it(monkeypatch):
    """``dtype="auto"``: bf16 on CPUs with native bf16 (AVX512-BF16 / AMX), fp32 elsewhere, and
    ``HYPIR_AUTO_CPU_DTYPE`` overrides the detection (the suite pins fp32 with it)."""
    from hypir.pipelines import devices as r

    cpu = torch.device("cpu")
    monkeypatch.delenv(r.AUTO_CPU_DTYPE_ENV, raising=False)
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(r, "cpu_has_native_bf16", lambda native=native: native)
        assert r.resolve_dtype("auto", cpu) == expected
        assert r.resolve_dtype("fp32", cpu) == torch.float32  # an explicit dtype is kept
    monkeypatch.setenv(r.AUTO_CPU_DTYPE_ENV, "bf16")
    assert r.resolve_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setenv(r.AUTO_CPU_DTYPE_ENV, "fp16")
    with pytest.raises(ValueError, match=r.AUTO_CPU_DTYPE_ENV):
        r.resolve_dtype("auto", cpu)


def test_native_bf16_detection_reads_the_cpu_flags():
    import os

    from hypir.pipelines.devices import cpu_has_native_bf16

    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo to compare with")
    flags = set(open("/proc/cpuinfo").read().split())
    assert cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_one_step_formula_runs_in_fp32_for_bf16_runs():
    """x0 = (z - sqrt(1 - abar) eps) / sqrt(abar) is taken in fp32 and rounded once to the run dtype."""
    from types import SimpleNamespace

    from hypir.models.onestep import OneStep

    sched = SimpleNamespace(config=SimpleNamespace(num_train_timesteps=1000, prediction_type="epsilon"),
                            alphas_cumprod=torch.linspace(0.99, 0.01, 1000))

    class Eps(torch.nn.Module):
        def forward(self, z, t, encoder_hidden_states=None, class_labels=None):
            return SimpleNamespace(sample=(z * 0.7 + 0.3).to(z.dtype))

    step = OneStep(sched, 200, 200)
    z = torch.randn(2, 4, 8, 8).to(torch.bfloat16)
    x0 = step(Eps(), z, torch.zeros(1, 77, 8))
    eps = (z * 0.7 + 0.3).to(torch.bfloat16).float()
    want = ((z.float() - step.sqrt_1m_abar * eps) / step.sqrt_abar).to(torch.bfloat16)
    assert x0.dtype == torch.bfloat16 and torch.equal(x0, want)


def test_the_default_preset_runs_channels_last_through_vae_and_unet(model_dir, checkpoint):
    """No op hands a convolution or GroupNorm an NCHW tensor (diffusers' attention blocks copy to
    NCHW; hypir.models.sd2.keep_channels_last keeps their outputs channels-last); the values equal
    the unpatched UNet's up to convolution rounding."""
    from hypir.models.sd2 import _continuous_output_channels_last

    r = Restorer.from_pretrained(model_dir, checkpoint["safetensors"], device="cpu")
    x = _image(40, 40)
    r(x, upscale=2)  # the memory probes (tiny inputs) first
    formats = {}

    def hook(name):
        def record(module, args, output):
            t = args[0]
            if t.dim() == 4 and t.shape[1] > 1 and t.shape[2] * t.shape[3] > 1:
                formats.setdefault(name, set()).add(not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last))
        return record

    handles = [m.register_forward_hook(hook(f"{part}.{n}"))
               for part in ("vae", "unet") for n, m in getattr(r.components, part).named_modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.GroupNorm))]
    out = r(x, upscale=2)
    for h in handles:
        h.remove()
    assert len(formats) > 100 and not [n for n, f in formats.items() if False in f]
    blocks = [m for m in r.components.unet.modules() if "_get_output_for_continuous_inputs" in vars(m)]
    assert blocks and all(m._get_output_for_continuous_inputs.__func__ is _continuous_output_channels_last for m in blocks)
    for m in blocks:  # back to diffusers' own method: the same picture
        del m._get_output_for_continuous_inputs
    torch.testing.assert_close(r(x, upscale=2), out, rtol=0, atol=1e-4)  # conv rounding in NCHW vs NHWC


def test_the_default_preset_fuses_group_norm_and_silu_on_the_cpu(model_dir, checkpoint):
    """Default preset on the CPU: every GroupNorm of the VAE and UNet runs hypir_kernels.group_norm_silu
    (torch's group_norm is never called) and the picture equals the unfused one up to fp32 rounding;
    the released preset keeps torch's ops."""
    import dataclasses

    from hypir.pipelines.presets import get_preset

    x = _image(40, 40)
    unfused = Restorer.from_pretrained(model_dir, checkpoint["safetensors"], device="cpu",
                                       preset=dataclasses.replace(get_preset("default"), fused_group_norm=False))
    expected = unfused(x, upscale=2)
    r = Restorer.from_pretrained(model_dir, checkpoint["safetensors"], device="cpu")
    assert isinstance(r.components.vae.decoder.conv_norm_out, hk.GroupNormSiLU)
    calls = []
    original = torch.nn.functional.group_norm
    torch.nn.functional.group_norm = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        out = r(x, upscale=2)
    finally:
        torch.nn.functional.group_norm = original
    assert calls == []
    torch.testing.assert_close(out, expected, rtol=0, atol=5e-4)  # seen: 1.4e-4 (0.04/255)
    released = Restorer.from_pretrained(model_dir, checkpoint["safetensors"], device="cpu", preset="released")
    assert not any(isinstance(m, hk.GroupNormSiLU) for m in released.components.vae.modules())
