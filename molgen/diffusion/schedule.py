"""Noise schedules for variance-preserving diffusion, separate from any network.

A schedule over ``T`` steps defines, for integer t in [0, T], gamma(t) = -log(alpha_t^2 / sigma_t^2)
with alpha_t^2 + sigma_t^2 = 1. Time is passed as a float in [0, 1] (t / T), as in EDM.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def _clip_noise_schedule(alphas2: np.ndarray, clip_value: float = 0.001) -> np.ndarray:
    """Clip alpha_t^2 / alpha_{t-1}^2 from below for stable sampling near t = T (as in EDM)."""
    alphas2 = np.concatenate([np.ones(1), alphas2], axis=0)
    alphas_step = np.clip(alphas2[1:] / alphas2[:-1], a_min=clip_value, a_max=1.0)
    return np.cumprod(alphas_step, axis=0)


def polynomial_alphas2(timesteps: int, s: float = 1e-4, power: float = 2.0) -> np.ndarray:
    """EDM's ``polynomial_<power>`` schedule: alpha^2 = (1 - (t/T)^power)^2, clipped, then squeezed
    into [s, 1 - s] by the precision ``s``."""
    steps = timesteps + 1
    x = np.linspace(0, steps, steps)
    alphas2 = (1 - np.power(x / steps, power)) ** 2
    alphas2 = _clip_noise_schedule(alphas2, clip_value=0.001)
    precision = 1 - 2 * s
    return precision * alphas2 + s


def cosine_alphas2(timesteps: int, s: float = 0.008) -> np.ndarray:
    """The cosine schedule of Nichol & Dhariwal (2021), clipped as in EDM."""
    steps = timesteps + 2
    x = np.linspace(0, steps, steps)
    f = np.cos(((x / steps) + s) / (1 + s) * math.pi * 0.5) ** 2
    alphas_cumprod = f / f[0]
    betas = np.clip(1 - (alphas_cumprod[1:] / alphas_cumprod[:-1]), 0, 0.999)
    alphas2 = np.cumprod(1.0 - betas, axis=0)
    return alphas2[1:] if alphas2.shape[0] > timesteps + 1 else alphas2


class NoiseSchedule(nn.Module):
    """A predefined schedule stored as a gamma table; ``gamma(t)`` looks up t in [0, 1].

    ``kind`` is ``"polynomial_2"`` (EDM's default; any ``polynomial_<p>``) or ``"cosine"``;
    ``precision`` is EDM's s (1e-5 by default).
    """

    def __init__(self, kind: str = "polynomial_2", timesteps: int = 1000, precision: float = 1e-5) -> None:
        super().__init__()
        self.kind, self.timesteps, self.precision = kind, int(timesteps), precision
        if kind == "cosine":
            alphas2 = cosine_alphas2(self.timesteps)
        elif kind.startswith("polynomial_"):
            alphas2 = polynomial_alphas2(self.timesteps, s=precision, power=float(kind.split("_", 1)[1]))
        else:
            raise ValueError(f"unknown noise schedule {kind!r}; choose 'polynomial_2' (or polynomial_<p>) or 'cosine'")
        sigmas2 = 1 - alphas2
        gamma = -(np.log(alphas2) - np.log(sigmas2))
        self.register_buffer("table", torch.tensor(gamma, dtype=torch.float32), persistent=False)

    def gamma(self, t: torch.Tensor) -> torch.Tensor:
        """gamma at normalised times t in [0, 1] (rounded to the nearest step)."""
        idx = torch.round(t * self.timesteps).long().clamp(0, self.timesteps)
        return self.table[idx].to(t.dtype if t.is_floating_point() else torch.float32)

    @staticmethod
    def alpha(gamma: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.sigmoid(-gamma))

    @staticmethod
    def sigma(gamma: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.sigmoid(gamma))

    @staticmethod
    def snr(gamma: torch.Tensor) -> torch.Tensor:
        return torch.exp(-gamma)

    def add_noise(self, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_t = alpha_t x + sigma_t eps, with t (B,) broadcast over the trailing dimensions."""
        g = self.gamma(t).view(-1, *([1] * (x.dim() - 1)))
        return self.alpha(g) * x + self.sigma(g) * eps
