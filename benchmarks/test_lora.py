"""SD2 LoRA layer suite (CPU, fp32): every LoRA-targeted layer of the SD2.1 UNet at its shape for
one 256x256 image, forward + backward, plain peft vs ``hypir_kernels.lora.patch_peft`` (auto).

    pytest benchmarks/test_lora.py --benchmark-only

One round runs each distinct layer shape as many times as the UNet has it (257 layers, 45
shapes), so a round's time is the suite total. ``extra_info["saved_bytes"]`` holds the bytes
autograd saves across the suite. Groups ``lora_sd2_r256`` and ``lora_sd2_r64``. The ``gpu``
group runs the 512 px shapes in bf16 against peft and the plain base layer.
"""
import pytest
import torch

from hypir_kernels import lora
from hypir_kernels.bench import lora as suite

pytest.importorskip("peft")
pytest.importorskip("diffusers")


def _layers(resolution=256):
    return suite.sd2_lora_layers(resolution)


@pytest.fixture(scope="module")
def layers():
    return _layers()


def _suite_fn(layers, rank, patched, dtype=torch.float32, device="cpu"):
    work = []
    saved = 0
    for layer, count in layers.items():
        holder = suite.make_peft_layer(layer, rank, dtype).to(device)
        x = suite.make_input(layer, dtype).detach().to(device).requires_grad_()
        if patched:
            lora.patch_peft(holder)
        saved += count * suite.saved_bytes(holder, x)
        work.append((holder, x, count))

    def run():
        for holder, x, count in work:
            for _ in range(count):
                x.grad = None
                holder.zero_grad(set_to_none=True)
                suite.step(holder, x)
        if device == "cuda":
            torch.cuda.synchronize()

    return run, saved


@pytest.mark.parametrize("rank", [256, 64])
@pytest.mark.parametrize("impl", ["ours", "peft"])
def test_sd2_lora_suite(benchmark, layers, impl, rank):
    benchmark.group = f"lora_sd2_r{rank}"
    run, saved = _suite_fn(layers, rank, patched=impl == "ours")
    benchmark.extra_info["saved_bytes"] = saved
    benchmark.pedantic(run, rounds=3, warmup_rounds=1)


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["ours", "peft", "base_only"])
def test_sd2_lora_suite_gpu_bf16_512px(benchmark, impl):
    layers = _layers(512)
    benchmark.group = "lora_sd2_r256_gpu_bf16_512px"
    if impl == "base_only":  # the frozen layers alone: the floor any LoRA implementation pays
        work = []
        for layer, count in layers.items():
            base = suite.make_peft_layer(layer, 1, torch.bfloat16).layer.get_base_layer().cuda()
            work.append((base, suite.make_input(layer, torch.bfloat16).detach().cuda().requires_grad_(), count))

        def run():
            for base, x, count in work:
                for _ in range(count):
                    out = base(x)
                    out.backward(torch.ones_like(out))
            torch.cuda.synchronize()
    else:
        run, saved = _suite_fn(layers, 256, impl == "ours", torch.bfloat16, "cuda")
        benchmark.extra_info["saved_bytes"] = saved
    benchmark.pedantic(run, rounds=5, warmup_rounds=1)
