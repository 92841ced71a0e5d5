"""Reference attention: ``softmax(q k^T * scale) v`` through torch's ``scaled_dot_product_attention``.
Also the CPU path and, behind ``sdpa_kernel`` priorities, every CUDA choice but ``triton``."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """``q [B, H, Sq, D]``, ``k``/``v`` ``[B, H, Sk, D]`` -> ``[B, H, Sq, D]``."""
    return F.scaled_dot_product_attention(q, k, v, scale=scale)
