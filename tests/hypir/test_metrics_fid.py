"""Fréchet distance: closed forms on Gaussians, the sample estimate, bad input named."""
import math

import pytest
import torch

from hypir.metrics import feature_statistics, frechet_distance


def _random_cov(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_diagonal_covariances_closed_form():
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    v1, v2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 0.25])
    want = float(((mu1 - mu2) ** 2).sum() + ((v1.sqrt() - v2.sqrt()) ** 2).sum())  # commuting: sum (s1 - s2)^2
    assert frechet_distance(mu1, torch.diag(v1), mu2, torch.diag(v2)) == pytest.approx(want, rel=1e-12)


def test_general_covariances_match_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    d = 12
    c1, c2 = _random_cov(d, 0), _random_cov(d, 1)
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.linspace(0, 1, d, dtype=torch.float64)
    covmean = scipy_linalg.sqrtm(c1.numpy() @ c2.numpy()).real
    want = float((mu1 - mu2) @ (mu1 - mu2) + torch.trace(c1) + torch.trace(c2) - 2 * covmean.trace())
    got = frechet_distance(mu1, c1, mu2, c2)
    assert got == pytest.approx(want, rel=1e-9)
    assert frechet_distance(mu2, c2, mu1, c1) == pytest.approx(got, rel=1e-9)  # symmetric
    assert abs(frechet_distance(mu1, c1, mu1, c1)) < 1e-9


def test_sample_estimate_approaches_the_closed_form():
    d, n = 4, 200_000
    c1, c2 = _random_cov(d, 2), _random_cov(d, 3)
    mu2 = torch.tensor([0.5, -0.5, 0.0, 1.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(c1).T
    x2 = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(c2).T + mu2
    est = frechet_distance(*feature_statistics(x1), *feature_statistics(x2.float()))
    exact = frechet_distance(torch.zeros(d), c1, mu2, c2)
    assert est == pytest.approx(exact, rel=0.02)


def test_statistics_are_float64_and_unbiased():
    f = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]], dtype=torch.float32)
    mu, cov = feature_statistics(f)
    assert mu.dtype == cov.dtype == torch.float64
    torch.testing.assert_close(cov, torch.from_numpy(__import__("numpy").cov(f.double().numpy().T)))


@pytest.mark.parametrize("bad", [torch.zeros(1, 3), torch.zeros(5), torch.full((3, 2), math.nan), "x"])
def test_bad_features_are_named(bad):
    with pytest.raises(ValueError, match="^features: "):
        feature_statistics(bad)


def test_mismatched_statistics_are_named():
    with pytest.raises(ValueError, match="^mu2: expected dimension 3"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="^mu1/cov1: "):
        frechet_distance(torch.zeros(3), torch.eye(2), torch.zeros(3), torch.eye(3))
