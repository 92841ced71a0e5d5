"""Fused LoRA for linear and conv layers, two execution strategies, and a peft drop-in.

``y = base(x) + s * B(A(dropout(x)))`` with the base weight frozen (no gradient); ``x``, ``A``
and ``B`` receive gradients. Shapes as in peft: linear ``A [r, in]``, ``B [out, r]``; conv
``A [r, in, kh, kw]`` (same kernel, stride, padding, dilation as the base; groups 1) and
``B [out, r, 1, 1]``.

Strategies
----------
``activation``  Compute the rank-r activation ``h = dropout(x) A^T`` and add ``s h B^T`` to the
                base output. Saves ``x`` and ``h`` for backward. Dropout is regenerated from a
                seed in backward, never stored. Linear layers on CUDA run the Triton kernels of
                :mod:`hypir_kernels.triton.lora` (the rank-r product is accumulated into the base
                GEMM's accumulator, one store); elsewhere torch ops (``addmm`` into one buffer).
``weight``      Form ``W_eff = W + s B A`` (fp32 accumulation), run the base op with it, and get
                ``dA = s B^T dW_eff``, ``dB = s dW_eff A^T`` from the weight gradient. Saves only
                ``x`` (``W_eff`` is recomputed in backward). Cannot express dropout.
``auto``        :func:`choose_strategy`: the estimated time (multiply-adds / peak + bytes /
                bandwidth, per device) of both; dropout forces ``activation``.

Extra work over the base layer (``N`` output positions, ``K`` kernel taps, 1 for linear),
training: activation ``3 N r (in K + out)``; weight ``4 out in K r + N out in K``. Inference:
``N r (in K + out)`` vs ``out in K r``. On the CPU the ``K > 1`` convolution terms are divided by
``Device.conv_speedup`` (oneDNN convolutions beat their GEMM count). So the weight strategy wins when ``N`` is large against
``r`` (high-resolution layers at HYPIR's rank 256) and loses on small token counts.

Layout: :mod:`.cost` (strategy choice), :mod:`.common` (checks, dropout, effective weight),
:mod:`.linear` and :mod:`.conv` (op + library ops + autograd), :mod:`.patching` (peft, merge).
"""
from .cost import DEVICES, STRATEGIES, Device, choose_strategy, strategy_costs
from .conv import lora_conv2d
from .linear import lora_linear
from .patching import merge, patch_peft, unmerge, unpatch_peft

__all__ = ["DEVICES", "STRATEGIES", "Device", "choose_strategy", "strategy_costs", "lora_conv2d", "lora_linear",
           "merge", "patch_peft", "unmerge", "unpatch_peft"]
