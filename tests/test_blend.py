"""Tiled-overlap blending: plan_tiles, blend_tiles (every backend vs the reference), tiled_apply."""
import itertools

import pytest
import torch

import hypir_kernels as hk
from hypir_kernels.testing import assert_close, compare_backends, runnable_backends

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _cut(image, origins, tile):
    return torch.stack([image[:, :, y : y + tile, x : x + tile] for y, x in origins.tolist()], dim=1)


# ---- plan_tiles -------------------------------------------------------------------------


@pytest.mark.parametrize("size,tile,stride", [(100, 32, 24), (64, 64, 64), (65, 64, 64), (10, 32, 16), (97, 8, 3), (1, 1, 1)])
def test_plan_tiles_covers_regularly_and_flush(size, tile, stride):
    o = hk.plan_tiles(size, size + 3, tile, stride)
    assert o.dtype == torch.int64 and o.dim() == 2 and o.shape[1] == 2
    ys = sorted(set(o[:, 0].tolist()))
    assert ys[0] == 0
    if size > tile:
        assert ys[-1] == size - tile  # flush with the far edge
        steps = [b - a for a, b in zip(ys, ys[1:])]
        assert all(s == stride for s in steps[:-1]) and 0 < steps[-1] <= stride
    else:
        assert ys == [0]
    # row-major: y outer
    xs = sorted(set(o[:, 1].tolist()))
    assert o.tolist() == [[y, x] for y in ys for x in xs]


@pytest.mark.parametrize("kwargs,arg", [
    (dict(height=10, width=10, tile=8, stride=9), "stride"),
    (dict(height=10, width=10, tile=0, stride=1), "tile"),
    (dict(height=10, width=10, tile=8, stride=0), "stride"),
    (dict(height=0, width=10, tile=8, stride=4), "height"),
    (dict(height=10, width=10.0, tile=8, stride=4), "width"),
])
def test_plan_tiles_bad_input(kwargs, arg):
    with pytest.raises(ValueError, match=f"^{arg}"):
        hk.plan_tiles(**kwargs)


# ---- blend_tiles vs reference, every backend ----------------------------------------------

CASES = [  # H, W, tile, stride
    (40, 37, 16, 12),
    (33, 70, 16, 16),  # stride == tile: no overlap
    (5, 3, 8, 8),  # image smaller than one tile
    (26, 26, 10, 3),  # heavy overlap, several tiles per pixel
    (17, 64, 17, 9),
]


@pytest.mark.parametrize("weight", hk.WEIGHTS)
@pytest.mark.parametrize("H,W,tile,stride", CASES)
def test_backends_match_reference_fp32(H, W, tile, stride, weight):
    o = hk.plan_tiles(H, W, tile, stride)
    tiles = torch.randn(2, o.shape[0], 2, tile, tile)
    outs = compare_backends("blend_tiles", lambda: hk.blend_tiles(tiles, o, H, W, weight=weight), msg=f"{H}x{W} {weight}")
    assert outs["reference"].shape == (2, 2, H, W)


def _released_accumulate(tiles, origins, H, W, tile):
    """The released HYPIR's tiled blend written out: out += w * tile, count += w, out / count, with
    w = outer(gy, gx), gx centred at (tile - 1) / 2, gy at tile / 2, both std 0.1 tile."""
    p = torch.arange(tile, dtype=torch.float64)
    gx = torch.exp(-((p - (tile - 1) / 2) ** 2) / tile**2 / 0.02)
    gy = torch.exp(-((p - tile / 2) ** 2) / tile**2 / 0.02)
    w = gy[:, None] * gx[None, :]
    out = torch.zeros(tiles.shape[0], tiles.shape[2], H, W, dtype=torch.float64)
    count = torch.zeros(H, W, dtype=torch.float64)
    for n, (y, x) in enumerate(origins.tolist()):
        out[:, :, y : y + tile, x : x + tile] += w * tiles[:, n].double()
        count[y : y + tile, x : x + tile] += w
    return out / count


@pytest.mark.parametrize("H,W,tile,stride", [(40, 37, 16, 12), (26, 26, 10, 3), (96, 128, 64, 32)])
def test_gaussian_released_is_the_released_blend(H, W, tile, stride):
    o = hk.plan_tiles(H, W, tile, stride)
    tiles = torch.randn(1, o.shape[0], 2, tile, tile)
    expected = _released_accumulate(tiles, o, H, W, tile).float()
    outs = compare_backends("blend_tiles", lambda: hk.blend_tiles(tiles, o, H, W, weight="gaussian_released"))
    for name, out in outs.items():
        assert_close(out, expected, msg=name)
    # and it is not the symmetric Gaussian (a y centre of (tile - 1) / 2 fails the check above)
    assert (hk.blend_tiles(tiles, o, H, W, weight="gaussian") - expected).abs().max() > 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight", hk.WEIGHTS)
def test_backends_match_reference_dtypes(dtype, weight):
    H, W, tile, stride = 29, 41, 12, 8
    o = hk.plan_tiles(H, W, tile, stride)
    tiles = torch.randn(1, o.shape[0], 2, tile, tile).to(dtype)
    run = lambda: hk.blend_tiles(tiles, o, H, W, weight=weight)  # noqa: E731
    if dtype == torch.float64:  # Triton kernel is fp32/fp16/bf16 only: compare cpu alone
        with hk.use_backend("reference"):
            ref = run()
        with hk.use_backend("cpu"):
            assert_close(run(), ref)
        return
    outs = compare_backends("blend_tiles", run)
    assert all(v.dtype == dtype for v in outs.values())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight", hk.WEIGHTS)
@pytest.mark.parametrize("H,W,tile,stride", CASES)
def test_cuda_per_pixel_code_matches_reference(H, W, tile, stride, weight, dtype):
    # Tier 1 for the CUDA kernel: hk::blend::blend_pixel, the code each CUDA thread runs, executed
    # on the CPU through a test-only op, against the reference.
    from hypir_kernels.blend import _axis_overlap

    o = hk.plan_tiles(H, W, tile, stride)
    tiles = torch.randn(2, o.shape[0], 2, tile, tile).to(dtype)
    ys = sorted(set(o[:, 0].tolist()))
    xs = sorted(set(o[:, 1].tolist()))
    out = torch.ops.hypir_kernels._blend_tiles_pixelwise(
        tiles, torch.tensor(ys), torch.tensor(xs), H, W, hk.WEIGHTS.index(weight), _axis_overlap(ys, tile), _axis_overlap(xs, tile)
    )
    with hk.use_backend("reference"):
        assert_close(out, hk.blend_tiles(tiles, o, H, W, weight=weight))


def test_sixteen_bit_accumulates_in_fp32():
    # Up to 36 overlapping tiles of 1.0 per pixel: a 16-bit accumulator would drift; fp32 keeps 1.
    H = W = 24
    o = hk.plan_tiles(H, W, 12, 2)
    for dtype in (torch.float16, torch.bfloat16):
        tiles = torch.ones(1, o.shape[0], 1, 12, 12, dtype=dtype)
        for b in runnable_backends("blend_tiles"):
            with hk.use_backend(b):
                out = hk.blend_tiles(tiles, o, H, W, weight="linear")
            assert torch.equal(out, torch.ones_like(out)), (dtype, b)


def test_sixteen_bit_rounding_matches_torch():
    # Uniform weights on two overlapping tiles: the fp32 result (a+b)/2 is exact, so the only
    # rounding is the final fp32 -> 16-bit cast, which must match torch bit for bit (incl.
    # subnormals, infinities and nan).
    special = torch.tensor([0.0, -0.0, 1e-7, -3e-6, 6.1e-5, 65504.0, 70000.0, float("inf"), float("nan"), 1.0 / 3])
    for dtype in (torch.float16, torch.bfloat16):
        a = torch.cat([special, torch.randn(246) * 1e3]).to(dtype).reshape(1, 1, 16, 16)
        b = torch.cat([special.flip(0), torch.randn(246)]).to(dtype).reshape(1, 1, 16, 16)
        tiles = torch.stack([a, b], dim=1)  # both tiles at the same origin? no: a 16x24 image
        origins = torch.tensor([[0, 0], [0, 8]])
        expected_mid = ((a[..., 8:].float() + b[..., :8].float()) / 2).to(dtype)
        with hk.use_backend("cpu"):
            out = hk.blend_tiles(tiles, origins, 16, 24, weight="uniform")
        assert torch.equal(out[..., :8], a[..., :8]) or torch.allclose(out[..., :8].float(), a[..., :8].float(), equal_nan=True)
        got, want = out[..., 8:16].view(torch.int16), expected_mid.view(torch.int16)
        assert torch.equal(got, want), dtype


def test_non_contiguous_tiles():
    H, W, tile, stride = 30, 30, 12, 9
    o = hk.plan_tiles(H, W, tile, stride)
    base = torch.randn(o.shape[0], 2, 3, tile + 4, tile)  # permuted and sliced view
    tiles = base.permute(1, 0, 2, 3, 4)[..., 2 : 2 + tile, :]
    tiles = tiles.transpose(-1, -2)  # last-dim stride != 1
    assert not tiles.is_contiguous()
    outs = compare_backends("blend_tiles", lambda: hk.blend_tiles(tiles, o, H, W))
    assert_close(outs["reference"], hk.blend_tiles(tiles.contiguous(), o, H, W))


@pytest.mark.parametrize("weight", hk.WEIGHTS)
def test_constant_tiles_give_constant_image(weight):
    H, W, tile, stride = 45, 31, 16, 7
    o = hk.plan_tiles(H, W, tile, stride)
    tiles = torch.full((1, o.shape[0], 2, tile, tile), 3.25)
    for b in runnable_backends("blend_tiles") + ["reference"]:
        with hk.use_backend(b):
            out = hk.blend_tiles(tiles, o, H, W, weight=weight)
        torch.testing.assert_close(out, torch.full_like(out, 3.25), rtol=1e-6, atol=0)


def test_weights_are_symmetric_in_x_and_y():
    # A square tile with a single bright pixel: the blended contribution pattern is the same
    # under a transpose (the CCSR/DiffBIR weight centres x at (W-1)/2 but y at H/2; ours does not).
    H = W = 24
    o = hk.plan_tiles(H, W, 16, 8)
    img = torch.randn(1, 1, H, W)
    tiles = _cut(img, o, 16) * torch.linspace(0.5, 2, o.shape[0]).view(1, -1, 1, 1, 1)
    out = hk.blend_tiles(tiles, o, H, W)
    tiles_t = _cut(img.transpose(-1, -2), o, 16) * torch.linspace(0.5, 2, o.shape[0]).view(1, -1, 1, 1, 1)
    # transposing the image permutes tiles (y, x) -> (x, y); reorder the scale factors to match
    n = int(o.shape[0] ** 0.5)
    scales = torch.linspace(0.5, 2, o.shape[0]).view(n, n).t().reshape(1, -1, 1, 1, 1)
    tiles_t = _cut(img.transpose(-1, -2), o, 16) * scales
    out_t = hk.blend_tiles(tiles_t, o, H, W)
    assert_close(out_t.transpose(-1, -2), out)


def test_gaussian_weights_never_underflow():
    # A corner pixel covered by one tile gets its smallest weight (exp(-12.5)^2); it must still
    # normalise to exactly that tile's value, for large tiles too.
    for tile in (8, 512):
        o = hk.plan_tiles(tile, tile, tile, tile)
        tiles = torch.randn(1, 1, 1, tile, tile)
        for b in runnable_backends("blend_tiles"):
            if b == "triton" and tile > 64:
                continue  # interpreter is slow; the math is identical
            with hk.use_backend(b):
                out = hk.blend_tiles(tiles, o, tile, tile)
            torch.testing.assert_close(out[0], tiles[0, 0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("scale,tile,stride", [(8, 4, 3), (0.125, 32, 16), (2, 6, 6)])
def test_scale(scale, tile, stride):
    H, W = (10, 13) if scale > 1 else (48, 80)
    o = hk.plan_tiles(H, W, tile, stride)
    t_out = int(tile * scale)
    tiles = torch.randn(1, o.shape[0], 2, t_out, t_out)
    outs = compare_backends("blend_tiles", lambda: hk.blend_tiles(tiles, o, H, W, scale=scale))
    assert outs["reference"].shape == (1, 2, int(H * scale), int(W * scale))


def test_tiles_sticking_out_are_cropped():
    # A 10x10 image blended from one 16x16 tile: the output is the tile's top-left 10x10.
    tiles = torch.randn(1, 1, 2, 16, 16)
    out = compare_backends("blend_tiles", lambda: hk.blend_tiles(tiles, torch.zeros(1, 2, dtype=torch.long), 10, 10))
    assert_close(out["cpu"], tiles[0, :, :, :10, :10])


def test_gradient_is_the_adjoint():
    H, W, tile, stride = 20, 18, 8, 5
    o = hk.plan_tiles(H, W, tile, stride)
    tiles = torch.randn(1, o.shape[0], 2, tile, tile, dtype=torch.float64, requires_grad=True)
    for weight in hk.WEIGHTS:
        torch.autograd.gradcheck(lambda t: hk.blend_tiles(t, o, H, W, weight=weight), (tiles,))


def test_torch_compile_fullgraph():
    H, W, tile, stride = 30, 26, 12, 8
    o = hk.plan_tiles(H, W, tile, stride)
    tiles = torch.randn(1, o.shape[0], 3, tile, tile)

    pairs = [tuple(p) for p in o.tolist()]

    def f(t):
        return hk.blend_tiles(t * 2, pairs, H, W) + 1

    compiled = torch.compile(f, fullgraph=True, backend="eager")
    assert_close(compiled(tiles), f(tiles))
    assert_close(f(tiles), hk.blend_tiles(tiles * 2, o, H, W) + 1)  # both origin forms agree


# ---- identity through tiled_apply -----------------------------------------------------------

IDENTITY_CASES = list(itertools.product([(64, 64), (100, 77), (31, 130), (5, 9), (16, 16), (17, 33)], [(16, 12), (16, 16), (32, 8), (20, 19)]))


@pytest.mark.parametrize("size,ts", IDENTITY_CASES)
def test_tiled_apply_identity(size, ts):
    H, W = size
    tile, stride = ts
    x = torch.randn(2, 3, H, W)
    for weight in hk.WEIGHTS:
        y = hk.tiled_apply(lambda t: t, x, tile, stride, weight=weight)
        err = (y - x).abs().max() / x.abs().max()
        assert y.shape == x.shape and err <= 1e-6, (weight, err)


def test_tiled_apply_whole_image_is_fn_of_x():
    x = torch.randn(1, 3, 20, 24)
    fn = lambda t: t - t.mean(dim=(-1, -2), keepdim=True)  # noqa: E731  (global, not local)
    assert torch.equal(hk.tiled_apply(fn, x, tile=32, stride=16), fn(x))


@pytest.mark.parametrize("scale", [8, 0.125])
def test_tiled_apply_with_scale(scale):
    x = torch.randn(1, 2, 48, 40)
    if scale == 8:
        fn = lambda t: torch.nn.functional.interpolate(t, scale_factor=8, mode="nearest")  # noqa: E731
        y = hk.tiled_apply(fn, x, tile=16, stride=12, scale=8)
        assert_close(y, fn(x))
    else:
        fn = lambda t: torch.nn.functional.avg_pool2d(t, 8)  # noqa: E731
        y = hk.tiled_apply(fn, x, tile=16, stride=8, scale=scale)
        assert_close(y, fn(x))


def test_tiled_apply_chunks_bound_the_batch():
    seen = []

    def fn(t):
        seen.append(t.shape[0])
        return t

    x = torch.randn(2, 1, 40, 40)
    hk.tiled_apply(fn, x, tile=16, stride=8, batch_tiles=3)
    assert max(seen) <= 3 and sum(seen) == 2 * hk.plan_tiles(40, 40, 16, 8).shape[0]


def test_tiled_apply_progress_bar(capsys):
    hk.tiled_apply(lambda t: t, torch.randn(1, 1, 40, 40), 16, 8, progress=True)
    assert "tiles" in capsys.readouterr().err


def test_tiled_apply_bad_fn_output():
    with pytest.raises(ValueError, match="^fn"):
        hk.tiled_apply(lambda t: t[..., :-1], torch.randn(1, 1, 40, 40), 16, 8)


# ---- bad input -------------------------------------------------------------------------------


def _ok():
    o = hk.plan_tiles(20, 20, 8, 6)
    return torch.randn(1, o.shape[0], 1, 8, 8), o


@pytest.mark.parametrize("mutate,arg", [
    (lambda t, o: (t[0], o, 20, 20, {}), "tiles"),  # wrong dims
    (lambda t, o: (t.int(), o, 20, 20, {}), "tiles"),  # wrong dtype
    (lambda t, o: (t[:, :-1], o, 20, 20, {}), "origins"),  # tile count mismatch
    (lambda t, o: (t, o.float(), 20, 20, {}), "origins"),
    (lambda t, o: (t, o[:, :1], 20, 20, {}), "origins"),
    (lambda t, o: (t, o + 30, 20, 20, {}), "origins"),  # outside the image
    (lambda t, o: (t, o.flip(0), 20, 20, {}), "origins"),  # not row-major
    (lambda t, o: (t, o * 2, 40, 40, {}), "origins"),  # gaps: pixels covered by no tile
    (lambda t, o: (t, o, 0, 20, {}), "height"),
    (lambda t, o: (t, o, 20, 20, {"weight": "box"}), "weight"),
    (lambda t, o: (t, o, 20, 20, {"scale": -1}), "scale"),
    (lambda t, o: (t, o, 21, 20, {"scale": 0.5}), "height"),  # 21 * 0.5 is not whole
    (lambda t, o: (t, o, 20, 20, {"scale": 0.3}), "origins"),  # 6 * 0.3 is not whole
    (lambda t, o: (t, [(0.0, 0.0)] * o.shape[0], 20, 20, {}), "origins"),
    (lambda t, o: (t, o.numpy(), 20, 20, {}), "origins"),
])
def test_blend_tiles_bad_input(mutate, arg):
    t, o = _ok()
    tiles, origins, h, w, kw = mutate(t, o)
    with pytest.raises(ValueError, match=f"^{arg}"):
        hk.blend_tiles(tiles, origins, h, w, **kw)


@pytest.mark.parametrize("kwargs,arg", [
    (dict(tile=8, stride=9), "stride"),
    (dict(tile=0, stride=1), "tile"),
    (dict(tile=8, stride=4, batch_tiles=0), "batch_tiles"),
    (dict(tile=8, stride=4, weight="box"), "weight"),
])
def test_tiled_apply_bad_input(kwargs, arg):
    with pytest.raises(ValueError, match=f"^{arg}"):
        hk.tiled_apply(lambda t: t, torch.randn(1, 1, 20, 20), **kwargs)
    with pytest.raises(ValueError, match="^x"):
        hk.tiled_apply(lambda t: t, torch.randn(20, 20), 8, 4)
    with pytest.raises(ValueError, match="^x: expected dtype"):
        hk.tiled_apply(lambda t: t.float(), torch.zeros(1, 1, 20, 20, dtype=torch.int64), 8, 4)
    with pytest.raises(ValueError, match="^fn: expected a callable"):
        hk.tiled_apply(None, torch.randn(1, 1, 20, 20), 8, 4)


@pytest.mark.parametrize("shape", [(0, 3, 20, 20), (1, 0, 20, 20), (1, 3, 0, 20), (2, 3, 20, 0)])
def test_tiled_apply_empty_input_is_fn_of_x(shape):
    """Nothing to tile: fn sees x itself (padding an empty plane raised inside F.pad)."""
    x = torch.zeros(shape)
    out = hk.tiled_apply(lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2), x, 8, 4, scale=2)
    assert out.shape == (*shape[:2], shape[2] * 2, shape[3] * 2)


def test_kernel_op_rejects_bad_geometry_itself():
    # The C++ op checks again (it is callable directly), so a bad call cannot read out of bounds.
    tiles = torch.randn(1, 4, 1, 8, 8)
    ys = torch.tensor([0, 6])
    with pytest.raises(ValueError, match="xs"):
        torch.ops.hypir_kernels._blend_tiles(tiles, ys, torch.tensor([0, 20]), 14, 14, 0, 2, 2)
    with pytest.raises(ValueError, match="tiles"):
        torch.ops.hypir_kernels._blend_tiles(tiles, ys, torch.tensor([0, 6, 9]), 14, 14, 0, 2, 2)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight", hk.WEIGHTS)
def test_cuda_backends_match_reference(dtype, weight):
    H, W, tile, stride = 300, 257, 64, 48
    o = hk.plan_tiles(H, W, tile, stride)
    tiles = torch.randn(2, o.shape[0], 3, tile, tile, device="cuda").to(dtype)
    run = lambda: hk.blend_tiles(tiles, o, H, W, weight=weight)  # noqa: E731
    with hk.use_backend("reference"):
        ref = run()
    for b in ("cuda", "triton") if dtype != torch.float64 else ("cuda",):
        with hk.use_backend(b):
            assert_close(run(), ref, msg=b)


# ---- property tests (CPU backend vs reference on random geometry) ----------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(
    H=st.integers(1, 40), W=st.integers(1, 40), tile=st.integers(1, 20), frac=st.floats(0.05, 1.0),
    weight=st.sampled_from(hk.WEIGHTS), dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_property_cpu_matches_reference_and_identity(H, W, tile, frac, weight, dtype):
    stride = max(1, int(tile * frac))
    o = hk.plan_tiles(H, W, tile, stride)
    g = torch.Generator().manual_seed(H * 100003 + W * 1009 + tile)  # hypothesis replays need the same data
    tiles = torch.randn(1, o.shape[0], 2, tile, tile, dtype=dtype, generator=g)
    Hc, Wc = max(H, tile), max(W, tile)  # blend on the padded canvas, as tiled_apply does
    with hk.use_backend("reference"):
        ref = hk.blend_tiles(tiles, hk.plan_tiles(Hc, Wc, tile, stride), Hc, Wc, weight=weight)
    with hk.use_backend("cpu"):
        out = hk.blend_tiles(tiles, hk.plan_tiles(Hc, Wc, tile, stride), Hc, Wc, weight=weight)
        x = torch.randn(1, 2, H, W, dtype=dtype, generator=g)
        y = hk.tiled_apply(lambda t: t, x, tile, stride, weight=weight)
    assert_close(out, ref)
    # identity up to rounding: a pixel sums up to (tile / stride)^2 weighted copies of itself
    covering = min(tile, -(-tile // stride)) ** 2
    eps = torch.finfo(dtype).eps
    assert (y - x).abs().max() <= 4 * covering * eps * x.abs().max()


def test_no_full_resolution_weight_or_count_buffer(monkeypatch):
    # The only image-sized allocation of the C++ path is the output itself (the reference, by
    # contrast, allocates a canvas and a weight sum). The output cache is off so that every
    # allocation goes through torch's allocator, where the profiler sees it.
    from torch.profiler import ProfilerActivity, profile

    monkeypatch.setenv("HYPIR_KERNELS_CPU_CACHE_MB", "0")
    o = hk.plan_tiles(256, 256, 64, 56)
    tiles = torch.randn(1, o.shape[0], 3, 64, 64)

    def allocated(backend_name):
        with hk.use_backend(backend_name):
            hk.blend_tiles(tiles, o, 256, 256)  # warm
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                out = hk.blend_tiles(tiles, o, 256, 256)
        return out.nbytes, sum(e.self_cpu_memory_usage for e in prof.events() if e.self_cpu_memory_usage > 0)

    out_bytes, cpu_bytes = allocated("cpu")
    assert cpu_bytes <= out_bytes + 4096, (cpu_bytes, out_bytes)
    out_bytes, ref_bytes = allocated("reference")
    assert ref_bytes > 2 * out_bytes  # the measurement does see canvases when they exist
