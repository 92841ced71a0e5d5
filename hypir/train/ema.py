"""Exponential moving average of named parameters (HYPIR: 0.999 of the LoRA weights)."""
from __future__ import annotations

import contextlib

import torch


class EMA:
    """``shadow = decay * shadow + (1 - decay) * param`` after each :meth:`update`, in float32.

    Args:
        params: name -> parameter (the trainable ones).
        decay: in [0, 1).
    """

    def __init__(self, params: dict[str, torch.nn.Parameter], decay: float = 0.999):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise ValueError(f"decay: expected a number in [0, 1), got {decay!r}")
        self.params = params
        self.decay = float(decay)
        self.shadow = {k: p.detach().float().clone() for k, p in params.items()}

    @torch.no_grad()
    def update(self) -> None:
        names = list(self.params)
        torch._foreach_lerp_([self.shadow[k] for k in names], [self.params[k].detach().float() for k in names],
                             1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            missing, extra = sorted(set(self.shadow) - set(state)), sorted(set(state) - set(self.shadow))
            raise ValueError(f"ema: checkpoint keys differ (missing {missing[:3]}, unexpected {extra[:3]})")
        for k, v in state.items():
            self.shadow[k].copy_(v)

    @contextlib.contextmanager
    def applied(self):
        """Temporarily put the averaged weights into the parameters."""
        saved = {k: p.detach().clone() for k, p in self.params.items()}
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(self.shadow[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, p in self.params.items():
                    p.copy_(saved[k])
