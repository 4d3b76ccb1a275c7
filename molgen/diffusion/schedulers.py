"""Reverse-chain schedulers for variance-preserving diffusion, in the style of diffusers: each is an
object with its own config (the noise schedule and the number of steps), ``timesteps`` from T down to
0, and ``step(z_t, eps_hat, t, s, noise)`` for one update. The denoising network is injected into
``sample`` as ``denoise(z_t, t) -> eps_hat`` with t a (B,) float tensor in [0, 1]; noise is drawn by
``noise(like) -> eps`` so that a caller can keep it in a subspace (zero centre of mass) and seed it.

- :class:`AncestralScheduler` samples p(z_s | z_t) (EDM's sampler). Skipping steps is exact: q(z_t | z_s)
  stays Gaussian for any s < t.
- :class:`DDIMScheduler` takes the deterministic DDIM update (Song et al. 2021): z_0 is a function of z_T.
"""
from __future__ import annotations

from typing import Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .schedule import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFn = Callable[[torch.Tensor], torch.Tensor]


def timestep_pairs(timesteps: int, steps: int | None = None, start: int | None = None) -> list[tuple[int, int]]:
    """(t, s) pairs from ``start`` (default T) down to 0, using ``steps`` evenly spaced steps (all of
    them when None)."""
    start = timesteps if start is None else int(start)
    if not 1 <= start <= timesteps:
        raise ValueError(f"the chain must start between step 1 and {timesteps}, got {start}")
    steps = start if steps is None else int(steps)
    if not 1 <= steps <= start:
        raise ValueError(f"steps must be between 1 and {start}, got {steps}")
    grid = np.unique(np.round(np.linspace(0, start, steps + 1)).astype(int))[::-1]
    return [(int(t), int(s)) for t, s in zip(grid[:-1], grid[1:])]


class Scheduler:
    """A reverse chain over ``steps`` of the schedule's T steps; subclasses define ``step``."""

    name: ClassVar[str] = ""
    stochastic: ClassVar[bool] = True  # whether step() uses its noise argument

    def __init__(self, schedule: NoiseSchedule, steps: int | None = None, start: int | None = None) -> None:
        self.schedule = schedule
        self.start = schedule.timesteps if start is None else int(start)
        self.timesteps = timestep_pairs(schedule.timesteps, steps, self.start)
        self.steps = len(self.timesteps)

    @property
    def config(self) -> dict[str, object]:
        """What makes this scheduler: its name, its steps and the step its chain starts from."""
        return {"scheduler": self.name, "steps": self.steps, "start": self.start}

    def _gammas(self, t: int, s: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.schedule.timesteps
        return (self.schedule.gamma(torch.tensor(t / T, device=like.device)),
                self.schedule.gamma(torch.tensor(s / T, device=like.device)))

    def step(self, z_t: torch.Tensor, eps_hat: torch.Tensor, t: int, s: int, noise: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, denoise: Denoiser, z_T: torch.Tensor, noise: NoiseFn, progress: bool = False,
               desc: str = "sampling") -> torch.Tensor:
        """Run the reverse chain from z_T to z_0 (the caller decodes z_0)."""
        z = z_T
        T = self.schedule.timesteps
        for t, s in tqdm(self.timesteps, disable=not progress, desc=desc, unit="step", leave=False,
                         dynamic_ncols=True):
            t_vec = torch.full((z.shape[0],), t / T, device=z.device)
            eps_hat = denoise(z, t_vec)
            z = self.step(z, eps_hat, t, s, noise(z) if self.stochastic else None)
        return z


class AncestralScheduler(Scheduler):
    """Ancestral sampling of p(z_s | z_t), EDM's sampler."""

    name = "ancestral"

    def step(self, z_t: torch.Tensor, eps_hat: torch.Tensor, t: int, s: int, noise: torch.Tensor | None) -> torch.Tensor:
        g_t, g_s = self._gammas(t, s, z_t)
        # sigma^2_{t|s} = 1 - exp(softplus(g_s) - softplus(g_t)), alpha_{t|s} = alpha_t / alpha_s
        sigma2_ts = -torch.expm1(F.softplus(g_s) - F.softplus(g_t))
        alpha_ts = torch.exp(0.5 * (F.logsigmoid(-g_t) - F.logsigmoid(-g_s)))
        sigma_s, sigma_t = NoiseSchedule.sigma(g_s), NoiseSchedule.sigma(g_t)
        mu = z_t / alpha_ts - (sigma2_ts / alpha_ts / sigma_t) * eps_hat
        sigma = torch.sqrt(sigma2_ts) * sigma_s / sigma_t
        return mu + sigma * noise


class DDIMScheduler(Scheduler):
    """Deterministic DDIM updates: the clean estimate, moved to the next noise level along eps_hat."""

    name = "ddim"
    stochastic = False

    def step(self, z_t: torch.Tensor, eps_hat: torch.Tensor, t: int, s: int, noise: torch.Tensor | None) -> torch.Tensor:
        g_t, g_s = self._gammas(t, s, z_t)
        a_t, s_t = NoiseSchedule.alpha(g_t), NoiseSchedule.sigma(g_t)
        a_s, s_s = NoiseSchedule.alpha(g_s), NoiseSchedule.sigma(g_s)
        x0 = (z_t - s_t * eps_hat) / a_t
        return a_s * x0 + s_s * eps_hat


SCHEDULERS: dict[str, type[Scheduler]] = {cls.name: cls for cls in (AncestralScheduler, DDIMScheduler)}


def get_scheduler(scheduler: str | Scheduler, schedule: NoiseSchedule, steps: int | None = None,
                  start: int | None = None) -> Scheduler:
    """A scheduler by name (``"ancestral"``, ``"ddim"``) over ``steps`` steps from ``start`` (default T), or
    ``scheduler`` itself if it already is one (its own steps then stand). An unknown name is a ValueError
    listing the choices."""
    if isinstance(scheduler, Scheduler):
        return scheduler
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; choose from {', '.join(SCHEDULERS)}")
    return SCHEDULERS[scheduler](schedule, steps, start)
