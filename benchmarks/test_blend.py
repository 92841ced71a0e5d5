"""Tiled-overlap blending, 2048x2048 RGB, tile 512, stride 448, gaussian weights (CPU).

    pytest benchmarks/test_blend.py --benchmark-only

Group ``blend_tiles``: ours vs (a) the accumulate-with-count loop (MultiDiffusion / DiffBIR /
HYPIR) and (b) diffusers' blend_v/blend_h tiled-VAE merge.

Warm-up: on a fresh (virtual) machine the first touches of fresh memory are several times
slower than later ones, whichever case makes them; the module fixture runs every case a few
times before anything is timed, so no case is charged for warming the memory of the others.
"""
import pytest
import torch

from hypir_kernels.bench import blend as case

ROUNDS, WARMUP = 15, 5


@pytest.fixture(scope="module")
def inputs():
    image, tiles, origins = case.make_case()
    case.warm_up(image, tiles, origins)
    return image, tiles, origins


@pytest.mark.benchmark(group="blend_tiles")
def test_ours(benchmark, inputs):
    _, tiles, origins = inputs
    assert case.check(tiles, origins) <= 1e-5
    out = benchmark.pedantic(case.ours, args=(tiles, origins), rounds=ROUNDS, warmup_rounds=WARMUP)
    assert out.shape == (1, 3, case.SIZE, case.SIZE)


@pytest.mark.benchmark(group="blend_tiles")
def test_ours_without_output_cache(benchmark, inputs, monkeypatch):
    # Same kernel, every output freshly allocated (page faults included), as the anchors do.
    import hypir_kernels as hk

    monkeypatch.setenv("HYPIR_KERNELS_CPU_CACHE_MB", "0")
    hk.empty_cpu_cache()
    _, tiles, origins = inputs
    benchmark.pedantic(case.ours, args=(tiles, origins), rounds=ROUNDS, warmup_rounds=WARMUP)


@pytest.mark.benchmark(group="blend_tiles")
def test_anchor_accumulate_with_count(benchmark, inputs):
    _, tiles, origins = inputs
    weights = case.gaussian_tile_weights(case.TILE, case.CHANNELS)
    out = benchmark.pedantic(case.accumulate_with_count, args=(tiles, origins, weights), rounds=ROUNDS, warmup_rounds=WARMUP)
    # Same weights up to the constant factor: the anchor reproduces the image too.
    torch.testing.assert_close(out, inputs[0], rtol=1e-5, atol=1e-5)


@pytest.mark.benchmark(group="blend_tiles")
def test_anchor_diffusers_blend(benchmark, inputs):
    pytest.importorskip("diffusers")
    image = inputs[0]
    out = benchmark.pedantic(
        case.diffusers_merge, setup=lambda: ((case.diffusers_grid_tiles(image),), {}), rounds=ROUNDS, warmup_rounds=WARMUP
    )
    torch.testing.assert_close(out, image)


@pytest.mark.gpu
@pytest.mark.benchmark(group="blend_tiles_cuda")
@pytest.mark.parametrize("impl", ["cuda", "triton", "accumulate_with_count"])
def test_gpu_blend(benchmark, impl):
    import hypir_kernels as hk

    _, tiles, origins = case.make_case()
    tiles = tiles.cuda()
    if impl == "accumulate_with_count":
        weights = case.gaussian_tile_weights(case.TILE, case.CHANNELS).cuda()

        def run():
            res = case.accumulate_with_count(tiles, origins, weights)
            torch.cuda.synchronize()
            return res
    else:
        def run():
            with hk.use_backend(impl):
                res = case.ours(tiles, origins)
            torch.cuda.synchronize()
            return res
    benchmark.pedantic(run, rounds=20, warmup_rounds=3)
