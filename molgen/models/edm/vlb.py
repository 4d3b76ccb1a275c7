"""EDM's variational bound on -log p(x, h, N), term by term (Hoogeboom et al. 2022, appendix), in nats.

The functions take the model (its schedule, vocabulary and network) and a collated batch; an optional
``torch.Generator`` makes the Monte Carlo draws reproducible without touching the global RNG.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from ...diffusion.schedule import NoiseSchedule

if TYPE_CHECKING:
    from .model import EDM


def _cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2)))


def gaussian_kl_prior(model: "EDM", xh: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(q(z_T | x, h) || N(0, I)) per molecule, the coordinates in the zero-CoM subspace."""
    g_T = model.schedule.gamma(torch.ones(xh.shape[0], device=xh.device)).view(-1, 1, 1)
    a, s = NoiseSchedule.alpha(g_T), NoiseSchedule.sigma(g_T)
    mu = a * xh
    n = mask.sum((1, 2))
    d_x = (n - 1) * 3
    s2 = (s ** 2).view(-1)
    kl_h = ((torch.log(1 / s) + 0.5 * (s ** 2 + mu[..., 3:] ** 2) - 0.5) * mask).sum((1, 2))
    kl_x = d_x * torch.log(1 / s.view(-1)) + 0.5 * (d_x * s2 + (mu[..., :3] ** 2).sum((1, 2))) - 0.5 * d_x
    return kl_x + kl_h


def log_p_given_z0(model: "EDM", xh: torch.Tensor, types: torch.Tensor, mask: torch.Tensor,
                   generator: torch.Generator | None = None, context: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x, h | z_0): Gaussian coordinates, discretised one-hot types and integer charges
    (``context``: a conditional model's condition embedding)."""
    b = xh.shape[0]
    t0 = torch.zeros(b, device=xh.device)
    g0 = model.schedule.gamma(t0).view(-1, 1, 1)
    eps = model.noise_like(xh, mask, generator)
    z0 = NoiseSchedule.alpha(g0) * xh + NoiseSchedule.sigma(g0) * eps
    pred = model.dynamics(z0, t0, mask, context)
    n = mask.sum((1, 2))
    log_px = -0.5 * ((eps[..., :3] - pred[..., :3]) ** 2).sum((1, 2))
    dof = (n - 1) * 3
    log_px = log_px + dof * (-0.5 * g0.view(-1) - 0.5 * math.log(2 * math.pi))
    sigma0 = NoiseSchedule.sigma(g0)
    eps_small = 1e-10
    # categorical: integrate N(z_h, sigma_0) over [0.5, 1.5] around each one-hot entry, normalise
    z_cat = z0[..., 3:3 + model.k] * model.norm_values[1] - 1.0
    s_cat = sigma0 * model.norm_values[1]
    logp_cat = torch.log(_cdf((z_cat + 0.5) / s_cat) - _cdf((z_cat - 0.5) / s_cat) + eps_small)
    logp_cat = logp_cat - torch.logsumexp(logp_cat, dim=-1, keepdim=True)
    onehot = nn.functional.one_hot(types.clamp(min=0), model.k).float()
    log_ph = (logp_cat * onehot * mask).sum((1, 2))
    if model.include_charges:
        charge = model.type_z[types.clamp(min=0)].float().unsqueeze(-1)
        centered = charge - z0[..., -1:] * model.norm_values[2]
        s_int = sigma0 * model.norm_values[2]
        lp = torch.log(_cdf((centered + 0.5) / s_int) - _cdf((centered - 0.5) / s_int) + eps_small)
        log_ph = log_ph + (lp * mask).sum((1, 2))
    return log_px + log_ph


@torch.no_grad()
def nll_terms(model: "EDM", batch: dict[str, torch.Tensor], n_t: int = 1,
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Per-molecule terms of the variational bound (nats): diffusion (Monte Carlo over n_t times),
    prior KL, -log p(x, h | z_0), -log p(N). A batch with ``cond`` / ``cond_mask`` (a conditional
    model) gives the terms of the bound on log p(x, h | N, y) + log p(N)."""
    mask, xh = model.clean_state(batch)
    context = model.batch_context(batch)
    b = xh.shape[0]
    T = model.schedule.timesteps
    diff = torch.zeros(b, device=xh.device)
    for _ in range(n_t):
        t_int = torch.randint(1, T + 1, (b,), device=xh.device, generator=generator).float()
        t, s = t_int / T, (t_int - 1) / T
        g_t, g_s = model.schedule.gamma(t), model.schedule.gamma(s)
        eps = model.noise_like(xh, mask, generator)
        z = model.schedule.add_noise(xh, eps, t)
        pred = model.dynamics(z, t, mask, context)
        err = ((eps - pred) ** 2).sum((1, 2))
        diff += T * 0.5 * torch.expm1(g_t - g_s) * err
    diff /= n_t
    n = mask.sum((1, 2)).long()
    log_pn = torch.log(model.n_atoms_probs[n.clamp(max=model.max_atoms)] + 1e-30)
    # delta log px for the coordinate normalisation (zero when norm_values[0] == 1)
    delta = -(n - 1) * 3 * math.log(model.norm_values[0])
    return {"diffusion": diff, "prior": gaussian_kl_prior(model, xh, mask),
            "decoder": -log_p_given_z0(model, xh, batch["types"], mask, generator, context), "log_pN": log_pn,
            "delta_log_px": delta.float()}


def log_likelihood_bound(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The bound on log p(x, h, N) from :func:`nll_terms` (EDM reports its negative)."""
    nll = terms["diffusion"] + terms["prior"] + terms["decoder"] - terms["delta_log_px"] - terms["log_pN"]
    return -nll
