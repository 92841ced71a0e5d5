"""Metrics: the Fréchet distance behind FID (pluggable feature extractors come with RSD)."""
from .fid import feature_statistics, frechet_distance

__all__ = ["feature_statistics", "frechet_distance"]
