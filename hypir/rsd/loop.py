"""What RSD's two phases (:class:`hypir.rsd.pretrain.Pretrainer`, :class:`hypir.rsd.distill.Distiller`)
add to the model layer's one training loop (:class:`hypir.train.loop.TrainLoop`): a step draws its
own batch (``train_step(step)``), the bar shows the ``shown`` log key, and the sample grid is 16
samples of the EMA model (complex MRI samples as magnitudes). A subclass provides ``train_step``,
``samples(n)``, ``save``, ``load`` and ``export``.
"""
from __future__ import annotations

import torch

from ..train.loop import TrainLoop
from .teacher import displayable


class RSDLoop(TrainLoop):
    shown = "loss"

    def run_step(self) -> dict[str, float]:
        return self.train_step(self.step)

    @property
    def images_per_step(self) -> int:
        return self.cfg.optim.batch_size * self.acc.num_processes

    def postfix(self, logs: dict) -> dict[str, str]:
        return {self.shown: f"{logs[self.shown]:.4f}"}

    def sample_grid(self) -> torch.Tensor:
        from ..data.io import image_grid

        return image_grid(displayable(self.samples(16)))
