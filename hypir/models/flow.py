"""HYPIR's one step on flow-matching backbones (SD3/SD3.5, Flux.1): issue 24, first part.

Flow matching as diffusers' ``FlowMatchEulerDiscreteScheduler`` trains these models: at noise level
``s`` in (0, 1] the latent is ``z_s = (1 - s) z + s eps`` and the network predicts the velocity
``v = dz_s/ds = eps - z``. Hence, exactly,

    z = z_s - s v

which is also one Euler step of the scheduler from ``s`` to 0 (``z_s + (0 - s) v``; tested against
``FlowMatchEulerDiscreteScheduler.step``). HYPIR's one step on these backbones feeds the encoded
low-quality latent ``y`` in place of the clean one: ``z_s = (1 - s) y + s eps`` with ``eps = 0``
(deterministic; the restorer's ``noise`` control scales a seeded ``eps``), calls the network at
``s``, and returns ``z_s - s v``.

The default ``s = 0.2``: the paper gives no value for SD3/Flux, and 0.2 is the same fraction of the
schedule as the released SD2 model's ``t = 200`` of 1000 training steps. (Flow-matching models
trained with a resolution-dependent ``shift`` sample other sigmas at inference; a fine-tuned
one-step model is trained at this ``s`` itself, so the shift does not enter.)

Timestep conventions differ: ``SD3Transformer2DModel`` takes ``1000 s``, ``FluxTransformer2DModel``
takes ``s`` (it multiplies by 1000 inside); :meth:`FlowOneStep.timestep` returns the right one.
"""
from __future__ import annotations

import math

import torch

DEFAULT_SIGMA = 0.2
TIMESTEP_SCALE = {"sd3": 1000.0, "flux": 1.0}


class FlowOneStep:
    """``y`` latents -> restored latents by one velocity evaluation at ``sigma``.

    Args:
        sigma: the noise level the network is called at, in (0, 1].
        backbone: ``"sd3"`` or ``"flux"`` (its timestep convention).
    """

    def __init__(self, sigma: float = DEFAULT_SIGMA, backbone: str = "sd3"):
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or not 0 < sigma <= 1:
            raise ValueError(f"sigma: expected a number in (0, 1], got {sigma!r}")
        if backbone not in TIMESTEP_SCALE:
            raise ValueError(f"backbone: expected one of {tuple(TIMESTEP_SCALE)}, got {backbone!r}")
        self.sigma, self.backbone = float(sigma), backbone

    def timestep(self, n: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """``[n]`` timesteps in the backbone's convention."""
        return torch.full((n,), self.sigma * TIMESTEP_SCALE[self.backbone], device=device, dtype=dtype)

    def model_input(self, y: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``z_s = (1 - s) y + s noise`` (``noise`` None: 0), computed in fp32, in y's dtype."""
        z = (1.0 - self.sigma) * y.float()
        if noise is not None:
            if noise.shape != y.shape:
                raise ValueError(f"noise: expected the latent's shape {tuple(y.shape)}, got {tuple(noise.shape)}")
            z = z + self.sigma * noise.float()
        return z.to(y.dtype)

    def x0(self, z_s: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
        """``z_s - s v`` in fp32, returned in z_s's dtype."""
        if velocity.shape != z_s.shape:
            raise ValueError(f"velocity: expected the latent's shape {tuple(z_s.shape)}, got {tuple(velocity.shape)}")
        return (z_s.float() - self.sigma * velocity.float()).to(z_s.dtype)
