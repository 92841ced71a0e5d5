"""hypir_kernels.mri: forward/adjoint/normal against the shift-based torch formula and deepinv's
MultiCoilMRI, column vs full masks, even and odd sizes (both signs of the centring phase),
adjoint dot-tests, real views, gradients, bad input."""
import pytest
import torch

import hypir_kernels as hk
from hypir_kernels import mri


@pytest.fixture(params=["auto", "reference"])
def mri_backend(request):
    """The fast torch path (``cpu``) and the registry's textbook ``reference``: both held to the
    same independent formula."""
    with hk.use_backend(request.param):
        yield request.param


def _case(B=2, Nc=3, H=32, W=34, dtype=torch.complex128, seed=0, keep=0.35):
    g = torch.Generator().manual_seed(seed)
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    x = torch.complex(torch.randn(B, H, W, generator=g, dtype=real), torch.randn(B, H, W, generator=g, dtype=real))
    maps = torch.complex(torch.randn(B, Nc, H, W, generator=g, dtype=real), torch.randn(B, Nc, H, W, generator=g, dtype=real))
    cols = (torch.rand(B, W, generator=g) < keep).to(real)
    cols[:, W // 2] = 1  # never empty
    return x, maps, cols


def _shifted(v, inverse):
    f = torch.fft.ifft2 if inverse else torch.fft.fft2
    return torch.fft.fftshift(f(torch.fft.ifftshift(v, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def _reference(x, maps, full_mask):
    return _shifted(maps * x[:, None], False) * full_mask[:, None]


@pytest.mark.parametrize("H,W", [(32, 34), (32, 32), (30, 36), (31, 34), (32, 33), (8, 2)])
@pytest.mark.parametrize("mask_kind", ["columns", "full"])
def test_forward_adjoint_normal(H, W, mask_kind, mri_backend):
    x, maps, cols = _case(H=H, W=W)
    full = cols[:, None, :].expand(-1, H, -1).contiguous()
    if mask_kind == "full":  # a general mask, not just columns
        full = full * (torch.rand(full.shape, generator=torch.Generator().manual_seed(5)) < 0.8)
    mask = cols if mask_kind == "columns" else full
    y = mri.mri_forward(x, maps, mask)
    torch.testing.assert_close(y, _reference(x, maps, full), rtol=1e-12, atol=1e-12)
    z = torch.randn_like(y)
    x_adj = mri.mri_adjoint(z, maps, mask)
    expected_adj = (maps.conj() * _shifted(z * full[:, None], True)).sum(1)
    torch.testing.assert_close(x_adj, expected_adj, rtol=1e-12, atol=1e-12)
    # dot test <A x, z> = <x, A^H z>
    torch.testing.assert_close((y * z.conj()).sum(), (x * x_adj.conj()).sum(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mri.mri_normal(x, maps, mask), mri.mri_adjoint(y, maps, mask), rtol=1e-12, atol=1e-12)


def test_real_views_and_complex64(mri_backend):
    x, maps, cols = _case(dtype=torch.complex64)
    xr = torch.stack([x.real, x.imag], 1)
    y = mri.mri_forward(xr, maps, cols)
    assert y.shape == (2, 2, 3, 32, 34) and y.dtype == torch.float32
    yc = mri.mri_forward(x, maps, cols)
    torch.testing.assert_close(torch.complex(y[:, 0], y[:, 1]), yc)
    back = mri.mri_adjoint(y, maps, cols)
    assert back.shape == (2, 2, 32, 34)
    torch.testing.assert_close(torch.complex(back[:, 0], back[:, 1]), mri.mri_adjoint(yc, maps, cols))


def test_matches_deepinv_multicoil_mri():
    deepinv = pytest.importorskip("deepinv")
    x, maps, cols = _case(B=2, Nc=4, H=40, W=36, dtype=torch.complex64)
    full = cols[:, None, :].expand(-1, 40, -1).contiguous()
    physics = deepinv.physics.MultiCoilMRI(mask=full[:, None].clone(), coil_maps=maps, img_size=(40, 36))
    xr = torch.stack([x.real, x.imag], 1)
    y_theirs = physics.A(xr)
    y_ours = mri.mri_forward(xr, maps, cols)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mri.mri_adjoint(y_ours, maps, cols), physics.A_adjoint(y_theirs), rtol=1e-5, atol=1e-5)


def test_gradients_are_adjoints(mri_backend):
    x, maps, cols = _case(B=1, Nc=2, H=8, W=10)
    x = x.requires_grad_()
    torch.autograd.gradcheck(lambda t: torch.view_as_real(mri.mri_forward(t, maps, cols)), (x,))


def test_empty_column_mask_gives_zeros():
    x, maps, cols = _case()
    cols[0] = 0
    y = mri.mri_forward(x, maps, cols)
    assert not y[0].any() and y[1].any()
    assert not mri.mri_adjoint(torch.randn_like(y), maps, cols)[0].any()


@pytest.mark.parametrize(
    "args,match",
    [
        (lambda x, m, c: (x[0], m, c), "x: expected 3 dims"),
        (lambda x, m, c: (x.real, m, c), "x: a real tensor must be the real view"),
        (lambda x, m, c: (x, m[:1], c), "maps: expected"),
        (lambda x, m, c: (x, m.to(torch.complex64), c), "maps: expected the complex dtype"),
        (lambda x, m, c: (x, m, c[:, :-1]), "mask: a column mask must be"),
        (lambda x, m, c: (x, m, c[:1]), "mask: a column mask must be"),
        (lambda x, m, c: (x, m, c.to(torch.complex128)), "mask: expected a real"),
        (lambda x, m, c: (x, m.real, c), "maps: expected dtype"),
        (lambda x, m, c: (x, m.to("meta"), c), "maps: expected the device"),
        (lambda x, m, c: (x, m, c.to("meta")), "mask: expected the device"),
    ],
)
def test_bad_input(args, match):
    x, maps, cols = _case()
    with pytest.raises(ValueError, match=match):
        mri.mri_forward(*args(x, maps, cols))


# ---- k-space column samplers ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["random", "equispaced"])
@pytest.mark.parametrize("R,W", [(4, 320), (8, 368), (2, 33)])
def test_column_mask_lines_and_acs(kind, R, W):
    m = mri.mri_column_mask(5, W, R, seed=3, kind=kind)
    assert m.shape == (5, W) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert (m.sum(1) == round(W / R)).all()  # exactly the target acceleration
    acs = mri._acs(W, 0.08)
    assert (m[:, acs] == 1).all()
    assert torch.equal(m, mri.mri_column_mask(5, W, R, seed=3, kind=kind))
    assert not torch.equal(m, mri.mri_column_mask(5, W, R, seed=4, kind=kind))
    assert not torch.equal(m[0], m[1])  # per-sample streams
    assert torch.equal(mri.mri_column_mask(1, W, R, seed=3, kind=kind, offsets=[2]), m[2:3])


def test_equispaced_lines_are_evenly_spaced():
    m = mri.mri_column_mask(2, 320, 4, seed=1, kind="equispaced", center_fraction=0.0)
    gaps = torch.diff(torch.nonzero(m[0]).flatten())
    assert set(gaps.tolist()) <= {4}


def test_random_lines_cover_columns_uniformly():
    m = mri.mri_column_mask(400, 64, 4, seed=0, center_fraction=0.0)
    freq = m.mean(0)
    assert (freq - 0.25).abs().max() < 0.1


def test_acceleration_matches_deepinv_generator():
    deepinv = pytest.importorskip("deepinv")
    for R in (4, 8):
        theirs = deepinv.physics.generator.RandomMaskGenerator((320, 320), acceleration=R, center_fraction=0.08,
                                                               rng=torch.Generator().manual_seed(0)).step(batch_size=2)["mask"]
        lines_theirs = (theirs[:, 0].sum(1) > 0).sum(-1)
        lines_ours = mri.mri_column_mask(2, 320, R, seed=0).sum(1)
        assert torch.equal(lines_ours.long(), lines_theirs.long())


def test_further_mask_removes_lines_keeps_acs():
    m = mri.mri_column_mask(4, 320, 4, seed=2)
    f = mri.mri_further_mask(m, 12, seed=5)
    assert (f.sum(1) == m.sum(1) - 12).all()
    assert not ((f != 0) & (m == 0)).any()
    assert (f[:, mri._acs(320, 0.08)] == 1).all()
    assert torch.equal(f, mri.mri_further_mask(m, 12, seed=5))
    with pytest.raises(ValueError, match="remove"):
        mri.mri_further_mask(m, 100, seed=5)


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(acceleration=0), "acceleration"), (dict(kind="gaussian"), "kind"), (dict(center_fraction=1.5), "center_fraction"),
     (dict(seed=-1), "seed"), (dict(offsets=[1]), "offsets")],
)
def test_column_mask_bad_input(kwargs, match):
    args = dict(batch=2, width=32, acceleration=4, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mri.mri_column_mask(args.pop("batch"), args.pop("width"), args.pop("acceleration"), args.pop("seed"), **args)


def test_matches_sigpy_sense():
    pytest.importorskip("sigpy")
    import numpy as np
    from sigpy.mri.linop import Sense

    x, maps, cols = _case(B=1, Nc=4, H=32, W=34)
    weights = np.broadcast_to(cols[0].numpy()[None, :], (32, 34)).copy()  # binary: sigpy's sqrt(weights) = weights
    sense = Sense(maps[0].numpy(), weights=weights)
    y_theirs = sense * x[0].numpy()
    y_ours = mri.mri_forward(x, maps, cols)[0].numpy()
    np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mri.mri_adjoint(torch.from_numpy(y_theirs)[None], maps, cols)[0].numpy(),
                               sense.H * y_theirs, rtol=1e-10, atol=1e-12)


def test_column_mask_seeds_cover_64_bits_and_reject_the_rest():
    a = mri.mri_column_mask(3, 32, 4, 2**63)
    assert a.shape == (3, 32) and not torch.equal(a, mri.mri_column_mask(3, 32, 4, 0))
    assert torch.equal(mri.mri_further_mask(a, 2, 2**64 - 1), mri.mri_further_mask(a, 2, 2**64 - 1))
    for bad in (2**64, 2**64 + 5, -1, 3.0):
        with pytest.raises(ValueError, match="^seed:"):
            mri.mri_column_mask(3, 32, 4, bad)
        with pytest.raises(ValueError, match="^seed:"):
            mri.mri_further_mask(a, 2, bad)


def test_numpy_mask_is_named_as_the_wrong_type():
    import numpy as np

    x = torch.rand(1, 8, 8, dtype=torch.complex64)
    maps = torch.rand(1, 2, 8, 8, dtype=torch.complex64)
    with pytest.raises(ValueError, match="^mask: expected a torch.Tensor"):
        mri.mri_forward(x, maps, np.ones((1, 8)))


@pytest.mark.parametrize("B, Nc, H, W", [(0, 2, 8, 8), (2, 0, 8, 8), (1, 2, 0, 8), (1, 2, 7, 0)])
def test_empty_extents_give_empty_or_zero_results(B, Nc, H, W):
    x = torch.rand(B, H, W, dtype=torch.complex64, requires_grad=True)
    maps = torch.rand(B, Nc, H, W, dtype=torch.complex64)
    mask = torch.ones(B, W)
    y = mri.mri_forward(x, maps, mask)
    assert y.shape == (B, Nc, H, W)
    xa = mri.mri_adjoint(y, maps, mask)
    assert xa.shape == (B, H, W) and not xa.abs().any()
    assert mri.mri_normal(x, maps, mask).shape == (B, H, W)
    xr = torch.view_as_real(x.detach()).permute(0, 3, 1, 2).contiguous()  # the real view [B, 2, H, W]
    assert mri.mri_adjoint(mri.mri_forward(xr, maps, mask), maps, mask).shape == (B, 2, H, W)
