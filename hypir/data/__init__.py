"""Image I/O (the on-device Real-ESRGAN degradation and datasets arrive with training)."""
from .io import IMAGE_SUFFIXES, ImageMeta, list_inputs, read_image, write_image

__all__ = ["IMAGE_SUFFIXES", "ImageMeta", "list_inputs", "read_image", "write_image"]
