"""hypir_kernels.operators: adjoint dot-tests <A x, y> = <x, A^H y> in float64, A_normal,
composition order, noise in forward only, differentiability, bad input."""
import pytest
import torch

import hypir_kernels as hk
from hypir_kernels.operators import Blur, Compose, Downsample, Filter2D, Inpainting, Noise


def _dot_test(op, shape=(3, 2, 18, 24)):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, generator=g)
    y = torch.randn(op.A(x).shape, dtype=torch.float64, generator=g)
    lhs = (op.A(x) * y).sum()
    rhs = (x * op.A_adjoint(y)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "op",
    [
        Blur(2.0, 9),
        Blur(torch.tensor([1.0, 2.0, 0.7]), padding="circular"),
        Blur(torch.tensor([[1.0, 3.0], [2.0, 0.5], [0.6, 0.6]]), padding="zeros"),
        Inpainting(0.4, seed=3),
        Inpainting(0.4, seed=3, shared_channels=False).further(0.3),
        Compose(Blur(1.5, 7), Inpainting(0.5, seed=1)),
        Inpainting(0.5, seed=1) @ Blur(1.5, 7, padding="replicate"),
        Compose(Blur(1.0), Noise(0.1, seed=2)),
        Downsample(2, "bicubic") @ Blur(1.0, 5),
        Compose(Filter2D(torch.randn(3, 7, 7, dtype=torch.float64), "reflect"), Downsample(2)),
    ],
    ids=["blur", "blur-per-sample", "blur-aniso", "inpaint", "inpaint-further", "compose", "matmul", "blur+noise",
         "blur+downsample", "filter2d+downsample"],
)
def test_adjoint_dot_test(op):
    _dot_test(op)


def test_multicoil_mri_operator_dot_test():
    from hypir_kernels.operators import MultiCoilMRI

    g = torch.Generator().manual_seed(1)
    maps = torch.randn(2, 3, 16, 18, dtype=torch.complex128, generator=g)
    cols = (torch.rand(2, 18, generator=g) < 0.4).double()
    op = MultiCoilMRI(maps, cols)
    x = torch.randn(2, 16, 18, dtype=torch.complex128, generator=g)
    y = torch.randn(2, 3, 16, 18, dtype=torch.complex128, generator=g)
    torch.testing.assert_close((op.A(x) * y.conj()).sum(), (x * op.A_adjoint(y).conj()).sum(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.A_normal(x), op.A_adjoint(op.A(x)))


def test_compose_order_and_normal():
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    blur, mask = Blur(2.0, 9), Inpainting(0.5, seed=4)
    torch.testing.assert_close(Compose(blur, mask).A(x), mask.A(blur.A(x)))
    torch.testing.assert_close((mask @ blur).A(x), mask.A(blur.A(x)))
    op = Compose(blur, mask)
    torch.testing.assert_close(op.A_normal(x), blur.A_adjoint(mask.A(blur.A(x))))
    torch.testing.assert_close(mask.A_normal(x), mask.A(x))


def test_further_mask_is_a_subset():
    x = torch.rand(2, 1, 32, 32) + 1
    base, further = Inpainting(0.6, seed=9), Inpainting(0.6, seed=9).further(0.5)
    kept, kept2 = base.A(x) != 0, further.A(x) != 0
    assert not (kept2 & ~kept).any() and kept2.sum() < kept.sum()


def test_noise_enters_forward_not_A():
    x = torch.zeros(2, 1, 32, 32)
    op = Compose(Blur(1.0), Noise(0.5, seed=1))
    assert torch.equal(op.A(x), x)  # linear part only
    y = op(x)
    assert abs(y.std().item() - 0.5) < 0.05
    assert torch.equal(y, op(x))  # seeded


def test_differentiable():
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    op = Compose(Blur(1.2, 5), Inpainting(0.5, seed=5))
    torch.autograd.gradcheck(op.A, (x,))


def test_bad_input():
    with pytest.raises(ValueError, match="ops"):
        Compose()
    with pytest.raises(ValueError, match="keep"):
        Inpainting(1.5, seed=0).A(torch.zeros(1, 1, 4, 4))
