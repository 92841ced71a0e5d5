"""The Fréchet distance between two Gaussians fitted to features (FID when the features are
Inception's), computed in float64:

    d^2 = |mu_1 - mu_2|^2 + tr(C_1) + tr(C_2) - 2 tr((C_1^1/2 C_2 C_1^1/2)^1/2)

The matrix square root goes through symmetric eigendecompositions (``C_1^1/2`` then the
eigenvalues of the symmetric ``C_1^1/2 C_2 C_1^1/2``), so it is real and stable where
``scipy.linalg.sqrtm(C_1 C_2)`` of a product returns complex round-off.
"""
from __future__ import annotations

import torch


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``features [N, D]`` (N >= 2) -> mean ``[D]`` and unbiased covariance ``[D, D]``, float64."""
    if not (torch.is_tensor(features) and features.dim() == 2 and features.shape[0] >= 2 and features.shape[1] >= 1):
        raise ValueError(f"features: expected an [N, D] tensor with N >= 2 and D >= 1, got "
                         f"{tuple(features.shape) if torch.is_tensor(features) else type(features).__name__}")
    if features.is_complex() or not torch.isfinite(features).all():
        raise ValueError("features: expected finite real values")
    f = features.detach().to(torch.float64)
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def _psd_sqrt(c: torch.Tensor) -> torch.Tensor:
    evals, evecs = torch.linalg.eigh((c + c.T) / 2)
    return (evecs * evals.clamp(min=0).sqrt()) @ evecs.T


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Squared Fréchet distance between ``N(mu1, cov1)`` and ``N(mu2, cov2)`` (float64)."""
    for name, mu, cov in (("mu1/cov1", mu1, cov1), ("mu2/cov2", mu2, cov2)):
        if not (torch.is_tensor(mu) and torch.is_tensor(cov) and mu.dim() == 1 and cov.shape == (mu.shape[0],) * 2):
            raise ValueError(f"{name}: expected a mean [D] and a covariance [D, D], got "
                             f"{getattr(mu, 'shape', type(mu))} and {getattr(cov, 'shape', type(cov))}")
        if mu.is_complex() or cov.is_complex() or not (torch.isfinite(mu).all() and torch.isfinite(cov).all()):
            raise ValueError(f"{name}: expected finite real values")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu2: expected dimension {mu1.shape[0]} like mu1, got {mu2.shape[0]}")
    mu1, cov1, mu2, cov2 = (t.detach().to(torch.float64) for t in (mu1, cov1, mu2, cov2))
    try:
        s1 = _psd_sqrt(cov1)
        middle = s1 @ cov2 @ s1
        tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    except torch.linalg.LinAlgError as e:  # overflowing entries
        raise ValueError(f"cov1/cov2: the covariances cannot be decomposed ({e})") from None
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(cov1) + torch.trace(cov2) - 2 * tr_sqrt)
