"""Reference LoRA arithmetic in torch ops: the dropout keep mask regenerated from a seed (never
stored), and the activation strategy of a linear layer, ``y = x W^T + b + s dropout(x) A^T B^T``
with its backward. The registry's ``reference`` for ``lora_linear_activation[_backward]``, the
path of every device but CUDA (which runs :mod:`hypir_kernels.triton.lora`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def keep_mask(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Dropout keep mask of the torch path, regenerated from ``seed`` (forward and backward)."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    return torch.rand(x.shape, generator=g, device=x.device, dtype=torch.float32) >= p


def dropped(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    if p == 0:
        return x
    return x * keep_mask(x, p, seed).to(x.dtype) * (1.0 / (1.0 - p))


def scaled(t: torch.Tensor, scale: float) -> torch.Tensor:
    return t if scale == 1.0 else t.mul_(scale)  # HYPIR's alpha = r: skip the no-op multiply


def dropped_grad(grad, x, p, seed):
    """The gradient through :func:`dropped` (same mask)."""
    return grad * keep_mask(x, p, seed).to(grad.dtype) * (1.0 / (1.0 - p))


def activation_forward(x, weight, bias, A, B, scale, p, seed):
    """``x [N, in]``, ``weight [out, in]``, ``A [r, in]``, ``B [out, r]`` -> ``(y [N, out], h [N, r])``
    with ``h = dropout(x) A^T`` (saved for backward) and ``y = x W^T + b + s h B^T``."""
    h = F.linear(dropped(x, p, seed), A)
    y = F.linear(x, weight, bias)
    y.addmm_(h, B.t(), alpha=scale)  # accumulate the LoRA product into the base output
    return y, h


def activation_backward(dy, x, h, weight, A, B, scale, p, seed):
    """``dy [N, out]`` -> ``(dx [N, in], dA [r, in], dB [out, r])``; the dropout mask regenerated from ``seed``."""
    g = scaled(dy @ B, scale)  # [N, r]
    dB = scaled(dy.t() @ h, scale)
    if p == 0:
        dA = g.t() @ x
        dx = (dy @ weight).addmm_(g, A)
    else:
        keep = keep_mask(x, p, seed).to(x.dtype) * (1.0 / (1.0 - p))
        dA = g.t() @ (x * keep)
        dx = (dy @ weight).add_((g @ A) * keep)
    return dx, dA, dB
