"""Reverse chains with a known part: RePaint (Lugmayr et al. 2022) around any scheduler.

At every step the known part of the state is replaced by the known data noised to the step's level
(``known(z_s, s)``, supplied by the model, which knows its own geometry: centre of mass, masks); with
``resamplings`` U > 1 each step is repeated U times, the state noised back up from s to t in between,
so that the generated part can adapt to the known part (RePaint's "jumps" of length 1).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .schedule import NoiseSchedule
from .schedulers import Denoiser, NoiseFn, Scheduler

KnownFn = Callable[[torch.Tensor, int], torch.Tensor]


def renoise(schedule: NoiseSchedule, z_s: torch.Tensor, s: int, t: int, noise: torch.Tensor) -> torch.Tensor:
    """A draw of q(z_t | z_s) for s < t: alpha_{t|s} z_s + sigma_{t|s} noise."""
    T = schedule.timesteps
    g_t = schedule.gamma(torch.tensor(t / T, device=z_s.device))
    g_s = schedule.gamma(torch.tensor(s / T, device=z_s.device))
    alpha_ts = torch.exp(0.5 * (F.logsigmoid(-g_t) - F.logsigmoid(-g_s)))
    sigma_ts = torch.sqrt(-torch.expm1(F.softplus(g_s) - F.softplus(g_t)))
    return alpha_ts * z_s + sigma_ts * noise


@torch.no_grad()
def sample_with_known(scheduler: Scheduler, denoise: Denoiser, z_start: torch.Tensor, noise: NoiseFn,
                      known: KnownFn, resamplings: int = 1, progress: bool = False,
                      desc: str = "sampling") -> torch.Tensor:
    """Run ``scheduler``'s chain from ``z_start`` (at its first step) to z_0, putting the known part back
    after every step with ``known(z, s)``; ``resamplings`` (>= 1) repeats each step as RePaint does."""
    if resamplings < 1:
        raise ValueError(f"resamplings must be >= 1, got {resamplings}")
    T = scheduler.schedule.timesteps
    z = known(z_start, scheduler.timesteps[0][0])
    for t, s in tqdm(scheduler.timesteps, disable=not progress, desc=desc, unit="step", leave=False,
                     dynamic_ncols=True):
        t_vec = torch.full((z.shape[0],), t / T, device=z.device)
        for u in range(resamplings):
            eps_hat = denoise(z, t_vec)
            z_s = known(scheduler.step(z, eps_hat, t, s, noise(z) if scheduler.stochastic else None), s)
            z = renoise(scheduler.schedule, z_s, s, t, noise(z_s)) if u < resamplings - 1 else z_s
    return z
