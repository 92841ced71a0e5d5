"""Attention benchmarks.

    pytest benchmarks/test_attention.py --benchmark-only

* CPU, group ``attention_unet_cpu``: a small UNet2DConditionModel forward with our processor vs
  diffusers' default ``AttnProcessor2_0`` (our op takes SDPA on the CPU: no added overhead).
* GPU (``gpu`` marker, skipped without CUDA), groups ``attention_<shape>_<fwd|fwd+bwd>``: the
  SD2.1 attention shapes at 512 and 1024 px in bf16, ours (``backend="auto"``) and our Triton
  kernel (``ours_triton``) vs SDPA flash, memory-efficient, cuDNN (sm_90+) and xformers (when installed); ``extra_info["tflops"]`` holds each implementation's TFLOP/s.
"""
import pytest
import torch

from hypir_kernels.bench import attention as case

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def unets():
    return {name: case.make_unet(name) for name in ("ours", "default")}


@pytest.mark.parametrize("processor", ["ours", "default"])
def test_unet_processor_cpu(benchmark, unets, processor):
    benchmark.group = "attention_unet_cpu"
    inputs = case.unet_inputs()
    out = benchmark.pedantic(lambda: case.run_unet(unets[processor], inputs), rounds=9, warmup_rounds=2)
    torch.testing.assert_close(out, case.run_unet(unets["default"], inputs))


GPU_SHAPES = case.sd2_shapes(512) + case.sd2_shapes(1024)


@pytest.mark.gpu
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=[s.name.replace(" ", "_") for s in GPU_SHAPES])
@pytest.mark.parametrize("impl", ["ours", "ours_triton", "sdpa_flash", "sdpa_efficient", "sdpa_cudnn", "xformers"])
def test_attention_gpu(benchmark, impl, shape, backward):
    impls = case.implementations()
    if impl not in impls:
        pytest.skip(f"{impl} unavailable: {case.unavailable().get(impl, 'not installed')}")
    fn = impls[impl]
    benchmark.group = f"attention_{shape.name.replace(' ', '_')}_{'fwd+bwd' if backward else 'fwd'}"
    q, k, v, go = case.make_qkv(shape, requires_grad=backward)

    def run():
        case.step(fn, q, k, v, go, backward)
        torch.cuda.synchronize()

    benchmark.pedantic(run, rounds=20, warmup_rounds=3)
    benchmark.extra_info["tflops"] = shape.flops(backward) / benchmark.stats.stats.median / 1e12
    with torch.no_grad():
        torch.testing.assert_close(fn(q, k, v).float(), impls["sdpa_flash"](q, k, v).float(), rtol=2e-2, atol=2e-2)
