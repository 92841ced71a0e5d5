"""RSD tasks as objects, in the manner of deepinv's ``physics`` classes: each task owns its
``hypir_kernels`` operator, how it observes images (the fixed phase-I dataset; fresh draws for
distillation and for the proximal FID), its phase-I objective, the fixed conditioning a sampler
gives its teacher, and its channel counts. :func:`make_task` picks the class from a
:class:`~hypir.rsd.config.TaskConfig`; a new task is one class here plus its name in
``TaskConfig.kind``.

* :class:`Clean` -- the reference teacher on clean images (no operator).
* :class:`Blur` -- ``y = A x + sigma_n e``, ``A`` a Gaussian blur (reflect padding).
* :class:`SR` -- ``y = f^2 D^T D x + sigma_n e``: ``f``-fold area down-sampling back-projected to full size.
* :class:`Inpainting` -- ``y = M (x + sigma_n e)``, a per-image Bernoulli(``keep``) pixel mask shared
  by the channels; Ambient Diffusion's further mask ``M~`` drops a fraction ``delta`` of it.
* :class:`MRI` -- multi-coil k-space ``y = M F(S x)`` of complex images, synthetic coil maps, column
  masks (ACS block + random lines, acceleration R); the further mask removes ``remove`` lines.

Shapes: images ``[B, C, S, S]`` in [-1, 1]; MRI networks see 2-channel images ``[B, 2, S, S]``
(real, imaginary) and the k-space is complex ``[B, Nc, S, S]``. Every draw is seeded.
"""
from __future__ import annotations

import torch

from hypir_kernels import bernoulli_mask, mri_adjoint, mri_column_mask, mri_forward, mri_further_mask, mri_normal
from hypir_kernels.checks import check_seed
from hypir_kernels.operators import Blur as BlurOperator
from hypir_kernels.operators import Downsample, MultiCoilMRI, Noise

from ..train.loop import derive_seed
from .config import TASK_KINDS, TaskConfig
from .data import Observations, coil_maps, complex_images
from .objectives import (ambient_inpainting_loss, ambient_tweedie_loss, fourier_ambient_loss, further_mask,
                         standard_loss)


def _randn(shape, generator, dtype, device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


def _check_images(x) -> None:
    if not (torch.is_tensor(x) and x.dim() == 4 and x.is_floating_point() and x.numel() > 0):
        raise ValueError(f"x: expected a non-empty float [N, C, H, W] tensor, got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")


class Task:
    """A corruption task: what phase I trains on, what phase II distils through, what the proximal
    FID compares. Subclasses set :attr:`kind` and override what differs."""

    kind = ""
    cond_channels = 0  # mask channels the denoiser gets beside the image
    masked_pixels = False  # the denoiser is told which pixels it sees (masked EDM preconditioning)

    def __init__(self, cfg: TaskConfig):
        if cfg.kind != self.kind:
            raise ValueError(f"task: a {type(self).__name__} task needs kind {self.kind!r}, got {cfg.kind!r}")
        self.cfg = cfg
        self.sigma_n = cfg.sigma_n

    def image_channels(self, data_channels: int) -> int:
        """The network's image channels for data with ``data_channels``."""
        return data_channels

    # -- phase I ---------------------------------------------------------------------------------
    def dataset(self, x: torch.Tensor, seed: int | None = None) -> Observations:
        """The fixed corrupted set of clean ``x [N, C, S, S]`` (draws from ``seed``, default the
        config's; per-image Philox streams, so image i's draws do not depend on N)."""
        raise NotImplementedError

    def loss(self, model, y: torch.Tensor, mask: torch.Tensor | None, maps: torch.Tensor | None,
             generator: torch.Generator, seed: int) -> torch.Tensor:
        """The phase-I objective on observations ``y`` (per sample, ``[B]``): Ambient Tweedie when
        ``sigma_n > 0``, else EDM's standard loss. ``seed`` draws any further masks."""
        if self.sigma_n > 0:
            return ambient_tweedie_loss(model, y, self.sigma_n, generator)
        return standard_loss(model, y, generator)

    # -- sampling a teacher -----------------------------------------------------------------------
    def fixed_conditioning(self, n: int, size: int, seed: int, device="cpu") -> dict[str, torch.Tensor]:
        """The fixed masks a sampler calls a masked teacher with, drawn once from the training
        distribution (none for unmasked tasks)."""
        return {}

    def denoise_fixed(self, model, cond: dict[str, torch.Tensor], x: torch.Tensor, sigma) -> torch.Tensor:
        """``model``'s estimate of the clean ``x [B, C, S, S]`` at noise ``sigma``, seen through the
        fixed masks of :meth:`fixed_conditioning` (a batch of 1 is broadcast)."""
        return model(x, sigma)

    # -- phase II: how the distiller sees generator samples (:mod:`hypir.rsd.sid`) ----------------
    def observe(self, x: torch.Tensor, seed: int):
        """``(w, ctx)``: ``w = A(x)`` differentiably with fresh draws from ``seed``; ``ctx`` what
        :meth:`predict` needs (masks) or None."""
        raise NotImplementedError

    def noisy(self, w: torch.Tensor, sigma: torch.Tensor, generator) -> torch.Tensor:
        """``w + sigma e`` per sample."""
        return w + sigma.view(-1, 1, 1, 1).to(w.dtype) * _randn(w.shape, generator, w.dtype, w.device)

    def predict(self, model, w_t: torch.Tensor, sigma: torch.Tensor, ctx, seed: int) -> torch.Tensor:
        """A network's denoised estimate of ``w`` from ``w_t``, compared where the task observes."""
        return model(w_t, sigma)

    def fake_loss(self, model, x: torch.Tensor, seed: int, generator) -> torch.Tensor:
        """The fake score's phase-I objective on corrupted generator samples ``A(x) (+ sigma_n e)``."""
        raise NotImplementedError

    # -- evaluation (:mod:`hypir.rsd.evaluate`) ----------------------------------------------------
    def proximal_view(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """``A(x) + sigma_n e`` of samples with fresh draws from ``seed``: what the proximal FID
        compares with :meth:`data_view` of the observations."""
        return self.dataset(x, seed).y

    @classmethod
    def data_view(cls, data: Observations) -> torch.Tensor:
        """What FID features see of the observations: the corrupted images."""
        return data.y


class _ImageTask(Task):
    """Tasks in image space, ``x [B, C, S, S]``; the operator :meth:`A` is linear and fixed."""

    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _measure(self, x: torch.Tensor, seed: int, offsets: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The dataset's noiseless ``A(x)`` and its mask (None without one)."""
        return self.A(x), None

    def dataset(self, x, seed=None):
        _check_images(x)
        seed = check_seed("seed", self.cfg.seed if seed is None else seed)
        offsets = list(range(x.shape[0]))  # per-image Philox streams
        with torch.no_grad():
            y, mask = self._measure(x, seed, offsets)
            if self.sigma_n > 0:  # the noise, then the mask
                y = Noise(float(self.sigma_n), seed=seed + 1, offsets=offsets).forward(y)
            if mask is not None:
                y = y * mask
        return Observations(y.contiguous(), mask, self.kind, float(self.sigma_n))

    def observe(self, x, seed):
        return self.A(x), None

    def fake_loss(self, model, x, seed, generator):
        w, ctx = self.observe(x, seed)
        mask = None if ctx is None else ctx[0]
        if self.sigma_n > 0:  # the data's noise, then the mask (as the dataset was made)
            w = w + self.sigma_n * _randn(w.shape, generator, w.dtype, w.device)
            if mask is not None:
                w = w * mask
        return self.loss(model, w, mask, None, generator, derive_seed(seed, 2))


class Clean(_ImageTask):
    kind = "clean"

    def A(self, x):
        return x

    def dataset(self, x, seed=None):
        return Observations(x, None, "clean", 0.0)

    def proximal_view(self, x, seed):
        return x


class Blur(_ImageTask):
    kind = "blur"

    def __init__(self, cfg: TaskConfig):
        super().__init__(cfg)
        self.operator = BlurOperator(cfg.blur_sigma, kernel_size=cfg.blur_size)

    def A(self, x):
        return self.operator.A(x)


class SR(_ImageTask):
    kind = "sr"

    def __init__(self, cfg: TaskConfig):
        super().__init__(cfg)
        self.factor = cfg.sr_factor
        self.operator = Downsample(cfg.sr_factor)

    def A(self, x):
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"sr_factor: image size {tuple(x.shape[-2:])} is not a multiple of {self.factor}")
        return self.operator.A_adjoint(self.operator.A(x)) * self.factor**2


class Inpainting(_ImageTask):
    kind = "inpainting"
    cond_channels = 1
    masked_pixels = True

    def _measure(self, x, seed, offsets):
        return x, bernoulli_mask((x.shape[0], 1, *x.shape[-2:]), self.cfg.keep, seed, offsets=offsets)

    def loss(self, model, y, mask, maps, generator, seed):
        """Ambient Diffusion (with Ambient Tweedie when ``sigma_n > 0``)."""
        return ambient_inpainting_loss(model, y, mask, self.cfg.delta, seed, generator, sigma_n=self.sigma_n)

    def fixed_conditioning(self, n, size, seed, device="cpu"):
        """``{"seen": [n, 1, S, S]}`` at keep x (1 - delta)."""
        return {"seen": bernoulli_mask((n, 1, size, size), self.cfg.keep * (1 - self.cfg.delta), seed, device=device)}

    def denoise_fixed(self, model, cond, x, sigma):
        """The teacher gets ``[M~ x, M~]``."""
        seen = cond["seen"].expand(x.shape[0], -1, -1, -1).to(x.dtype)
        return model(seen * x, sigma, cond=seen, seen=seen)

    def observe(self, x, seed):
        """A fresh mask ``M`` per draw and its further mask ``M~``: ``(M x, (M, M~))``."""
        mask = bernoulli_mask((x.shape[0], 1, *x.shape[-2:]), self.cfg.keep, seed, dtype=x.dtype, device=x.device)
        return mask * x, (mask, further_mask(mask, self.cfg.delta, derive_seed(seed, 1)))

    def predict(self, model, w_t, sigma, ctx, seed):
        """The networks see ``[M~ w_t, M~]`` and are compared on ``M``."""
        mask, seen = ctx
        return mask * model(seen * w_t, sigma, cond=seen, seen=seen)


class MRI(Task):
    kind = "mri"
    cond_channels = 1

    def image_channels(self, data_channels):
        return 2  # real, imaginary

    def maps(self, size: int, device="cpu") -> torch.Tensor:
        """The synthetic coil maps ``[Nc, S, S]`` (complex64)."""
        return coil_maps(self.cfg.coils, size).to(device)

    def _to_complex(self, x: torch.Tensor) -> torch.Tensor:
        return torch.view_as_complex(x.float().permute(0, 2, 3, 1).contiguous())

    def dataset(self, x, seed=None):
        """K-space of the grey images ``x [N, 1, S, S]`` made complex (magnitude ``(x + 1) / 2``, a
        smooth random phase) under per-image column masks; only acquired columns are non-zero."""
        _check_images(x)
        seed = check_seed("seed", self.cfg.seed if seed is None else seed)
        if x.shape[1] != 1 or x.shape[-1] != x.shape[-2]:
            raise ValueError(f"x: the mri task needs square grey images [N, 1, S, S], got {tuple(x.shape)}")
        n, size, c = x.shape[0], x.shape[-1], self.cfg
        maps = coil_maps(c.coils, size)
        mask = mri_column_mask(n, size, c.acceleration, seed, center_fraction=c.center_fraction, offsets=list(range(n)))
        with torch.no_grad():
            y = MultiCoilMRI(maps.expand(n, -1, -1, -1), mask).A(complex_images(x, seed + 1))
        return Observations(y.contiguous(), mask, "mri", 0.0, maps)

    def loss(self, model, y, mask, maps, generator, seed):
        """Fourier-space ambient: k-space ``y`` with column ``mask`` and coil ``maps [Nc, S, S]``."""
        further = mri_further_mask(mask, self.cfg.remove, seed, center_fraction=self.cfg.center_fraction)
        return fourier_ambient_loss(model, y, maps.expand(y.shape[0], -1, -1, -1), mask, further, generator)

    def fixed_conditioning(self, n, size, seed, device="cpu"):
        """``{"maps": [Nc, S, S], "further": [n, S]}``: a column mask with one more removal."""
        c = self.cfg
        mask = mri_column_mask(n, size, c.acceleration, seed, center_fraction=c.center_fraction)
        further = mri_further_mask(mask, c.remove, seed + 1, center_fraction=c.center_fraction)
        return {"maps": self.maps(size, device), "further": further.to(device)}

    def denoise_fixed(self, model, cond, x, sigma):
        """The teacher gets ``A~^H A~ x`` and ``M~`` (our choice; the paper does not spell its sampler out)."""
        n, size = x.shape[0], x.shape[-1]
        maps = cond["maps"].expand(n, -1, -1, -1)
        further = cond["further"].expand(n, -1).contiguous()
        seen = mri_normal(x.float().contiguous(), maps, further).to(x.dtype)  # real view [n, 2, S, S]
        return model(seen, sigma, cond=further.to(x.dtype).view(n, 1, 1, size).expand(n, 1, size, size))

    def _masks(self, n: int, size: int, seed: int, device):
        c = self.cfg
        mask = mri_column_mask(n, size, c.acceleration, seed, center_fraction=c.center_fraction).to(device)
        return mask, mri_further_mask(mask, c.remove, derive_seed(seed, 1), center_fraction=c.center_fraction)

    def observe(self, x, seed):
        """The k-space ``[B, Nc, S, S]`` of 2-channel images under fresh column masks: ``(y, (M, M~))``."""
        n, size = x.shape[0], x.shape[-1]
        mask, further = self._masks(n, size, seed, x.device)
        return mri_forward(self._to_complex(x), self.maps(size, x.device).expand(n, -1, -1, -1), mask), (mask, further)

    def noisy(self, w, sigma, generator):
        s = sigma.view(-1, 1, 1, 1).to(w.real.dtype)
        e = torch.complex(_randn(w.shape, generator, w.real.dtype, w.device), _randn(w.shape, generator, w.real.dtype, w.device))
        return w + s * e / 2**0.5

    def predict(self, model, w_t, sigma, ctx, seed):
        """The networks see ``A~^H (M~ w_t)`` and ``M~``, and are compared through ``A``."""
        mask, further = ctx
        n, size = w_t.shape[0], w_t.shape[-1]
        maps = self.maps(size, w_t.device).expand(n, -1, -1, -1)
        seen = torch.view_as_real(mri_adjoint(w_t, maps, further)).permute(0, 3, 1, 2)
        cond = further.to(seen.dtype).view(n, 1, 1, size).expand(n, 1, size, size)
        d = model(seen.contiguous(), sigma, cond=cond)
        return mri_forward(self._to_complex(d), maps, mask)

    def fake_loss(self, model, x, seed, generator):
        w, (mask, _) = self.observe(x, seed)
        return self.loss(model, w, mask, self.maps(x.shape[-1], x.device), generator, derive_seed(seed, 2))

    def proximal_view(self, x, seed):
        """The zero-filled reconstruction ``|A^H y| * 2 - 1`` of the samples' k-space under fresh
        column masks."""
        if x.shape[1] != 2:
            raise ValueError(f"x: expected 2-channel complex MRI samples [N, 2, S, S], got {tuple(x.shape)}")
        n, size = x.shape[0], x.shape[-1]
        maps = self.maps(size)
        mask = mri_column_mask(n, size, self.cfg.acceleration, seed, center_fraction=self.cfg.center_fraction,
                               offsets=list(range(n)))
        return zero_filled(mri_forward(self._to_complex(x), maps.expand(n, -1, -1, -1), mask), maps, mask)

    @classmethod
    def data_view(cls, data):
        """The zero-filled magnitudes ``|A^H y| * 2 - 1`` ``[N, 1, S, S]`` of the observations."""
        if data.maps is None or data.mask is None:
            raise ValueError("data: MRI observations need their coil maps and column masks")
        return zero_filled(data.y, data.maps, data.mask)


def zero_filled(y: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``|A^H y| * 2 - 1`` ``[N, 1, S, S]`` of multi-coil k-space ``y [N, Nc, S, S]`` (column ``mask [N, S]``)."""
    x = mri_adjoint(y, maps.expand(y.shape[0], -1, -1, -1), mask)
    return (x.abs()[:, None] * 2 - 1).clamp(-1, 1)


TASKS: dict[str, type[Task]] = {cls.kind: cls for cls in (Clean, Blur, SR, Inpainting, MRI)}
assert set(TASKS) == set(TASK_KINDS)


def make_task(cfg: TaskConfig | Task) -> Task:
    """The task object of ``cfg`` (a :class:`Task` is returned as it is)."""
    if isinstance(cfg, Task):
        return cfg
    if not isinstance(cfg, TaskConfig):
        raise ValueError(f"task: expected a TaskConfig, got {type(cfg).__name__}")
    return TASKS[cfg.kind](cfg)


def corrupt(x: torch.Tensor, task: str, sigma_n: float = 0.0, seed: int = 0, **options) -> Observations:
    """The fixed corrupted dataset of clean ``x [N, C, S, S]`` for task ``task`` (a ``TaskConfig``
    kind) with noise ``sigma_n`` and draws from ``seed``; ``options`` are the other ``TaskConfig``
    fields (``keep``, ``blur_sigma``, ``sr_factor``, ``acceleration``, ...)."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    if not (isinstance(sigma_n, (int, float)) and not isinstance(sigma_n, bool) and 0 <= sigma_n < float("inf")):
        raise ValueError(f"sigma_n: expected a finite number >= 0, got {sigma_n!r}")
    _check_images(x)
    check_seed("seed", seed)
    return make_task(TaskConfig(kind=task, sigma_n=float(sigma_n), seed=seed, **options)).dataset(x)
