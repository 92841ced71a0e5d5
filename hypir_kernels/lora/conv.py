"""LoRA conv layers: :func:`lora_conv2d`, its library ops (``torch.ops.hypir_kernels.lora_conv2d_*``)
and the eager paths (small CPU layers and every GPU layer without dropout as plain differentiable
ops: their autograd nodes are C++, cheaper in host time than a Python backward)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..checks import check_int, check_tensor
from ..reference import lora as ref
from .common import autocast_operands, check_common, dropout_seed, effective_weight, needs_grad
from .cost import choose_strategy


_MAX_CONV_ARG = 1 << 31  # stride/padding/dilation beyond this overflow torch's conv geometry


def _pair(v, name: str, minimum: int) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v, v]
    if not (isinstance(v, (tuple, list)) and len(v) == 2):
        raise ValueError(f"{name}: expected an int or a pair of ints, got {v!r}")
    return [check_int(name, i, minimum=minimum, maximum=_MAX_CONV_ARG) for i in v]


def lora_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_A: torch.Tensor,
                lora_B: torch.Tensor, scale: float, stride=1, padding=0, dilation=1, groups: int = 1,
                dropout_p: float = 0.0, strategy: str = "auto", seed: int | None = None) -> torch.Tensor:
    """``conv2d(x, W, b) + scale * conv1x1(conv2d(dropout(x), A), B)``.

    Args:
        x: ``[Bt, in, H, W]``. weight: ``[out, in, kh, kw]`` (frozen, ``groups`` must be 1).
        lora_A: ``[r, in, kh, kw]`` (the base's kernel, stride, padding, dilation).
        lora_B: ``[out, r, 1, 1]``. stride, padding, dilation: ints or pairs, as ``F.conv2d``.
        Other arguments as :func:`lora_linear`.

    Returns ``[Bt, out, H', W']``. Under ``torch.autocast`` the operands are cast to the autocast
    dtype first, as for ``F.conv2d``.
    """
    if groups != 1:
        raise ValueError(f"groups: only groups=1 is supported, got {groups!r}")
    x, weight, bias, lora_A, lora_B = autocast_operands(x, weight, bias, lora_A, lora_B)
    stride, padding, dilation = _check_conv(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation,
                                            dropout_p, strategy)
    return _lora_conv2d(x, weight, bias, lora_A, lora_B, float(scale), stride, padding, dilation, float(dropout_p),
                        strategy, seed)


def _check_conv(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation, dropout_p, strategy="auto"):
    """The checks of :func:`lora_conv2d`, also run by its library ops (public as
    torch.ops.hypir_kernels.*); returns the geometry as lists of two ints."""
    check_common(x, weight, bias, lora_A, lora_B, scale, dropout_p, strategy, dims_w=4)
    check_tensor("x", x, dims=4)
    stride, padding, dilation = _pair(stride, "stride", 1), _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x: channels (dim 1) {x.shape[1]} do not match weight's in channels {weight.shape[1]}")
    if tuple(lora_A.shape[1:]) != tuple(weight.shape[1:]):
        raise ValueError(f"lora_A: expected shape [r, {', '.join(map(str, weight.shape[1:]))}], got {tuple(lora_A.shape)}")
    if tuple(lora_B.shape[2:]) != (1, 1):
        raise ValueError(f"lora_B: expected a 1x1 kernel [out, r, 1, 1], got {tuple(lora_B.shape)}")
    if weight.shape[0] == 0 or weight.shape[1] == 0:  # F.conv2d rejects zero out channels and gets zero in channels wrong
        raise ValueError(f"weight: out and in channels (dims 0, 1) must be >= 1, got shape {tuple(weight.shape)}")
    if x.shape[2] == 0 or x.shape[3] == 0:  # F.conv2d runs no convolution over an empty plane
        raise ValueError(f"x: height and width must be >= 1, got shape {tuple(x.shape)}")
    for i, axis in ((0, "height"), (1, "width")):
        span = dilation[i] * (weight.shape[2 + i] - 1) + 1
        if x.shape[2 + i] + 2 * padding[i] < span:
            raise ValueError(f"x: padded {axis} {x.shape[2 + i]} + 2*{padding[i]} is smaller than the dilated kernel's {span}")
    return stride, padding, dilation


def _lora_conv2d(x, weight, bias, lora_A, lora_B, scale: float, stride: list[int], padding: list[int],
                 dilation: list[int], dropout_p: float, strategy: str, seed):
    """:func:`lora_conv2d` after its checks (geometry as lists of two ints; also what patched layers call)."""
    x, weight, bias, lora_A, lora_B = autocast_operands(x, weight, bias, lora_A, lora_B)
    if strategy == "auto":
        out_h = (x.shape[2] + 2 * padding[0] - dilation[0] * (weight.shape[2] - 1) - 1) // stride[0] + 1
        out_w = (x.shape[3] + 2 * padding[1] - dilation[1] * (weight.shape[3] - 1) - 1) // stride[1] + 1
        strategy = choose_strategy(x.shape[0] * max(out_h, 0) * max(out_w, 0), weight.shape[1], weight.shape[0],
                                   lora_A.shape[0], weight.shape[2] * weight.shape[3], x.element_size(),
                                   x.device.type, needs_grad(x, lora_A, lora_B), dropout_p)
    args = (x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation)
    if torch.compiler.is_compiling():  # the library ops: traceable, with fake implementations
        if strategy == "weight":
            return torch.ops.hypir_kernels.lora_conv2d_weight(*args)
        return torch.ops.hypir_kernels.lora_conv2d_activation(*args, dropout_p, dropout_seed(dropout_p, seed))[0]
    if strategy == "weight":  # eager: the same code through autograd.Function (see _ActivationLinear)
        return _WeightConv2d.apply(*args)
    if dropout_p == 0 and (x.device.type != "cpu" or x.numel() * lora_A.numel() < _COMPOSED_CONV_MAX_WORK):
        # No mask to regenerate: plain differentiable ops, whose C++ autograd nodes cost less host time
        # than a Python Function (tiny CPU layers: 0.93x peft's host time instead of 1.4x). Not for
        # large CPU layers: there F.conv2d's slow path saves its unfolded input for backward (the
        # Function recomputes instead; 0.69x of peft's saved bytes on the SD2 suite vs 0.82x).
        dropout_seed(0.0, seed)  # still validated
        y = F.conv2d(x, weight, bias, stride, padding, dilation)
        h = F.conv2d(x, lora_A, None, stride, padding, dilation)
        return y.add_(F.conv2d(h, lora_B), alpha=scale)
    return _ActivationConv2d.apply(*args, dropout_p, dropout_seed(dropout_p, seed))


def _conv_input_grad(dy, x, w, stride, padding, dilation):
    return torch.ops.aten.convolution_backward(dy, x, w, None, stride, padding, dilation, False, [0, 0], 1, [True, False, False])[0]


@torch.library.custom_op("hypir_kernels::lora_conv2d_activation", mutates_args=())
def _lora_conv2d_activation(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_A: torch.Tensor,
                            lora_B: torch.Tensor, scale: float, stride: list[int], padding: list[int], dilation: list[int],
                            dropout_p: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Activation strategy: (y, h = conv2d(dropout(x), A) saved for backward)."""
    _check_conv(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation, dropout_p)
    return _conv_act_forward(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation, dropout_p, seed)


def _conv_act_forward(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation, dropout_p, seed):
    h = F.conv2d(ref.dropped(x, dropout_p, seed), lora_A, None, stride, padding, dilation)
    y = F.conv2d(x, weight, bias, stride, padding, dilation)
    n, r, hw = h.shape[0], h.shape[1], h.shape[2] * h.shape[3]
    lora = torch.matmul(lora_B.reshape(1, lora_B.shape[0], r), h.reshape(n, r, hw))  # [Bt, out, H'W']
    y.add_(lora.reshape(y.shape), alpha=scale)
    return y, h


@_lora_conv2d_activation.register_fake
def _(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation, dropout_p, seed):
    y = F.conv2d(x, weight, None, stride, padding, dilation)
    return y, x.new_empty((y.shape[0], lora_A.shape[0], y.shape[2], y.shape[3]))


def _conv_act_setup(ctx, inputs, output):
    x, weight, _bias, A, B, scale, stride, padding, dilation, p, seed = inputs
    ctx.save_for_backward(x, output[1], weight, A, B)
    ctx.args = (scale, stride, padding, dilation, p, seed)
    ctx.mark_non_differentiable(output[1])


def _conv_act_backward(ctx, dy, _dh):
    x, h, weight, A, B = ctx.saved_tensors
    scale, stride, padding, dilation, p, seed = ctx.args
    n, r, hw = h.shape[0], h.shape[1], h.shape[2] * h.shape[3]
    dy3 = dy.reshape(n, dy.shape[1], hw)
    g = ref.scaled(torch.matmul(B.reshape(1, B.shape[0], r).transpose(1, 2), dy3), scale)  # [Bt, r, H'W']
    dB = ref.scaled(torch.matmul(dy3, h.reshape(n, r, hw).transpose(1, 2)).sum(0), scale).reshape(B.shape)
    xd = ref.dropped(x, p, seed)
    gi = g.reshape(h.shape)
    dxa, dA, _ = torch.ops.aten.convolution_backward(gi, xd, A, None, stride, padding, dilation, False, [0, 0], 1, [True, True, False])
    if p > 0:
        dxa = ref.dropped_grad(dxa, x, p, seed)
    dx = _conv_input_grad(dy, x, weight, stride, padding, dilation).add_(dxa)
    return dx, None, None, dA, dB, None, None, None, None, None, None


_lora_conv2d_activation.register_autograd(_conv_act_backward, setup_context=_conv_act_setup)


@torch.library.custom_op("hypir_kernels::lora_conv2d_weight", mutates_args=())
def _lora_conv2d_weight(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_A: torch.Tensor,
                        lora_B: torch.Tensor, scale: float, stride: list[int], padding: list[int], dilation: list[int]) -> torch.Tensor:
    """Weight strategy: ``conv2d(x, W_eff, b)``."""
    _check_conv(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation, 0.0)
    return F.conv2d(x, effective_weight(weight, lora_A, lora_B, scale), bias, stride, padding, dilation)


@_lora_conv2d_weight.register_fake
def _(x, weight, bias, lora_A, lora_B, scale, stride, padding, dilation):
    return F.conv2d(x, weight, None, stride, padding, dilation)


def _conv_weight_setup(ctx, inputs, output):
    x, weight, _bias, A, B, scale, stride, padding, dilation = inputs
    ctx.save_for_backward(x, weight, A, B)
    ctx.args = (scale, stride, padding, dilation)


def _conv_weight_backward(ctx, dy):
    x, weight, A, B = ctx.saved_tensors
    scale, stride, padding, dilation = ctx.args
    w_eff = effective_weight(weight, A, B, scale)
    dx, dw, _ = torch.ops.aten.convolution_backward(dy, x, w_eff, None, stride, padding, dilation, False, [0, 0], 1, [True, True, False])
    dw2 = dw.reshape(dw.shape[0], math.prod(dw.shape[1:]))
    dA = (B.reshape(B.shape[0], B.shape[1]).t() @ dw2).mul_(scale).reshape(A.shape)
    dB = (dw2 @ A.reshape(A.shape[0], math.prod(A.shape[1:])).t()).mul_(scale).reshape(B.shape)
    return dx, None, None, dA, dB, None, None, None, None


_lora_conv2d_weight.register_autograd(_conv_weight_backward, setup_context=_conv_weight_setup)


_COMPOSED_CONV_MAX_WORK = 1 << 24  # x elements x lora_A elements: CPU layers below this are host-bound


class _ActivationConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, A, B, scale, stride, padding, dilation, p, seed):
        y, h = _conv_act_forward(x, weight, bias, A, B, scale, stride, padding, dilation, p, seed)
        ctx.save_for_backward(x, h, weight, A, B)
        ctx.args = (scale, stride, padding, dilation, p, seed)
        return y

    @staticmethod
    def backward(ctx, dy):
        return _conv_act_backward(ctx, dy, None)


class _WeightConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, A, B, scale, stride, padding, dilation):
        ctx.save_for_backward(x, weight, A, B)
        ctx.args = (scale, stride, padding, dilation)
        return F.conv2d(x, effective_weight(weight, A, B, scale), bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx, dy):
        return _conv_weight_backward(ctx, dy)
