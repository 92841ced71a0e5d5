"""Image I/O and the first piece of the on-device Real-ESRGAN degradation (random blur kernels;
the resize / noise / JPEG stages and the datasets arrive with training, issue 12)."""
from .io import IMAGE_SUFFIXES, ImageMeta, list_inputs, read_image, write_image
from .kernels import KernelSpec, random_kernels

__all__ = ["IMAGE_SUFFIXES", "ImageMeta", "KernelSpec", "list_inputs", "random_kernels", "read_image", "write_image"]
