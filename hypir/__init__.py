"""hypir: the model layer (HYPIR and RSD pipelines, trainers, CLIs) on top of the public
``hypir_kernels`` API. The pipelines arrive with their own issues; this package only reserves
the name and the layering rule: it calls ``hypir_kernels``' public API, never its internals."""

__version__ = "0.1.0"
