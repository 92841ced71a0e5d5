"""Pure-torch references: the test oracle and the last-resort backend of every op in
:data:`hypir_kernels.backend.REGISTRY` (one module per op family: attention, blend, blur, filter2d,
group_norm, lora, masks, mri, noise, resample). Written for clarity, not speed."""
from . import blend, blur  # noqa: F401
