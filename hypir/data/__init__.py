"""Image I/O, training images (``ImageDataset``: folders or CSV listings, reproducible random
crops) and the on-device Real-ESRGAN degradation (``degrade``: batched, seeded); issue 12."""
from .dataset import ImageDataset, read_listing
from .io import IMAGE_SUFFIXES, ImageMeta, list_inputs, read_image, write_image
from .kernels import KernelSpec, random_kernels
from .pool import PairPool
from .realesrgan import DegradationConfig, degrade, usm_sharp
from .synthetic import GeneratedImages, generated_image

__all__ = ["DegradationConfig", "GeneratedImages", "generated_image", "IMAGE_SUFFIXES", "ImageDataset", "ImageMeta", "read_listing", "KernelSpec", "PairPool", "degrade", "list_inputs", "random_kernels",
           "read_image", "usm_sharp", "write_image"]
