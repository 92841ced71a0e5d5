"""hypir: the model layer (HYPIR and RSD pipelines, trainers, CLIs) on top of the public
``hypir_kernels`` API; it calls ``hypir_kernels``' public API, never its internals.

    from hypir import Restorer
    restorer = Restorer.from_pretrained("path/to/sd21-base", weights="HYPIR_sd2.pth")
    restored = restorer(pil_image, upscale=4)

Importing ``hypir`` is cheap and never needs CUDA, Triton, diffusers or transformers; the
pipeline objects import them on first use.
"""

__version__ = "0.1.0"

_LAZY = {
    "Restorer": ("hypir.pipelines.restorer", "Restorer"),
    "texture_richness": ("hypir.models.texture", "texture_richness"),
    "LoraSpec": ("hypir.models.lora", "LoraSpec"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'hypir' has no attribute {name!r}")


__all__ = ["LoraSpec", "Restorer", "texture_richness"]
