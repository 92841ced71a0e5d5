"""HYPIR restoration, 256x256 x4 -> 1024x1024, SD2.1 architecture at reduced width with the
released LoRA (rank 256, 13 targets): ours vs the released-style loop (see :mod:`hypir.bench.restore`).

    pytest benchmarks/test_restore.py --benchmark-only

Group ``hypir_restore_cpu``: ``released`` (the released preset: peft unmerged, 512/256 px + 64/32
latent tiles one at a time), ``ours_same_plan`` (the Restorer with that plan), ``ours_auto``
(``tile="auto"``), each in fp32 and bf16 (``released_bf16``: the release's path in bf16, stock
diffusers). The ``gpu`` group runs SD2.1's real widths in bf16 (random weights).
"""
import pytest
import torch

from hypir.bench import restore as bench


CPU_CASES = [f"{case}_{dtype}" for dtype in ("fp32", "bf16") for case in ("released", "ours_same_plan", "ours_auto")]


@pytest.fixture(scope="module")
def setup():
    runs, _ = bench.cpu_cases(bench.make_image())
    for fn in runs.values():  # warm every case (and the auto plan's memory probes) before timing
        fn()
    return runs


@pytest.mark.parametrize("case", CPU_CASES)
def test_restore_cpu(benchmark, setup, case):
    benchmark.group = "hypir_restore_cpu"
    out = benchmark.pedantic(setup[case], rounds=3, warmup_rounds=0)
    assert out.shape[-2:] == (1024, 1024)


@pytest.fixture(scope="module")
def setup_gpu():
    ours, released = bench.make_restorers(device="cuda", dtype="bf16", widths=bench.SD21_WIDTHS)
    image = bench.make_image().cuda()
    runs = bench.cases(ours, released, image)
    for fn in runs.values():
        fn()
    return runs


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["released", "ours_same_plan", "ours_auto"])
def test_restore_gpu_sd21_bf16(benchmark, setup_gpu, case):
    benchmark.group = "hypir_restore_gpu_sd21_bf16"
    out = benchmark.pedantic(setup_gpu[case], rounds=5, warmup_rounds=1)
    assert out.shape[-2:] == (1024, 1024)
    if case == "ours_auto":
        assert benchmark.stats.stats.median < 0.2, "goal: <= 200 ms per 1024 px image on an H100"
    torch.cuda.synchronize()
