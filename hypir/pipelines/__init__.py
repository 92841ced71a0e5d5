"""Pipelines: the HYPIR one-step restorer (tiled, memory-budgeted)."""
from .restorer import Restorer, RestoreInfo

__all__ = ["RestoreInfo", "Restorer"]
