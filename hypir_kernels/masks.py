"""Random inpainting masks from Philox, applied without materialising them.

Every decision comes from Philox4x32-10 keyed by ``seed`` with a per-sample stream ``offset``
(default: the sample index), so the CPU kernel, the CUDA kernel and the torch reference give
bit-identical masks for the same seed. A kept entry has draw ``< keep * 2^24`` (top 24 bits); the
Ambient-Diffusion further mask uses the threshold ``keep * (1 - delta) * 2^24`` on the same draw,
so it is a subset of the first mask that removes a fraction ``delta`` of the kept entries in
expectation. Dropped entries are exact zeros. Masks are diagonal, so each op is its own adjoint
and its backward applies the same mask to the gradient.
"""
from __future__ import annotations


import torch

from . import backend
from .checks import check_int, check_probability, check_seed, check_shape, check_tensor
from .reference import masks as ref

_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_ONE = 1 << 24


def _offsets(offsets, batch: int) -> list[int]:
    if offsets is None:
        return list(range(batch))
    if isinstance(offsets, int) and not isinstance(offsets, bool):
        return [offsets + b for b in range(batch)]
    values = offsets.tolist() if isinstance(offsets, torch.Tensor) else list(offsets)
    if len(values) != batch or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"offsets: expected None, an int, or {batch} non-negative ints (one per sample), got {offsets!r}")
    return values


def _thresholds(keep, further_delta) -> tuple[int, int]:
    keep = check_probability("keep", keep)
    first = round(keep * _ONE)
    if further_delta is None:
        return first, -1
    delta = check_probability("further_delta", further_delta)
    return first, round(keep * (1.0 - delta) * _ONE)


def _cpp(x, seed, offsets, threshold, further_threshold, shared):
    return torch.ops.hypir_kernels._apply_mask(x, seed, offsets, threshold, further_threshold, shared)


backend.register("apply_mask", kernel_op="_apply_mask", cpu=_cpp, cuda=_cpp, reference=ref.apply_mask)


@torch.library.custom_op("hypir_kernels::apply_mask", mutates_args=())
def _apply_mask_op(x: torch.Tensor, seed: int, offsets: list[int], threshold: int, further_threshold: int,
                   shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return backend.dispatch("apply_mask", x.device)(x.contiguous(), seed, offsets, threshold, further_threshold, shared)


@_apply_mask_op.register_fake
def _(x, seed, offsets, threshold, further_threshold, shared):
    return torch.empty_like(x, memory_format=torch.contiguous_format), (
        torch.empty_like(x, memory_format=torch.contiguous_format) if further_threshold >= 0 else x.new_empty(0))


def _setup_context(ctx, inputs, output):
    _, seed, offsets, threshold, further_threshold, shared = inputs
    ctx.args = (seed, offsets, threshold, further_threshold, shared)


def _backward(ctx, grad, grad_further):
    seed, offsets, threshold, further_threshold, shared = ctx.args
    dx = None
    if grad is not None:
        dx = torch.ops.hypir_kernels.apply_mask(grad, seed, offsets, threshold, -1, shared)[0]
    if grad_further is not None and further_threshold >= 0 and grad_further.numel():
        d2 = torch.ops.hypir_kernels.apply_mask(grad_further, seed, offsets, further_threshold, -1, shared)[0]
        dx = d2 if dx is None else dx + d2
    return dx, None, None, None, None, None


_apply_mask_op.register_autograd(_backward, setup_context=_setup_context)


def apply_mask(x: torch.Tensor, keep: float, seed: int, *, shared_channels: bool = True, offsets=None,
               further_delta: float | None = None):
    """``x * M`` for a Bernoulli(``keep``) mask ``M`` drawn in-kernel (never stored).

    Args:
        x: ``[B, C, H, W]`` floating.
        keep: keep probability in [0, 1].
        seed: non-negative int (64-bit Philox key).
        shared_channels: one decision per pixel shared by all channels (inpainting) if True,
            else one per element.
        offsets: per-sample Philox stream: None (sample index), an int (``offset + b``) or
            ``B`` ints; the same (seed, offset) gives the same mask in any batch.
        further_delta: if given, also return ``x * M'`` with ``M' ⊂ M`` removing a further
            fraction ``further_delta`` of the kept entries (Ambient Diffusion).

    Returns ``[B, C, H, W]``, or the pair ``(x * M, x * M')`` when ``further_delta`` is given.
    """
    check_tensor("x", x, dims=4, dtypes=_FLOAT_DTYPES)
    seed = check_seed("seed", seed)
    threshold, further = _thresholds(keep, further_delta)
    if x.numel() == 0:  # nothing to draw: no per-sample offsets list for a huge batch of empty planes
        if offsets is not None and not isinstance(offsets, int):
            _offsets(offsets, x.shape[0])
        out = torch.zeros_like(x, memory_format=torch.contiguous_format)
        return (out, out.clone()) if further_delta is not None else out
    out, out_further = _apply_mask_op(x, seed, _offsets(offsets, x.shape[0]), threshold, further, bool(shared_channels))
    return (out, out_further) if further_delta is not None else out


def bernoulli_mask(shape, keep: float, seed: int, *, shared_channels: bool = True, offsets=None,
                   further_delta: float | None = None, dtype: torch.dtype = torch.float32, device="cpu"):
    """The mask :func:`apply_mask` applies, materialised: ``[B, 1, H, W]`` when
    ``shared_channels`` else ``[B, C, H, W]`` (``shape`` is ``(B, C, H, W)``), 1 kept / 0 dropped;
    a pair ``(M, M')`` when ``further_delta`` is given."""
    B, C, H, W = check_shape("shape", shape, 4)  # (B, C, H, W); 8.0 is rejected
    ones = torch.ones((B, 1 if shared_channels else C, H, W), dtype=dtype, device=device)
    return apply_mask(ones, keep, seed, shared_channels=shared_channels, offsets=offsets, further_delta=further_delta)


def box_mask(shape, box_size, seed: int, *, offsets=None, dtype: torch.dtype = torch.float32, device="cpu") -> torch.Tensor:
    """``[B, 1, H, W]`` masks that are 1 except for one ``box_size`` (int or (h, w)) box of zeros
    per sample, at a position drawn uniformly from Philox (seed, offset) -- its own stream, not
    correlated with :func:`bernoulli_mask` draws of the same seed."""
    B, _, H, W = check_shape("shape", shape, 4)
    if isinstance(box_size, int) and not isinstance(box_size, bool):
        bh = bw = box_size
    elif isinstance(box_size, (tuple, list)) and len(box_size) == 2:
        bh, bw = box_size
    else:
        raise ValueError(f"box_size: expected an int or an (h, w) pair of ints, got {box_size!r}")
    check_int("box_size", bh, minimum=1)
    check_int("box_size", bw, minimum=1)
    if bh > H or bw > W:
        raise ValueError(f"box_size: ({bh}, {bw}) does not fit in a {H}x{W} image")
    seed = check_seed("seed", seed)
    offs = torch.tensor(_offsets(offsets, B), dtype=torch.int64)
    u32 = 0xFFFFFFFF
    c = [torch.full((B,), u32, dtype=torch.int64), torch.full((B,), u32, dtype=torch.int64), offs & u32, (offs >> 32) & u32]
    r = ref.philox4x32_10(*c, seed & u32, (seed >> 32) & u32)  # counter group 2^64 - 1: unused by masks
    y0 = (r[0] * (H - bh + 1)) >> 32  # multiply-shift: uniform over the valid positions
    x0 = (r[1] * (W - bw + 1)) >> 32
    ys = torch.arange(H)[None, :]
    xs = torch.arange(W)[None, :]
    inside = ((ys >= y0[:, None]) & (ys < y0[:, None] + bh))[:, :, None] & ((xs >= x0[:, None]) & (xs < x0[:, None] + bw))[:, None, :]
    return (~inside).to(dtype=dtype, device=device)[:, None]
