"""Image I/O and the on-device Real-ESRGAN degradation (``degrade``: batched, seeded; issue 12 --
its benchmark against a BasicSR-style reference and the training datasets are not here yet)."""
from .io import IMAGE_SUFFIXES, ImageMeta, list_inputs, read_image, write_image
from .kernels import KernelSpec, random_kernels
from .realesrgan import DegradationConfig, degrade, usm_sharp

__all__ = ["DegradationConfig", "IMAGE_SUFFIXES", "ImageMeta", "KernelSpec", "degrade", "list_inputs", "random_kernels",
           "read_image", "usm_sharp", "write_image"]
