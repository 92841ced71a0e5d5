"""hypir_kernels masks: Philox (known-answer vectors of Random123, agreement with Triton's
philox), bit-identical masks across backends, keep rates, the further mask being a subset,
seeds and offsets, autograd as the adjoint, and bad input."""
import pytest
import torch

import hypir_kernels as hk
from hypir_kernels import use_backend
from hypir_kernels.reference import masks as ref
from hypir_kernels.testing import runnable_backends


def _u32(*values):
    return [torch.tensor([v], dtype=torch.int64) for v in values]


@pytest.mark.parametrize(
    "counter,key,expected",
    [  # Random123 kat_vectors, philox4x32_10
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ],
)
def test_philox_known_answers(counter, key, expected):
    assert tuple(int(v) for v in ref.philox4x32_10(*_u32(*counter), *key)) == expected


def test_philox_matches_triton():
    triton = pytest.importorskip("triton")
    import triton.language as tl

    from hypir_kernels.triton import interpreter_active

    if not (torch.cuda.is_available() or interpreter_active()):
        pytest.skip("Triton needs a GPU or the interpreter")

    @triton.jit
    def kernel(out, seed, N: tl.constexpr):
        i = tl.arange(0, N).to(tl.uint32)
        z = tl.zeros_like(i)
        a, b, c, d = tl.random.philox(seed, i, z + 7, z + 3, z)
        base = tl.arange(0, N) * 4
        tl.store(out + base, a.to(tl.int64) & 0xFFFFFFFF)
        tl.store(out + base + 1, b.to(tl.int64) & 0xFFFFFFFF)
        tl.store(out + base + 2, c.to(tl.int64) & 0xFFFFFFFF)
        tl.store(out + base + 3, d.to(tl.int64) & 0xFFFFFFFF)

    # a GPU machine runs Triton on CUDA tensors (no interpreter there); CPU ones under it
    device = "cpu" if interpreter_active() else "cuda"
    out = torch.zeros(64, dtype=torch.int64, device=device)
    kernel[(1,)](out, 2**40 + 12345, N=16)
    out = out.cpu()
    n = torch.arange(16)
    ours = ref.philox4x32_10(n, torch.full((16,), 7), torch.full((16,), 3), torch.zeros(16, dtype=torch.int64),
                             12345, 2**40 >> 32)
    assert torch.equal(out.reshape(16, 4), torch.stack(ours, -1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=str)
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("shape", [(3, 2, 37, 41), (1, 1, 1, 3), (2, 4, 5, 1)])
def test_cuda_group_code_matches_reference(shape, shared, dtype):
    """The CUDA kernel's per-group code (mask::apply_group), run on the CPU by a test hook, draws
    the reference's masks bit for bit (the CPU launcher has its own chunked loop)."""
    from hypir_kernels.masks import _thresholds

    x = torch.randn(shape).to(dtype)
    offsets = [11 + b for b in range(shape[0])]
    threshold, further = _thresholds(0.37, 0.25)
    out = torch.ops.hypir_kernels._apply_mask_groupwise(x, 2**33 + 5, offsets, threshold, further, shared)
    with use_backend("reference"):
        ref = hk.apply_mask(x, 0.37, 2**33 + 5, shared_channels=shared, offsets=offsets, further_delta=0.25)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    assert 0 < (out[0] != 0).sum() < x.numel()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("shape", [(3, 2, 37, 41), (1, 1, 1, 3), (2, 4, 5, 1)])
def test_backends_bit_identical(shape, shared, dtype):
    x = torch.randn(shape).to(dtype)
    outs = {}
    for name in ["reference"] + runnable_backends("apply_mask"):
        with use_backend(name):
            outs[name] = hk.apply_mask(x, 0.37, 2**33 + 5, shared_channels=shared, offsets=[11 + b for b in range(shape[0])],
                                       further_delta=0.25)
    assert len(outs) > 1
    for name, (a, b) in outs.items():
        assert torch.equal(a, outs["reference"][0]) and torch.equal(b, outs["reference"][1]), name


def test_keep_rate_further_subset_and_channel_sharing():
    x = torch.rand(8, 3, 128, 128) + 0.5  # no zeros of its own
    y, y2 = hk.apply_mask(x, 0.3, 1, further_delta=0.4)
    kept, kept2 = y != 0, y2 != 0
    n = kept[:, :1].numel()
    assert abs(kept.float().mean().item() - 0.3) < 4 * (0.3 * 0.7 / n) ** 0.5
    assert abs(kept2.float().mean().item() - 0.3 * 0.6) < 4 * (0.18 * 0.82 / n) ** 0.5
    assert not (kept2 & ~kept).any()  # the further mask is a subset
    assert torch.equal(kept, kept[:, :1].expand_as(kept))  # shared across channels
    assert torch.equal(y[kept], x[kept]) and torch.equal(y2[kept2], x[kept2])
    per_element = hk.apply_mask(x, 0.3, 1, shared_channels=False) != 0
    assert not torch.equal(per_element, per_element[:, :1].expand_as(per_element))


def test_seed_and_offsets():
    x = torch.ones(4, 1, 32, 32)
    a = hk.apply_mask(x, 0.5, 7)
    assert torch.equal(a, hk.apply_mask(x, 0.5, 7))
    assert not torch.equal(a, hk.apply_mask(x, 0.5, 8))
    assert not torch.equal(a[0], a[1])  # default offsets: one stream per sample
    # a sample's mask depends on (seed, offset), not on its position in the batch
    assert torch.equal(hk.apply_mask(x[:1], 0.5, 7, offsets=[2]), a[2:3])
    assert torch.equal(hk.apply_mask(x[:2], 0.5, 7, offsets=2), a[2:4])
    assert torch.equal(hk.bernoulli_mask((4, 3, 32, 32), 0.5, 7), a)


def test_extreme_probabilities():
    x = torch.rand(2, 2, 9, 9) + 1
    assert torch.equal(hk.apply_mask(x, 1.0, 3), x)
    assert not hk.apply_mask(x, 0.0, 3).any()
    y, y2 = hk.apply_mask(x, 1.0, 3, further_delta=1.0)
    assert torch.equal(y, x) and not y2.any()


def test_autograd_is_the_adjoint():
    x = torch.randn(2, 3, 8, 9, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: hk.apply_mask(t, 0.6, 4, further_delta=0.3), (x,))
    y, y2 = hk.apply_mask(x, 0.6, 4, further_delta=0.3)
    g1, g2 = torch.randn_like(y), torch.randn_like(y2)
    (y * g1 + y2 * g2).sum().backward()
    m1, m2 = hk.bernoulli_mask(x.shape, 0.6, 4, further_delta=0.3, dtype=torch.float64)
    torch.testing.assert_close(x.grad, m1 * g1 + m2 * g2, rtol=0, atol=0)


def test_torch_compile_fullgraph():
    x = torch.randn(2, 3, 8, 8)
    f = lambda t: hk.apply_mask(t, 0.5, 9)  # noqa: E731
    assert torch.equal(torch.compile(f, fullgraph=True, backend="aot_eager")(x), f(x))


def test_box_mask():
    m = hk.box_mask((6, 3, 20, 30), (5, 7), seed=1)
    assert m.shape == (6, 1, 20, 30)
    assert ((m == 0).sum(dim=(1, 2, 3)) == 35).all()  # one whole 5x7 box per sample
    assert torch.equal(m, hk.box_mask((6, 3, 20, 30), (5, 7), seed=1))
    assert not torch.equal(m, hk.box_mask((6, 3, 20, 30), (5, 7), seed=2))
    corners = {tuple((m[b, 0] == 0).nonzero()[0].tolist()) for b in range(6)}
    assert len(corners) > 1
    full = hk.box_mask((2, 1, 4, 4), 4, seed=0)
    assert not full.any()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(x=torch.zeros(2, 8, 8)), "x: expected 4 dims"),
        (dict(x=torch.zeros(1, 1, 4, 4, dtype=torch.int32)), "x: expected dtype"),
        (dict(keep=1.5), "keep: expected a number in \\[0, 1\\]"),
        (dict(keep=-0.1), "keep"),
        (dict(further_delta=2.0), "further_delta"),
        (dict(seed=-1), "seed"),
        (dict(offsets=[0, 1, 2]), "offsets"),
        (dict(x=torch.zeros(1, 1, 4, 4, dtype=torch.complex64)), "x: expected dtype"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(x=torch.zeros(2, 1, 4, 4), keep=0.5, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hk.apply_mask(args.pop("x"), args.pop("keep"), args.pop("seed"), **args)


def test_box_mask_bad_input():
    with pytest.raises(ValueError, match="box_size"):
        hk.box_mask((1, 1, 4, 4), 5, seed=0)


@pytest.mark.gpu
@pytest.mark.parametrize("shared", [True, False])
def test_cuda_matches_cpu_bit_for_bit(shared):
    x = torch.randn(4, 3, 67, 129)
    cpu = hk.apply_mask(x, 0.42, 2**35 + 1, shared_channels=shared, further_delta=0.1)
    gpu = hk.apply_mask(x.cuda(), 0.42, 2**35 + 1, shared_channels=shared, further_delta=0.1)
    assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])


@pytest.mark.parametrize("seed", [2**63 - 1, 2**63, 2**64 - 1])
def test_every_documented_seed_works_and_backends_agree(seed):
    """Seeds are 64-bit Philox keys, [0, 2^64): keys >= 2^63 travel to the ops as the signed value
    with the same bits, and the C++ kernel and the reference read the same key."""
    x = torch.rand(2, 3, 9, 7)
    ours = hk.apply_mask(x, 0.5, seed)
    with use_backend("reference"):
        ref_out = hk.apply_mask(x, 0.5, seed)
    assert torch.equal(ours, ref_out)
    assert not torch.equal(ours, hk.apply_mask(x, 0.5, seed ^ 1))
    assert hk.bernoulli_mask((2, 3, 9, 7), 0.5, seed).shape == (2, 1, 9, 7)
    assert hk.box_mask((2, 3, 9, 7), 3, seed).shape == (2, 1, 9, 7)


@pytest.mark.parametrize("seed", [2**64, -1, 1.0, True, "1"])
def test_seeds_outside_the_range_are_rejected(seed):
    x = torch.rand(1, 1, 4, 4)
    for call in (lambda: hk.apply_mask(x, 0.5, seed), lambda: hk.bernoulli_mask((1, 1, 4, 4), 0.5, seed),
                 lambda: hk.box_mask((1, 1, 4, 4), 2, seed)):
        with pytest.raises(ValueError, match="^seed:"):
            call()


def test_float_shapes_are_rejected_not_truncated():
    with pytest.raises(ValueError, match=r"shape\[2\]"):
        hk.bernoulli_mask((1, 3, 8.0, 8), 0.5, 1)
    with pytest.raises(ValueError, match=r"shape\[3\]"):
        hk.box_mask((1, 3, 8, 8.5), 2, 1)


@pytest.mark.parametrize("box_size", [(2,), (2, 2, 2), 2.0, "ab", True, (2, 0), (2, 9)])
def test_box_size_forms_are_checked(box_size):
    with pytest.raises(ValueError, match="^box_size:"):
        hk.box_mask((1, 3, 8, 8), box_size, 1)


def test_empty_batch_on_every_backend():
    x = torch.rand(0, 3, 8, 8)
    for name in runnable_backends("apply_mask", "cpu") + ["reference"]:
        with use_backend(name):
            assert hk.apply_mask(x, 0.5, 1).shape == (0, 3, 8, 8)
            assert hk.add_noise(x, 0.5, 1).shape == (0, 3, 8, 8)


def test_huge_batches_of_empty_samples_cost_nothing():
    """No per-sample offsets list (or sigma vector) for 2^31 empty samples: that took gigabytes."""
    import time

    t0 = time.perf_counter()
    x = torch.zeros(2**31, 3, 0, 4)
    assert hk.apply_mask(x, 0.5, 1).shape == x.shape
    assert hk.apply_mask(x, 0.5, 1, further_delta=0.2)[1].shape == x.shape
    assert hk.add_noise(x, 0.3, 1).shape == x.shape
    assert hk.bernoulli_mask((2**31, 1, 4, 0), 0.5, 1).shape == (2**31, 1, 4, 0)
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ValueError, match="^offsets"):
        hk.apply_mask(torch.zeros(3, 1, 0, 2), 0.5, 1, offsets=[1, 2])
    with pytest.raises(ValueError, match="^sigma"):
        hk.add_noise(torch.zeros(3, 0), -1.0, 1)


@pytest.mark.parametrize("shape", [torch.tensor(4), None, "BCHW", 4, (1, 1, 4)])
def test_mask_shape_must_be_a_tuple_of_four_ints(shape):
    for fn in (lambda: hk.bernoulli_mask(shape, 0.5, 0), lambda: hk.box_mask(shape, 1, 0)):
        with pytest.raises(ValueError, match="^shape: expected"):
            fn()
