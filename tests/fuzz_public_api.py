"""Hostile-input fuzzer for every public function, operator class and ``torch.ops.hypir_kernels``
op: run as a child process by ``test_public_api_fuzz.py`` (a crash must not take the test runner
with it). Each target builds plausible arguments from small shared sizes (zeros included) and then,
in most examples, breaks one of them: a wrong shape, dtype, layout, value (NaN, Inf, huge, negative,
out-of-range seeds) or type. Every call must either return or raise a ``ValueError`` whose message
names one of the target's arguments; anything else fails here, and a signal fails the parent.

    python tests/fuzz_public_api.py --examples 40 --log LOG [--only NAME ...]

Before each call the target and its arguments are written (flushed) to LOG, so a crash is
reproducible from the last line.

Why one file of more than 500 lines: it is a table -- one short ``t_<name>`` generator per public
target (35 of them) beside the shared strategies and the harness that collects them by name -- and
it runs as one child process; split up, a new public function would need an edit in two places.
"""
from __future__ import annotations

import argparse
import re
import signal
import sys
from typing import Callable

import hypothesis
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hypir_kernels as hk
from hypir_kernels import operators as ops

LOG = None
CALL_SECONDS = 30
FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
BAD_DTYPES = (torch.int64, torch.bool, torch.uint8, torch.complex64)
BAD_INTS = (-1, 0, 1, 3, 2**31, 2**63, 2**64, -(2**63) - 1, 10**5)
BAD_FLOATS = (float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e-300, 1e39, 1e300, 2.0**64)
BAD_OBJECTS = (None, "x", 1.5, [1], (2, 3), True, torch.zeros(()))
# Errors torch itself raises for a request it cannot serve; not ours to re-word.
TORCH_LIMITS = re.compile(r"(not enough memory|DefaultCPUAllocator|can't allocate|out of memory)", re.I)


class Case:
    """One call: a target, its named arguments, and the names the error message may use."""

    def __init__(self, fn: Callable, args: dict, names: list[str] | None = None, post: Callable | None = None):
        self.fn, self.args, self.post = fn, args, post
        self.names = names or list(args)

    def run(self):
        out = self.fn(**self.args)
        if self.post is not None:
            out = self.post(out)
        return out


def _describe(v) -> str:
    if isinstance(v, torch.Tensor):
        flags = "" if v.is_contiguous() else " noncontig"
        return f"T{tuple(v.shape)}:{str(v.dtype).replace('torch.', '')}{flags}"
    if isinstance(v, (list, tuple)) and len(v) > 8:
        return f"{type(v).__name__}[{len(v)}]"
    return repr(v)


def tensor(draw, shape, dtype=torch.float32, low=None, high=None) -> torch.Tensor:
    """A tensor of ``shape``; values from a drawn seed, sometimes with a NaN/Inf/huge value."""
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    if dtype.is_complex:
        t = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    elif dtype == torch.bool:
        t = torch.rand(shape, generator=g) < 0.5
    elif not dtype.is_floating_point:
        t = torch.randint(-3 if low is None else low, 4 if high is None else high, shape, generator=g).to(dtype)
    else:
        t = torch.randn(shape, generator=g, dtype=torch.float64)
        if low is not None:
            t = t.abs() + low
        t = t.to(dtype)
        if t.numel() and draw(st.integers(0, 5)) == 0:
            t.view(-1)[draw(st.integers(0, t.numel() - 1))] = draw(st.sampled_from([float("nan"), float("inf"), -1e30]))
    return t


def break_tensor(draw, t: torch.Tensor) -> torch.Tensor:
    how = draw(st.sampled_from(["shape", "dims", "dtype", "layout", "empty"]))
    if how == "shape" and t.dim():
        shape = list(t.shape)
        shape[draw(st.integers(0, t.dim() - 1))] = draw(st.integers(0, 7))
        return tensor(draw, shape, t.dtype if t.dtype in FLOATS else torch.float32)
    if how == "dims":
        return tensor(draw, [draw(st.integers(0, 4)) for _ in range(draw(st.integers(0, 6)))])
    if how == "dtype":
        return tensor(draw, list(t.shape), draw(st.sampled_from(BAD_DTYPES + FLOATS)))
    if how == "layout" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() else t
    return tensor(draw, [0] * max(t.dim(), 1), t.dtype)


def break_value(draw, v):
    """A hostile replacement of one argument's value, of the same kind most of the time."""
    if isinstance(v, torch.Tensor):
        return break_tensor(draw, v)
    if draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(BAD_OBJECTS))
    if isinstance(v, bool):
        return draw(st.sampled_from([None, 1, "yes"]))
    if isinstance(v, int):
        return draw(st.sampled_from(BAD_INTS))
    if isinstance(v, float):
        return draw(st.sampled_from(BAD_FLOATS))
    if isinstance(v, str):
        return draw(st.sampled_from(["", "bogus", v.upper()]))
    if isinstance(v, (list, tuple)):
        if not v:
            return [draw(st.sampled_from(BAD_INTS))]
        v = list(v)
        i = draw(st.integers(0, len(v) - 1))
        v[i] = draw(st.sampled_from(BAD_INTS + BAD_FLOATS[:2]))
        return v if draw(st.booleans()) else v[:-1]
    return draw(st.sampled_from(BAD_OBJECTS))


def mutate(draw, case: Case, library_op: bool = False) -> Case:
    """Break one argument (or none, a third of the time). Library ops keep their schema types:
    torch's own parser answers type errors there."""
    if draw(st.integers(0, 2)) == 0:
        return case
    name = draw(st.sampled_from(list(case.args)))
    v = case.args[name]
    new = break_value(draw, v)
    if library_op:
        if isinstance(v, torch.Tensor) and not isinstance(new, torch.Tensor):
            new = break_tensor(draw, v)
        elif isinstance(v, bool) or v is None:
            return case
        elif isinstance(v, int) and not (isinstance(new, int) and not isinstance(new, bool) and abs(new) < 2**63):
            new = draw(st.sampled_from([-1, 0, 1, 3, 2**31, 10**5]))
        elif isinstance(v, float) and not isinstance(new, float):
            new = draw(st.sampled_from(BAD_FLOATS))
        elif isinstance(v, (list, tuple)):
            new = [x if isinstance(x, int) and abs(x) < 2**63 else -1 for x in (new if isinstance(new, list) else [])]
        elif isinstance(v, str) and not isinstance(new, str):
            new = "bogus"
    case.args = {**case.args, name: new}
    return case


# ---------------------------------------------------------------------------------------------
# Targets. Each returns a Case with plausible arguments built from drawn small sizes.

def sizes(draw, n: int, lo: int = 0, hi: int = 6) -> list[int]:
    return [draw(st.integers(lo, hi)) for _ in range(n)]


def seed(draw):
    return draw(st.sampled_from([0, 1, 12345, 2**63, 2**64 - 1]))


def image(draw, lo=0, hi=9):
    B, C, H, W = sizes(draw, 4, lo, hi)
    return tensor(draw, [B, C, H, W], draw(st.sampled_from(FLOATS)))


def t_add_noise(draw):
    x = image(draw)
    return Case(hk.add_noise, dict(x=x, sigma=draw(st.sampled_from([0.0, 0.3, 2.0])), seed=seed(draw)))


def t_apply_mask(draw):
    x = image(draw)
    return Case(hk.apply_mask, dict(x=x, keep=draw(st.sampled_from([0.0, 0.3, 1.0])), seed=seed(draw),
                                   shared_channels=draw(st.booleans()), further_delta=draw(st.sampled_from([None, 0.2]))))


def t_bernoulli_mask(draw):
    return Case(hk.bernoulli_mask, dict(shape=tuple(sizes(draw, 4)), keep=0.5, seed=seed(draw),
                                        further_delta=draw(st.sampled_from([None, 0.5]))))


def t_box_mask(draw):
    return Case(hk.box_mask, dict(shape=tuple(sizes(draw, 4)), box_size=draw(st.sampled_from([0, 2, (1, 3), 0.5])),
                                  seed=seed(draw)))


def t_attention(draw):
    B, Hh, Sq, Sk = sizes(draw, 4, 0, 5)
    D = draw(st.sampled_from(hk.HEAD_DIMS))
    dt = draw(st.sampled_from(FLOATS))
    q, k, v = (tensor(draw, [B, Hh, s, D], dt) for s in (Sq, Sk, Sk))
    return Case(hk.attention, dict(q=q, k=k, v=v, scale=draw(st.sampled_from([None, 0.1]))))


def t_downsample(draw, adjoint=False):
    f = draw(st.integers(1, 3))
    B, C, h, w = sizes(draw, 4, 0, 4)
    x = tensor(draw, [B, C, h if adjoint else h * f, w if adjoint else w * f], draw(st.sampled_from(FLOATS)))
    fn = hk.downsample_adjoint if adjoint else hk.downsample
    return Case(fn, {("y" if adjoint else "x"): x, "factor": f, "mode": draw(st.sampled_from(hk.resample.MODES))})


def t_blend_tiles(draw):
    N, C, t = draw(st.integers(0, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 6))
    H, W = sizes(draw, 2, 1, 12)
    origins = torch.stack([torch.randint(0, max(H - t, 0) + 1, (N,)), torch.randint(0, max(W - t, 0) + 1, (N,))], 1)
    return Case(hk.blend_tiles, dict(tiles=tensor(draw, [N, C, t, t]), origins=origins, height=H, width=W,
                                     weight=draw(st.sampled_from(hk.WEIGHTS)), scale=draw(st.sampled_from([1, 2]))))


def t_filter2d(draw, adjoint=False):
    x = image(draw)
    k = draw(st.sampled_from([1, 3, 5, 23]))
    kernels = tensor(draw, [x.shape[0], k, k], x.dtype)
    fn = hk.filter2d_adjoint if adjoint else hk.filter2d
    return Case(fn, {("y" if adjoint else "x"): x, "kernels": kernels, "padding": draw(st.sampled_from(hk.PADDINGS))})


def t_gaussian_blur(draw, adjoint=False):
    x = image(draw)
    fn = hk.gaussian_blur_adjoint if adjoint else hk.gaussian_blur
    return Case(fn, {("y" if adjoint else "x"): x, "sigma": draw(st.sampled_from([0.5, 2.0, 40.0])),
                     "kernel_size": draw(st.sampled_from([None, 1, 5, 31])), "padding": draw(st.sampled_from(hk.PADDINGS))})


def _lora_linear_args(draw):
    N, fin, fout, r = sizes(draw, 4, 0, 6)
    dt = draw(st.sampled_from(FLOATS))
    return dict(x=tensor(draw, [N, fin], dt), weight=tensor(draw, [fout, fin], dt),
                bias=draw(st.sampled_from([None, tensor(draw, [fout], dt)])), lora_A=tensor(draw, [r, fin], dt),
                lora_B=tensor(draw, [fout, r], dt), scale=draw(st.sampled_from([0.5, 2.0])))


def t_lora_linear(draw):
    a = _lora_linear_args(draw)
    return Case(hk.lora_linear, dict(a, dropout_p=draw(st.sampled_from([0.0, 0.5])),
                                     strategy=draw(st.sampled_from(["auto", "activation", "weight"])), seed=seed(draw)))


def _lora_conv_args(draw):
    B, cin, cout, r = sizes(draw, 4, 0, 4)
    H, W = sizes(draw, 2, 0, 7)
    kh = draw(st.sampled_from([1, 3]))
    dt = draw(st.sampled_from(FLOATS))
    return dict(x=tensor(draw, [B, cin, H, W], dt), weight=tensor(draw, [cout, cin, kh, kh], dt),
                bias=draw(st.sampled_from([None, tensor(draw, [cout], dt)])), lora_A=tensor(draw, [r, cin, kh, kh], dt),
                lora_B=tensor(draw, [cout, r, 1, 1], dt), scale=0.5)


def t_lora_conv2d(draw):
    a = _lora_conv_args(draw)
    return Case(hk.lora_conv2d, dict(a, stride=draw(st.sampled_from([1, 2, (1, 2)])), padding=draw(st.sampled_from([0, 1])),
                                     dilation=1, groups=1, dropout_p=draw(st.sampled_from([0.0, 0.3])),
                                     strategy=draw(st.sampled_from(["auto", "activation", "weight"])), seed=seed(draw)))


def _mri(draw):
    B, Nc, H, W = sizes(draw, 4, 0, 6)
    x = tensor(draw, [B, H, W], draw(st.sampled_from([torch.complex64, torch.complex128])))
    maps = tensor(draw, [B, Nc, H, W], x.dtype)
    mask = (torch.rand(B, W) < 0.5).float()
    return x, maps, mask


def t_mri(draw, which):
    x, maps, mask = _mri(draw)
    if which == "adjoint":
        x = tensor(draw, [maps.shape[0], maps.shape[1], maps.shape[2], maps.shape[3]], x.dtype)
        return Case(hk.mri_adjoint, dict(y=x, maps=maps, mask=mask))
    fn = hk.mri_forward if which == "forward" else hk.mri_normal
    return Case(fn, dict(x=x, maps=maps, mask=mask))


def t_mri_column_mask(draw):
    return Case(hk.mri_column_mask, dict(batch=draw(st.integers(0, 4)), width=draw(st.integers(0, 40)),
                                         acceleration=draw(st.integers(1, 8)), seed=seed(draw),
                                         center_fraction=draw(st.sampled_from([0.0, 0.08, 0.5])),
                                         kind=draw(st.sampled_from(["random", "equispaced"]))))


def t_mri_further_mask(draw):
    B, W = draw(st.integers(0, 4)), draw(st.integers(0, 40))
    mask = (torch.rand(B, W) < 0.5).float()
    return Case(hk.mri_further_mask, dict(mask=mask, remove=draw(st.integers(0, 5)), seed=seed(draw),
                                          center_fraction=draw(st.sampled_from([0.0, 0.08]))))


def t_plan_tiles(draw):
    H, W = sizes(draw, 2, 0, 40)
    return Case(hk.plan_tiles, dict(height=H, width=W, tile=draw(st.integers(1, 16)), stride=draw(st.integers(1, 16))))


def t_tiled_apply(draw):
    x = image(draw, 0, 12)
    s = draw(st.sampled_from([1, 2]))
    t = draw(st.integers(1, 8))
    return Case(hk.tiled_apply, dict(fn=lambda z: z.repeat_interleave(s, -1).repeat_interleave(s, -2), x=x, tile=t,
                                     stride=draw(st.integers(1, t)), scale=s, weight=draw(st.sampled_from(hk.WEIGHTS)),
                                     batch_tiles=draw(st.integers(1, 3))))


def t_operators(draw):
    x = image(draw, 0, 8)
    kind = draw(st.sampled_from(["Blur", "Filter2D", "Downsample", "Inpainting", "Noise", "Compose"]))
    if kind == "Blur":
        ctor, args = ops.Blur, dict(sigma=1.0, kernel_size=None, padding="reflect")
    elif kind == "Filter2D":
        ctor, args = ops.Filter2D, dict(kernels=tensor(draw, [x.shape[0], 3, 3], x.dtype), padding="zeros")
    elif kind == "Downsample":
        ctor, args = ops.Downsample, dict(factor=1, mode="bicubic")
    elif kind == "Inpainting":
        ctor, args = ops.Inpainting, dict(keep=0.5, seed=seed(draw))
    elif kind == "Noise":
        ctor, args = ops.Noise, dict(sigma=0.1, seed=seed(draw))
    else:
        ctor, args = (lambda **kw: ops.Compose(ops.Blur(kw["sigma"]), ops.Noise(0.1, kw["seed"]))), dict(sigma=1.0, seed=1)
    case = mutate(draw, Case(ctor, args))
    method = draw(st.sampled_from(["A", "A_adjoint", "A_normal", "forward"]))
    # A_adjoint names its input y.
    return Case(lambda x, **kw: getattr(ctor(**kw), method)(x), dict(x=x, **case.args), names=["x", "y", *case.args])


# Library ops (torch.ops.hypir_kernels.*): the same shapes through the raw schema.
def lib(name):
    return getattr(torch.ops.hypir_kernels, name)


def t_op_add_noise(draw):
    x = image(draw)
    return Case(lib("add_noise"), dict(x=x, seed=1, offsets=list(range(x.shape[0])), sigma=tensor(draw, [x.shape[0]], torch.float64, low=0)))


def t_op_apply_mask(draw):
    x = image(draw)
    return Case(lib("apply_mask"), dict(x=x, seed=1, offsets=list(range(x.shape[0])), threshold=2**31,
                                        further_threshold=draw(st.sampled_from([-1, 2**30])), shared=draw(st.booleans())))


def t_op_attention_forward(draw):
    c = t_attention(draw).args
    return Case(lib("attention_forward"), dict(q=c["q"], k=c["k"], v=c["v"], scale=0.125))


def t_op_attention_backward(draw):
    c = t_attention(draw).args
    q, k, v = c["q"], c["k"], c["v"]
    lse = tensor(draw, list(q.shape[:3]), torch.float32)
    return Case(lib("attention_backward"), dict(grad_out=torch.randn_like(q), q=q, k=k, v=v, out=torch.randn_like(q), lse=lse, scale=0.125))


def t_op_blend_tiles(draw):
    c = t_blend_tiles(draw).args
    o = c["origins"]
    t = c["tiles"].shape[-1]
    return Case(lib("blend_tiles"), dict(tiles=c["tiles"], ys=o[:, 0].tolist(), xs=o[:, 1].tolist(), out_h=c["height"],
                                         out_w=c["width"], weight=draw(st.integers(0, 2)), overlap_y=t // 2, overlap_x=t // 2))


def t_op_filter2d_cpu(draw):
    c = t_filter2d(draw).args
    x = c.get("x")
    k = c["kernels"]
    return Case(lib("filter2d_cpu"), dict(x=x, kernels=k, pad=draw(st.integers(0, 3)), adjoint=draw(st.booleans())))


def t_op_separable_filter(draw):
    x = image(draw)
    k = draw(st.sampled_from([1, 3, 5]))
    return Case(lib("separable_filter"), dict(x=x, wy=tensor(draw, [x.shape[0], k], x.dtype), wx=tensor(draw, [x.shape[0], k], x.dtype),
                                              pad=draw(st.integers(0, 3)), adjoint=draw(st.booleans())))


def t_op_lora_linear_activation(draw):
    a = _lora_linear_args(draw)
    return Case(lib("lora_linear_activation"), dict(a, dropout_p=draw(st.sampled_from([0.0, 0.5])), seed=1))


def t_op_lora_linear_activation_backward(draw):
    a = _lora_linear_args(draw)
    x, A, Bm = a["x"], a["lora_A"], a["lora_B"]
    h = tensor(draw, [x.shape[0], A.shape[0]], x.dtype)
    dy = tensor(draw, [x.shape[0], Bm.shape[0]], x.dtype)
    return Case(lib("lora_linear_activation_backward"), dict(dy=dy, x=x, h=h, weight=a["weight"], lora_A=A, lora_B=Bm, scale=0.5,
                                                           dropout_p=0.0, seed=1, forward_backend=draw(st.sampled_from(["reference", "triton"]))))


def t_op_lora_linear_weight(draw):
    return Case(lib("lora_linear_weight"), _lora_linear_args(draw))


def t_op_lora_conv2d_activation(draw):
    a = _lora_conv_args(draw)
    return Case(lib("lora_conv2d_activation"), dict(a, stride=[1, 1], padding=[1, 1], dilation=[1, 1], dropout_p=0.0, seed=1))


def t_op_lora_conv2d_weight(draw):
    a = _lora_conv_args(draw)
    return Case(lib("lora_conv2d_weight"), dict(a, stride=[1, 1], padding=[0, 0], dilation=[1, 1]))


def t_group_norm_silu(draw):
    groups, per_group = draw(st.integers(1, 3)), draw(st.integers(0, 3))
    shape = [draw(st.integers(0, 3)), groups * per_group] + sizes(draw, draw(st.integers(0, 3)), hi=5)
    x = tensor(draw, shape, draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16, torch.float64])))
    if x.dim() == 4 and draw(st.booleans()):
        x = x.contiguous(memory_format=torch.channels_last)
    affine = draw(st.booleans())
    w, b = (tensor(draw, [shape[1]]), tensor(draw, [shape[1]])) if affine else (None, None)
    return Case(hk.group_norm_silu, dict(x=x, num_groups=groups, weight=w, bias=b, eps=1e-5, silu=draw(st.booleans())))


def t_op_group_norm_silu(draw):
    c = t_group_norm_silu(draw).args
    return Case(lib("group_norm_silu"), dict(x=c["x"], weight=c["weight"], bias=c["bias"], groups=c["num_groups"],
                                             eps=1e-5, silu=c["silu"]))


def t_op_group_norm_silu_backward(draw, kernel_op=False):
    c = t_group_norm_silu(draw).args
    x, groups = c["x"], c["num_groups"]
    stats = [tensor(draw, [x.shape[0], groups], torch.float64 if x.dtype == torch.float64 and not kernel_op else torch.float32)
             for _ in range(2)]
    return Case(lib("_group_norm_silu_backward" if kernel_op else "group_norm_silu_backward"),
                dict(grad=tensor(draw, list(x.shape), x.dtype), x=x, weight=c["weight"], bias=c["bias"], mean=stats[0],
                     rstd=stats[1].abs(), groups=groups, eps=1e-5, silu=c["silu"]))


def t_kernel_ops(draw):
    """The C++ kernel ops behind the library ops (also reachable as ``torch.ops.hypir_kernels._*``)."""
    which = draw(st.sampled_from(["_add_noise", "_apply_mask", "_separable_filter", "_blend_tiles", "_filter2d_fft",
                                  "_group_norm_silu", "_group_norm_silu_backward"]))
    if which == "_group_norm_silu":
        c = t_op_group_norm_silu(draw).args
    elif which == "_group_norm_silu_backward":
        return t_op_group_norm_silu_backward(draw, kernel_op=True)
    elif which == "_add_noise":
        c = t_op_add_noise(draw).args
    elif which == "_apply_mask":
        c = t_op_apply_mask(draw).args
    elif which == "_separable_filter":
        c = t_op_separable_filter(draw).args
    elif which == "_blend_tiles":  # the kernel op takes the origins as int64 tensors
        c = t_op_blend_tiles(draw).args
        c = dict(c, ys=torch.tensor(c["ys"], dtype=torch.int64), xs=torch.tensor(c["xs"], dtype=torch.int64))
    else:
        x = tensor(draw, sizes(draw, 4), draw(st.sampled_from([torch.float32, torch.float64])))
        k = draw(st.sampled_from([1, 3]))
        n = draw(st.sampled_from([1, 8, 12, 16]))
        taps = tensor(draw, [x.shape[0], k, n // 2 + 1], torch.complex64 if x.dtype == torch.float32 else torch.complex128)
        c = dict(x=x, taps=taps, n=n, pad=draw(st.integers(0, 2)), adjoint=draw(st.booleans()))
    return Case(lib(which), c)


def t_hypir_degrade(draw):
    from hypir.data.realesrgan import degrade

    B, h, w = draw(st.integers(0, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    gt = tensor(draw, [B, 3, 4 * h, 4 * w], draw(st.sampled_from([torch.float32, torch.float64]))).clamp(0, 1)
    return Case(degrade, dict(gt=gt, seed=seed(draw)))


def t_hypir_jpeg(draw):
    from hypir.data.jpeg import jpeg

    x = tensor(draw, [draw(st.integers(0, 3)), 3, draw(st.integers(0, 20)), draw(st.integers(0, 20))]).clamp(0, 1)
    return Case(jpeg, dict(x=x, quality=draw(st.sampled_from([1, 50, 100]))))


def t_hypir_kernels(draw):
    from hypir.data.kernels import random_kernels

    return Case(random_kernels, dict(batch=draw(st.integers(0, 6)), seed=seed(draw)))


def t_hypir_generated_image(draw):
    from hypir.data.synthetic import generated_image

    return Case(generated_image, dict(size=draw(st.integers(0, 40)), seed=seed(draw)))


def t_hypir_texture_richness(draw):
    from hypir.models.texture import texture_richness

    shape = [draw(st.integers(0, 2)), draw(st.sampled_from([1, 3])), draw(st.integers(0, 9)), draw(st.integers(0, 9))]
    return Case(texture_richness, dict(image=tensor(draw, shape)))


_LPIPS = []


def t_hypir_lpips(draw):
    from hypir.train.losses import LPIPS

    if not _LPIPS:
        _LPIPS.append(LPIPS())
    shape = [draw(st.integers(0, 2)), 3, draw(st.integers(0, 40)), draw(st.integers(0, 40))]
    return Case(_LPIPS[0], dict(x=tensor(draw, shape), y=tensor(draw, shape)))


def t_hypir_gan_losses(draw):
    from hypir.train import losses

    shape = [draw(st.integers(0, 2)), 1, draw(st.integers(0, 4)), draw(st.integers(0, 4))]
    kind = draw(st.sampled_from(["bce", "hinge"]))
    if draw(st.booleans()):
        return Case(losses.generator_loss, dict(fake=[tensor(draw, shape)], kind=kind))
    return Case(losses.discriminator_loss, dict(real=[tensor(draw, shape)], fake=[tensor(draw, shape)], kind=kind))


def t_hypir_fid(draw):
    from hypir.metrics import feature_statistics, frechet_distance

    n, d = draw(st.integers(0, 5)), draw(st.integers(0, 4))
    if draw(st.booleans()):
        return Case(feature_statistics, dict(features=tensor(draw, [n, d], draw(st.sampled_from(FLOATS)))))
    d2 = draw(st.sampled_from([d, d + 1]))
    return Case(frechet_distance, dict(mu1=tensor(draw, [d]), cov1=tensor(draw, [d, d]), mu2=tensor(draw, [d2]),
                                       cov2=tensor(draw, [d2, draw(st.sampled_from([d2, d2 + 1]))])),
                names=["mu1", "cov1", "mu2", "cov2", "mu1/cov1", "mu2/cov2", "cov1/cov2"])


def t_hypir_image_grid(draw):
    from hypir.data.io import image_grid

    return Case(image_grid, dict(images=image(draw, 0, 5)))


def t_hypir_rsd_corrupt(draw):
    from hypir.rsd.tasks import corrupt

    x = image(draw, 0, 8)
    return Case(corrupt, dict(x=x, task=draw(st.sampled_from(["blur", "inpainting", "sr", "mri", "x"])),
                              sigma_n=draw(st.sampled_from([0.0, 0.2, -1.0])), seed=seed(draw)),
                names=["x", "task", "sigma_n", "seed", "sr_factor", "keep", "acceleration"])


class _Identity(torch.nn.Module):
    def forward(self, inp, c_noise):
        return inp[:, :1]


def t_hypir_rsd_losses(draw):
    from hypir.rsd.edm import EDMPrecond
    from hypir.rsd.objectives import ambient_tweedie_loss, standard_loss

    model = EDMPrecond(_Identity())
    y = image(draw, 0, 5)
    g = draw(st.sampled_from([torch.Generator().manual_seed(0), "x"]))
    if draw(st.booleans()):
        seen = draw(st.sampled_from([None, "ones", "wrong", "x"]))
        if seen == "ones" and torch.is_tensor(y) and y.dim() == 4:
            seen = torch.ones_like(y[:, :1])
        elif seen == "wrong":
            seen = torch.ones(1, 1, 3)
        return Case(model, dict(x=y, sigma=draw(st.sampled_from([1.0, 0.0, -1.0, float("nan")])), seen=seen),
                    names=["x", "sigma", "seen"])
    if draw(st.booleans()):
        return Case(standard_loss, dict(model=model, y=y, generator=g), names=["model", "y", "generator", "sigma", "x", "cond"])
    return Case(ambient_tweedie_loss, dict(model=model, y=y, sigma_n=draw(st.sampled_from([0.0, 0.2, -1.0])),
                                           generator=g), names=["model", "y", "generator", "sigma_n", "sigma", "x", "cond"])


def t_hypir_rsd_sid_loss(draw):
    from hypir.rsd.sid import sid_loss

    w = image(draw, 0, 5)
    shape = tuple(w.shape) if torch.is_tensor(w) else (1, 1, 2, 2)
    real = draw(st.sampled_from(["same", "other", "x"]))
    real = w.clone() + 1 if real == "same" and torch.is_tensor(w) else tensor(draw, [shape[0] + 1, *shape[1:]]) \
        if real == "other" else "x"
    return Case(sid_loss, dict(real=real, fake=w, w=w, alpha=draw(st.sampled_from([1.2, float("nan"), "a"]))),
                names=["real", "fake", "w", "alpha"])


PUBLIC = {
    "add_noise": t_add_noise, "apply_mask": t_apply_mask, "bernoulli_mask": t_bernoulli_mask, "box_mask": t_box_mask,
    "attention": t_attention, "downsample": t_downsample, "downsample_adjoint": lambda d: t_downsample(d, True),
    "blend_tiles": t_blend_tiles, "filter2d": t_filter2d, "filter2d_adjoint": lambda d: t_filter2d(d, True),
    "gaussian_blur": t_gaussian_blur, "gaussian_blur_adjoint": lambda d: t_gaussian_blur(d, True),
    "lora_linear": t_lora_linear, "lora_conv2d": t_lora_conv2d, "mri_forward": lambda d: t_mri(d, "forward"),
    "mri_adjoint": lambda d: t_mri(d, "adjoint"), "mri_normal": lambda d: t_mri(d, "normal"),
    "mri_column_mask": t_mri_column_mask, "mri_further_mask": t_mri_further_mask, "plan_tiles": t_plan_tiles,
    "tiled_apply": t_tiled_apply, "operators": t_operators, "group_norm_silu": t_group_norm_silu,
    # hypir's data pipeline (training inputs come from users' files)
    "hypir.degrade": t_hypir_degrade, "hypir.jpeg": t_hypir_jpeg, "hypir.random_kernels": t_hypir_kernels,
    "hypir.generated_image": t_hypir_generated_image, "hypir.texture_richness": t_hypir_texture_richness,
    # the trainer's losses (called on the trainer's own tensors; checked so misuse fails clearly)
    "hypir.lpips": t_hypir_lpips, "hypir.gan_losses": t_hypir_gan_losses,
    # metrics and RSD (data corrupted from users' images; the EDM wrapper and its losses)
    "hypir.fid": t_hypir_fid, "hypir.image_grid": t_hypir_image_grid, "hypir.rsd.corrupt": t_hypir_rsd_corrupt,
    "hypir.rsd.losses": t_hypir_rsd_losses, "hypir.rsd.sid_loss": t_hypir_rsd_sid_loss,
}
LIBRARY_OPS = {
    "op.add_noise": t_op_add_noise, "op.apply_mask": t_op_apply_mask, "op.attention_forward": t_op_attention_forward,
    "op.attention_backward": t_op_attention_backward, "op.blend_tiles": t_op_blend_tiles, "op.filter2d_cpu": t_op_filter2d_cpu,
    "op.separable_filter": t_op_separable_filter, "op.lora_linear_activation": t_op_lora_linear_activation,
    "op.lora_linear_activation_backward": t_op_lora_linear_activation_backward, "op.lora_linear_weight": t_op_lora_linear_weight,
    "op.lora_conv2d_activation": t_op_lora_conv2d_activation, "op.lora_conv2d_weight": t_op_lora_conv2d_weight,
    "op.group_norm_silu": t_op_group_norm_silu, "op.group_norm_silu_backward": t_op_group_norm_silu_backward,
    "op.kernels": t_kernel_ops,
}
TARGETS = {**PUBLIC, **LIBRARY_OPS}


def _segfault(n: int):
    import os

    os.kill(os.getpid(), signal.SIGSEGV)  # what a kernel's out-of-bounds read does


def _raise_type_error(n: int):
    raise TypeError("not a ValueError")


# Targets that prove the harness can fail (run only when named with --only).
SELF_TESTS = {
    "selftest.crash": lambda draw: Case(_segfault, dict(n=draw(st.integers(1, 4)))),
    "selftest.wrong_error": lambda draw: Case(_raise_type_error, dict(n=draw(st.integers(1, 4)))),
}


def describe(case: Case) -> str:
    return ", ".join(f"{k}={_describe(v)}" for k, v in case.args.items())


def check_outcome(target: str, case: Case) -> None:
    target = f"{target}({describe(case)})"
    try:
        case.run()
    except ValueError as e:
        msg = str(e)
        if not any(re.search(rf"\b{re.escape(n)}\b", msg) for n in case.names):
            raise AssertionError(f"{target}: ValueError names none of {case.names}: {msg!r}") from e
    except MemoryError:  # a legitimately huge request (e.g. 2^31 samples): a clean error, not a crash
        pass
    except RuntimeError as e:
        if not TORCH_LIMITS.search(str(e)):
            raise AssertionError(f"{target}: {type(e).__name__} instead of a ValueError: {str(e)[:300]!r}") from e
    except Exception as e:  # noqa: BLE001 - the point is to catch anything that is not a ValueError
        raise AssertionError(f"{target}: {type(e).__name__} instead of a ValueError: {str(e)[:300]!r}") from e


def make_test(target: str, build, examples: int, random_seed: int | None = None):
    library_op = target.startswith("op.")

    @settings(max_examples=examples, deadline=None, database=None, derandomize=random_seed is None,
              report_multiple_bugs=False, suppress_health_check=list(HealthCheck))
    @hypothesis.seed(random_seed or 0)
    @given(st.data())
    def run(data):
        case = build(data.draw)
        if not target.startswith("selftest."):
            case = mutate(data.draw, case, library_op=library_op)
        LOG.write(f"{target} {describe(case)}\n")
        LOG.flush()
        signal.alarm(CALL_SECONDS)
        try:
            check_outcome(target, case)
        finally:
            signal.alarm(0)

    return run


def main(argv=None) -> int:
    global LOG, CALL_SECONDS
    p = argparse.ArgumentParser()
    p.add_argument("--examples", type=int, default=40)
    p.add_argument("--log", required=True)
    p.add_argument("--only", nargs="*")
    p.add_argument("--seed", type=int, default=None, help="explore other inputs (default: the same derandomized ones each run)")
    p.add_argument("--memory-gb", type=float, default=8.0, help="address-space cap: a runaway allocation fails, not the machine")
    p.add_argument("--call-seconds", type=int, default=30, help="a call that takes longer fails (cost must follow the work)")
    a = p.parse_args(argv)
    import resource

    cap = int(a.memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError(f"call took over {a.call_seconds} s")))
    CALL_SECONDS = a.call_seconds
    LOG = open(a.log, "w")
    failures = []
    for target in a.only or TARGETS:
        try:
            make_test(target, {**TARGETS, **SELF_TESTS}[target], a.examples, a.seed)()
        except Exception as e:  # noqa: BLE001 - AssertionError from check_outcome, or a bug in a target builder
            failures.append(str(e).splitlines()[0] if str(e) else target)
            print(f"FAIL {target}\n{e}\n", file=sys.stderr)
    print(f"{len(a.only or TARGETS) - len(failures)} targets passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
