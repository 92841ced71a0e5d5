"""The head dims attention accepts, in one module that both the op (:mod:`hypir_kernels.attention_op`)
and its Triton kernels (:mod:`hypir_kernels.triton.attention`) import, so neither imports the other
for it.

The Triton kernels are compiled for these (SD1.5 40, SD2 64, Flux/SD3 128, ...); the same set is
accepted on every backend so code that runs on the CPU also runs on the GPU.
"""
HEAD_DIMS = (32, 40, 64, 80, 96, 128, 160, 256)

__all__ = ["HEAD_DIMS"]
