"""Samplers for variance-preserving diffusion, independent of the network and the data layout.

The network is injected as ``denoise(z_t, t) -> eps_hat`` with t a (B,) float tensor in [0, 1]; noise
is drawn by ``noise(like) -> eps`` so that a caller can keep it in a subspace (e.g. zero centre of
mass). Skipping steps is exact for the ancestral sampler: q(z_t | z_s) stays Gaussian for any s < t.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .schedule import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFn = Callable[[torch.Tensor], torch.Tensor]


def timestep_pairs(timesteps: int, steps: int | None = None) -> list[tuple[int, int]]:
    """(t, s) pairs from T down to 0, using ``steps`` evenly spaced steps (all T when None)."""
    steps = timesteps if steps is None else int(steps)
    if not 1 <= steps <= timesteps:
        raise ValueError(f"steps must be between 1 and {timesteps}, got {steps}")
    grid = np.unique(np.round(np.linspace(0, timesteps, steps + 1)).astype(int))[::-1]
    return [(int(t), int(s)) for t, s in zip(grid[:-1], grid[1:])]


class Sampler:
    """Ancestral sampling of p(z_s | z_t) (``kind="ancestral"``) or deterministic DDIM updates
    (``kind="ddim"``), from z_T down to z_0, over ``steps`` of the schedule's T steps."""

    def __init__(self, schedule: NoiseSchedule, steps: int | None = None, kind: str = "ancestral") -> None:
        if kind not in ("ancestral", "ddim"):
            raise ValueError(f"unknown sampler {kind!r}; choose 'ancestral' or 'ddim'")
        self.schedule, self.kind = schedule, kind
        self.pairs = timestep_pairs(schedule.timesteps, steps)

    def step(self, z_t: torch.Tensor, eps_hat: torch.Tensor, t: int, s: int, noise: torch.Tensor) -> torch.Tensor:
        T = self.schedule.timesteps
        g_t = self.schedule.gamma(torch.tensor(t / T, device=z_t.device))
        g_s = self.schedule.gamma(torch.tensor(s / T, device=z_t.device))
        if self.kind == "ddim":
            a_t, s_t = NoiseSchedule.alpha(g_t), NoiseSchedule.sigma(g_t)
            a_s, s_s = NoiseSchedule.alpha(g_s), NoiseSchedule.sigma(g_s)
            x0 = (z_t - s_t * eps_hat) / a_t
            return a_s * x0 + s_s * eps_hat
        # sigma^2_{t|s} = 1 - exp(softplus(g_s) - softplus(g_t)), alpha_{t|s} = alpha_t / alpha_s
        sigma2_ts = -torch.expm1(F.softplus(g_s) - F.softplus(g_t))
        alpha_ts = torch.exp(0.5 * (F.logsigmoid(-g_t) - F.logsigmoid(-g_s)))
        sigma_s, sigma_t = NoiseSchedule.sigma(g_s), NoiseSchedule.sigma(g_t)
        mu = z_t / alpha_ts - (sigma2_ts / alpha_ts / sigma_t) * eps_hat
        sigma = torch.sqrt(sigma2_ts) * sigma_s / sigma_t
        return mu + sigma * noise

    @torch.no_grad()
    def sample(self, denoise: Denoiser, z_T: torch.Tensor, noise: NoiseFn, progress: bool = False,
               desc: str = "sampling") -> torch.Tensor:
        """Run the reverse chain from z_T to z_0 (the caller decodes z_0)."""
        z = z_T
        T = self.schedule.timesteps
        for t, s in tqdm(self.pairs, disable=not progress, desc=desc, unit="step", leave=False,
                         dynamic_ncols=True):
            t_vec = torch.full((z.shape[0],), t / T, device=z.device)
            z = self.step(z, denoise(z, t_vec), t, s, noise(z))
        return z
