"""hypir-kernels: fused kernels for one-step diffusion-prior image restoration.

Every public op is also a ``torch.library`` op, ``torch.ops.hypir_kernels.<name>``. The backend
is chosen by device and can be forced; see :mod:`hypir_kernels.backend`.
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import _extension  # noqa: F401  (loads the C++ op registrations first)
from ._extension import cpu_cache_bytes, empty_cpu_cache  # noqa: E402
from .attention_op import ATTENTION_BACKENDS, HEAD_DIMS, attention, attention_backend  # noqa: E402
from .backend import BACKENDS, use_backend  # noqa: E402
from .blend import WEIGHTS, blend_tiles, plan_tiles, tiled_apply  # noqa: E402
from .blur import PADDINGS, gaussian_blur, gaussian_blur_adjoint  # noqa: E402
from .filter2d_op import filter2d, filter2d_adjoint  # noqa: E402
from .group_norm import GroupNormSiLU, group_norm_silu  # noqa: E402
from .lora import lora_conv2d, lora_linear  # noqa: E402
from .masks import apply_mask, bernoulli_mask, box_mask  # noqa: E402
from .mri import mri_adjoint, mri_column_mask, mri_forward, mri_further_mask, mri_normal  # noqa: E402
from .noise import add_noise  # noqa: E402
from .resample import downsample, downsample_adjoint  # noqa: E402


from . import _info as _info_module  # noqa: E402  (not .info: importing that submodule rebinds hk.info)


def info() -> dict:
    """Versions, what the extension contains, and the backend each op takes per device."""
    return _info_module.collect()


__all__ = [
    "BACKENDS",
    "HEAD_DIMS",
    "PADDINGS",
    "WEIGHTS",
    "__version__",
    "add_noise",
    "apply_mask",
    "attention",
    "attention_backend",
    "ATTENTION_BACKENDS",
    "bernoulli_mask",
    "box_mask",
    "downsample",
    "downsample_adjoint",
    "blend_tiles",
    "cpu_cache_bytes",
    "empty_cpu_cache",
    "filter2d",
    "filter2d_adjoint",
    "gaussian_blur",
    "gaussian_blur_adjoint",
    "group_norm_silu",
    "GroupNormSiLU",
    "info",
    "lora_conv2d",
    "lora_linear",
    "mri_adjoint",
    "mri_column_mask",
    "mri_forward",
    "mri_further_mask",
    "mri_normal",
    "plan_tiles",
    "tiled_apply",
    "use_backend",
]
