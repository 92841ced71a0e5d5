"""HYPIR's one-step denoising, shared by inference (:class:`hypir.Restorer`) and training
(:mod:`hypir.train`) so both run exactly the same computation:

    out = unet(z, model_t, text, class_labels=texture)
    x0  = (z - sqrt(1 - abar[coeff_t]) out) / sqrt(abar[coeff_t])      (epsilon prediction)
    x0  = sqrt(abar[coeff_t]) z - sqrt(1 - abar[coeff_t]) out          (v-prediction)
"""
from __future__ import annotations

import torch

PREDICTIONS = ("epsilon", "v_prediction")


class OneStep:
    """``z [B, 4, h, w]`` latents -> ``x0 [B, 4, h, w]`` in z's dtype (the formula in fp32).

    Args:
        scheduler: the SD2 DDPM scheduler (its ``alphas_cumprod`` and ``prediction_type``).
        model_t: the timestep the UNet is called at (released: 200).
        coeff_t: the timestep whose ``abar`` turns the prediction into ``x0`` (released: 200).
    """

    def __init__(self, scheduler, model_t: int = 200, coeff_t: int = 200):
        n_steps = scheduler.config.num_train_timesteps
        for name, t in (("model_t", model_t), ("coeff_t", coeff_t)):
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < n_steps:
                raise ValueError(f"{name}: expected an int in [0, {n_steps}), got {t!r}")
        prediction = scheduler.config.prediction_type
        if prediction not in PREDICTIONS:
            raise ValueError(f"scheduler: prediction_type {prediction!r} is not supported ({', '.join(PREDICTIONS)})")
        self.model_t, self.coeff_t, self.prediction = model_t, coeff_t, prediction
        abar = scheduler.alphas_cumprod[coeff_t].double()
        self.sqrt_abar, self.sqrt_1m_abar = float(abar.sqrt()), float((1 - abar).sqrt())

    def __call__(self, unet: torch.nn.Module, z: torch.Tensor, text: torch.Tensor,
                 texture: torch.Tensor | None = None, added: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``text`` ``[1 or B, 77, D]``; ``texture`` ``[1 or B]`` richness or None; ``added``: SDXL's
        added conditions (``text_embeds`` ``[1 or B, P]``, ``time_ids`` ``[1 or B, 6]``) or None."""
        n = z.shape[0]
        t = torch.full((n,), self.model_t, device=z.device, dtype=torch.long)
        labels = texture.expand(n) if texture is not None else None
        kwargs = {} if added is None else {"added_cond_kwargs": {k: v.expand(n, -1) for k, v in added.items()}}
        out = unet(z, t, encoder_hidden_states=text.expand(n, -1, -1), class_labels=labels, **kwargs).sample
        a, b = self.sqrt_abar, self.sqrt_1m_abar
        zf, outf = z.float(), out.float()  # in fp32 whatever the run dtype (a no-op in fp32 runs)
        x0 = (zf - b * outf) / a if self.prediction == "epsilon" else a * zf - b * outf
        return x0.to(z.dtype)
