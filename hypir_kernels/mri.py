"""Multi-coil MRI: ``y = M F_c (S x)`` with the orthonormal centred 2-D FFT
``F_c = fftshift . fft2 . ifftshift`` (deepinv ``MultiCoilMRI`` / sigpy ``Sense`` convention).

Speed levers (FFTs through ``torch.fft``: pocketfft on the CPU, cuFFT on the GPU):

* Centring without shifts: for even sizes ``F_c v = s P (F (C v))`` with the checkerboard
  ``C[m, n] = (-1)^(m+n)``, ``P[k, l] = (-1)^(k+l)`` and ``s = (-1)^((H+W)/2)``. ``C`` is folded
  into the image before the coil multiply (``S (C x)``, an [H, W] product instead of a
  [Nc, H, W] one) and ``s P`` into the mask, so no shift copies are made.
* Column masks ``[B, W]`` (the kept k-space columns / phase encodes): the 2-D FFT runs along W on
  every row, then along H only on the kept columns; the adjoint inverts H only on the kept
  columns. With acceleration R that skips (R-1)/R of the second pass, and the masked-out columns
  are never touched beyond zero-filling the output.

Shapes: ``x`` complex ``[B, H, W]`` or its real view ``[B, 2, H, W]``; ``maps`` complex
``[B, Nc, H, W]``; ``mask`` real/bool ``[B, H, W]`` or a column mask ``[B, W]`` (a 2-D mask is
always read as columns: a full mask keeps its batch dim even for B = 1); ``y`` complex
``[B, Nc, H, W]`` (real view ``[B, 2, Nc, H, W]`` when ``x`` was given as a real view). Odd H or
W fall back to explicit shifts. All ops are differentiable (their backward is the adjoint).
Backends (ops ``mri_forward`` / ``mri_adjoint`` in :data:`hypir_kernels.backend.REGISTRY`): these
torch compositions on ``cpu`` and ``cuda``; the textbook formula of
:mod:`hypir_kernels.reference.mri` as ``reference``.
"""
from __future__ import annotations

import torch

from . import _extension, backend
from .checks import check_int, check_probability, check_seed, check_tensor
from .masks import _offsets
from .reference import mri as ref
from .reference.masks import philox4x32_10

_COMPLEX = (torch.complex64, torch.complex128)
_REAL = (torch.float32, torch.float64)


def _as_complex(x: torch.Tensor, name: str) -> tuple[torch.Tensor, bool]:
    """``x`` as complex [B, H, W]; True when it came as the real view [B, 2, H, W]."""
    if x.is_complex():
        check_tensor(name, x, dims=3, dtypes=_COMPLEX)
        return x, False
    check_tensor(name, x, dtypes=_REAL + _COMPLEX)
    if x.dim() != 4 or x.shape[1] != 2:
        raise ValueError(f"{name}: a real tensor must be the real view [B, 2, H, W] of complex [B, H, W], got {tuple(x.shape)}")
    return torch.complex(x[:, 0], x[:, 1]), True


def _check(maps: torch.Tensor, mask: torch.Tensor, batch: int, h: int, w: int, dtype, device) -> None:
    check_tensor("maps", maps, dims=4, dtypes=_COMPLEX)
    if maps.device != device:
        raise ValueError(f"maps: expected the device of the data ({device}), got {maps.device}")
    if maps.shape[0] != batch or tuple(maps.shape[2:]) != (h, w):
        raise ValueError(f"maps: expected [B={batch}, Nc, {h}, {w}], got {tuple(maps.shape)}")
    if maps.dtype != dtype:
        raise ValueError(f"maps: expected the complex dtype of x ({dtype}), got {maps.dtype}")
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask: expected a torch.Tensor [B, H, W] or [B, W], got {type(mask).__name__}")
    if mask.device != maps.device:
        raise ValueError(f"mask: expected the device of maps ({maps.device}), got {mask.device}")
    check_tensor("mask", mask)
    if mask.is_complex():
        raise ValueError("mask: expected a real or bool tensor, got a complex one")
    if mask.dim() == 2:
        if tuple(mask.shape) != (batch, w):
            raise ValueError(f"mask: a column mask must be [B={batch}, W={w}], got {tuple(mask.shape)}")
    elif mask.dim() == 3:
        if tuple(mask.shape) != (batch, h, w):
            raise ValueError(f"mask: expected [B={batch}, {h}, {w}] or a column mask [B, W], got {tuple(mask.shape)}")
    else:
        raise ValueError(f"mask: expected [B, H, W] or a column mask [B, W], got {tuple(mask.shape)}")


def _checker(n: int, device) -> torch.Tensor:
    return 1.0 - 2.0 * (torch.arange(n, device=device) % 2).to(torch.float32)


def _phases(h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(``C``, ``s C``) for even sizes, real [H, W]: ``F_c v = s C F(C v)``."""
    c = _checker(h, device)[:, None] * _checker(w, device)[None, :]
    return c, (-c if ((h + w) // 2) % 2 else c)


def _zeros_like(t: torch.Tensor) -> torch.Tensor:
    """Zeros like ``t``; large CPU buffers come from the extension's output cache (fresh pages
    cost more than the FFTs on a VM)."""
    if t.device.type == "cpu" and _extension.cpu_available():
        with torch.no_grad():  # a fresh buffer: nothing to differentiate
            return torch.ops.hypir_kernels._empty_like_cached(t).zero_()
    return torch.zeros_like(t)


def _to_output(y: torch.Tensor, real_view: bool) -> torch.Tensor:
    return torch.stack([y.real, y.imag], dim=1) if real_view else y


def mri_forward(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``y = M F_c (S x)``: multi-coil k-space ``[B, Nc, H, W]`` (see module doc for shapes)."""
    xc, real_view = _as_complex(x, "x")
    B, H, W = xc.shape
    _check(maps, mask, B, H, W, xc.dtype, xc.device)
    if B * maps.shape[1] * H * W == 0:  # nothing to transform (the FFT libraries reject empty extents)
        return _to_output(maps * xc[:, None], real_view)  # empty, of the right shape, in the graph
    return backend.dispatch("mri_forward", xc.device)(xc, maps, mask, real_view)


def _forward_fast(xc: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, real_view: bool) -> torch.Tensor:
    B, H, W = xc.shape
    if H % 2 or W % 2:  # the checkerboard identity needs even sizes
        return ref.mri_forward(xc, maps, mask, real_view)
    m = mask.to(xc.real.dtype)
    pre, phase = (p.to(m.dtype) for p in _phases(H, W, xc.device))
    coil = maps * (xc * pre)[:, None]  # S (C x): the centring folded into the image
    if mask.dim() == 3:
        y = torch.fft.fft2(coil, norm="ortho") * (m * phase)[:, None]
        return _to_output(y, real_view)
    rows = torch.fft.fft(coil, dim=-1, norm="ortho")  # along W, every row
    del coil
    # Zero-filled output written in place, directly in the caller's layout (no stacking copy).
    y = _zeros_like(torch.view_as_real(rows).movedim(-1, 1) if real_view else rows)
    for b in range(B):
        cols = torch.nonzero(m[b]).flatten()
        if cols.numel() == 0:
            continue
        kept = torch.fft.fft(rows[b].index_select(-1, cols), dim=-2, norm="ortho")  # along H, kept columns only
        kept = kept * (phase.index_select(1, cols) * m[b, cols])
        if real_view:
            y[b, 0].index_copy_(-1, cols, kept.real)
            y[b, 1].index_copy_(-1, cols, kept.imag)
        else:
            y[b].index_copy_(-1, cols, kept)
    return y


def mri_adjoint(y: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x = S^H F_c^H M y``: the adjoint of :func:`mri_forward`, image ``[B, H, W]`` (real view
    ``[B, 2, H, W]`` when ``y`` is the real view ``[B, 2, Nc, H, W]``)."""
    if y.is_complex():
        check_tensor("y", y, dims=4, dtypes=_COMPLEX)
        real_view = False
        B, Nc, H, W = y.shape
    else:
        check_tensor("y", y, dims=5, dtypes=_REAL)
        if y.shape[1] != 2:
            raise ValueError(f"y: a real tensor must be the real view [B, 2, Nc, H, W], got {tuple(y.shape)}")
        real_view = True
        B, _, Nc, H, W = y.shape
    cdtype = y.dtype if y.is_complex() else (torch.complex128 if y.dtype == torch.float64 else torch.complex64)
    _check(maps, mask, B, H, W, cdtype, y.device)
    if maps.shape[1] != Nc:
        raise ValueError(f"maps: expected Nc={Nc} coils as in y, got {maps.shape[1]}")
    if B * Nc * H * W == 0:  # nothing to transform: A^H y is empty, or zero with no coils
        x = (maps.conj() * (torch.complex(y[:, 0], y[:, 1]) if real_view else y)).sum(1)
        return _to_output(x, real_view)
    return backend.dispatch("mri_adjoint", y.device)(y, maps, mask, real_view)


def _adjoint_fast(y: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, real_view: bool) -> torch.Tensor:
    B, H, W = maps.shape[0], maps.shape[2], maps.shape[3]
    if H % 2 or W % 2:
        return ref.mri_adjoint(y, maps, mask, real_view)
    m = mask.to(maps.real.dtype)
    pre, phase = (p.to(m.dtype) for p in _phases(H, W, y.device))
    if mask.dim() == 3:
        yc = torch.complex(y[:, 0], y[:, 1]) if real_view else y
        img = torch.fft.ifft2(yc * (m * phase)[:, None], norm="ortho")
    else:  # reads only the kept columns, of a real view too
        cols_img = _zeros_like(maps)
        for b in range(B):
            cols = torch.nonzero(m[b]).flatten()
            if cols.numel() == 0:
                continue
            if real_view:
                kept = torch.complex(y[b, 0].index_select(-1, cols), y[b, 1].index_select(-1, cols))
            else:
                kept = y[b].index_select(-1, cols)
            kept = kept * (phase.index_select(1, cols) * m[b, cols])
            cols_img[b].index_copy_(-1, cols, torch.fft.ifft(kept, dim=-2, norm="ortho"))  # along H, kept only
        img = torch.fft.ifft(cols_img, dim=-1, norm="ortho")
    x = (maps.conj() * img).sum(1) * pre  # conjugate-multiply-and-sum over coils, then C
    return _to_output(x, real_view)


# The fast paths are torch compositions (no C++ kernel), so they run on any device without the
# extension; the reference is the textbook formula.
backend.register("mri_forward", cpu=_forward_fast, cuda=_forward_fast, reference=ref.mri_forward)
backend.register("mri_adjoint", cpu=_adjoint_fast, cuda=_adjoint_fast, reference=ref.mri_adjoint)


def mri_normal(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``A^H A x`` (a binary mask is idempotent, so the mask is applied once)."""
    return mri_adjoint(mri_forward(x, maps, mask), maps, mask)


# ---------------------------------------------------------------------------------------------
# k-space column masks (phase-encode lines), seeded per sample


def _column_draws(seed: int, offsets: list[int], width: int, stream: int) -> torch.Tensor:
    """Philox words ``[B, width]`` for per-column decisions; ``stream`` separates the samplers
    (and keeps them apart from the image masks and noise drawn from the same seed)."""
    u32 = 0xFFFFFFFF
    offs = torch.tensor(offsets, dtype=torch.int64)
    c0 = torch.arange(width, dtype=torch.int64)[None, :].expand(len(offsets), -1)
    c1 = torch.full_like(c0, 0x40000000 + stream)
    c2 = (offs & u32)[:, None].expand_as(c0)
    c3 = ((offs >> 32) & u32)[:, None].expand_as(c0)
    return philox4x32_10(c0, c1, c2, c3, seed & u32, (seed >> 32) & u32)[0]


def _acs(width: int, center_fraction: float) -> torch.Tensor:
    n = int(round(width * center_fraction))
    start = (width - n + 1) // 2
    acs = torch.zeros(width, dtype=torch.bool)
    acs[start:start + n] = True
    return acs


def mri_column_mask(batch: int, width: int, acceleration: int, seed: int, *, center_fraction: float = 0.08,
                    kind: str = "random", offsets=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Column masks ``[B, W]`` (1 = acquired k-space column) with ``round(W / acceleration)``
    lines in all: a centred block of ``round(W * center_fraction)`` ACS lines plus lines chosen
    uniformly without replacement (``kind="random"``) or evenly spaced with a random phase
    (``"equispaced"``) among the other columns -- the fastMRI / deepinv samplers, with exactly the
    target number of lines. Seeded per sample (Philox, ``offsets`` as for the image masks)."""
    check_int("batch", batch, minimum=0)
    check_int("width", width, minimum=1)
    check_int("acceleration", acceleration, minimum=1)
    seed = check_seed("seed", seed)
    if kind not in ("random", "equispaced"):
        raise ValueError(f"kind: expected 'random' or 'equispaced', got {kind!r}")
    acs = _acs(width, check_probability("center_fraction", center_fraction))
    total = max(int(round(width / acceleration)), int(acs.sum()))
    others = torch.nonzero(~acs).flatten()
    n_pick = min(total - int(acs.sum()), others.numel())
    offs = _offsets(offsets, batch)
    draws = _column_draws(seed, offs, width, stream=0 if kind == "random" else 1)
    mask = acs[None, :].repeat(batch, 1)
    if n_pick > 0 and batch > 0:  # the whole batch at once (one sample's picks depend only on its draws)
        if kind == "random":
            order = torch.argsort(draws[:, others] * width + others, dim=1)  # ties impossible: ranks by (draw, column)
            picks = others[order[:, :n_pick]]
        else:
            step = others.numel() / n_pick
            phase = (draws[:, :1].double() / 2**32) * step
            idx = (phase + step * torch.arange(n_pick, dtype=torch.float64)).long().clamp(max=others.numel() - 1)
            picks = others[idx]
        mask.scatter_(1, picks, True)
    return mask.to(dtype)


def mri_further_mask(mask: torch.Tensor, remove: int, seed: int, *, center_fraction: float = 0.08, offsets=None) -> torch.Tensor:
    """Ambient further corruption of column masks ``[B, W]``: drop ``remove`` of each sample's
    acquired non-ACS lines (chosen uniformly, Philox-seeded), keeping the ACS block; the result
    is a subset of ``mask``."""
    check_tensor("mask", mask, dims=2)
    check_int("remove", remove, minimum=0)
    seed = check_seed("seed", seed)
    B, W = mask.shape
    acs = _acs(W, check_probability("center_fraction", center_fraction))
    draws = _column_draws(seed, _offsets(offsets, B), W, stream=2)
    out = mask.clone()
    removable = (mask != 0).cpu() & ~acs  # [B, W]
    counts = removable.sum(1)
    if B and remove > int(counts.min()):
        b = int(counts.argmin())
        raise ValueError(f"remove: sample {b} has only {int(counts[b])} non-ACS lines, cannot remove {remove}")
    if remove and B:  # rank the removable columns by (draw, column), the others last; drop the first `remove`
        key = torch.where(removable, draws * W + torch.arange(W), torch.iinfo(torch.int64).max)
        drop = torch.argsort(key, dim=1)[:, :remove]
        out[torch.arange(B)[:, None].to(mask.device), drop.to(mask.device)] = 0
    return out
