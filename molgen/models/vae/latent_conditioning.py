"""Conditional sampling in the VAE's latent space: a property head f(z) and MALA on p(z | y).

A :class:`LatentPropertyHead` is a small MLP from a latent z to standardised RDKit properties
(:data:`molgen.metrics.properties.CONDITIONS`), fitted by least squares (:func:`fit_latent_head`) on
posterior draws z ~ q(z | G) of training molecules and on prior draws z ~ N(0, I) labelled with the
properties of what the decoder makes of them (where the sampler works). Its held-out residual spread
``sigma`` (standardised units, per property) is the width of the likelihood p(y | z) = N(y; f(z), sigma^2).

Sampling (:func:`guided_latents`) draws z from ``p(z) p(y | z)^g`` over the requested properties only
(any subset), ``g`` the guidance scale (0: the prior, 1: the posterior p(z | y), > 1: sharper), by the
Metropolis-adjusted Langevin algorithm (MALA; Roberts & Tweedie 1996) started from the prior draws
themselves; the VAE then decodes those z as usual. The head is a file pair in the checkpoint folder
(``latent_head.safetensors``: weights; ``latent_head.json``: names, statistics, sigma, training ranges
and MALA's settings), so the VAE's own weights stay as they are.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoint import CheckpointError, atomic_write_text, save_weights

HEAD_WEIGHTS, HEAD_JSON = "latent_head.safetensors", "latent_head.json"
#: MALA's settings a new head starts with; ``benchmarks/studies/fit_latent_head.py --sweep`` chooses a shipped
#: head's by measurement (benchmarks/results/latent_head_sweep_<checkpoint>.txt) and writes them into its JSON.
DEFAULT_STEPS, DEFAULT_STEP_SIZE = 100, 0.02


class LatentPropertyHead(nn.Module):
    """f(z): an MLP from latents (B, latent_dim) to standardised properties (B, K).

    Args:
        latent_dim: size of z.
        names: property names, from :data:`~molgen.metrics.properties.CONDITIONS`.
        stats: per name ``mean``, ``std``, ``p01``, ``p99`` of the training labels (RDKit units).
        sigma: per name the held-out residual std of f(z) in standardised units (the likelihood width).
        hidden, layers: width and number of hidden layers.
        steps, step_size: MALA's number of steps and step size (in units of z's prior scale squared).
    """

    def __init__(self, latent_dim: int, names: Sequence[str], stats: Mapping[str, Mapping[str, float]],
                 sigma: Mapping[str, float] | None = None, hidden: int = 256, layers: int = 2,
                 steps: int = DEFAULT_STEPS, step_size: float = DEFAULT_STEP_SIZE) -> None:
        super().__init__()
        self.latent_dim, self.names = int(latent_dim), tuple(names)
        missing = [k for k in self.names if k not in stats]
        if missing:
            raise ValueError(f"latent head stats lack {', '.join(missing)}")
        self.stats = {k: {s: float(v) for s, v in stats[k].items()} for k in self.names}
        self.sigma = {k: float((sigma or {}).get(k, 1.0)) for k in self.names}
        self.hidden, self.layers = int(hidden), int(layers)
        self.steps, self.step_size = int(steps), float(step_size)
        dims = [self.latent_dim] + [self.hidden] * self.layers
        blocks: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(dims[-1], len(self.names)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def standardise(self, values: torch.Tensor) -> torch.Tensor:
        """RDKit-unit values (..., K) in standardised units."""
        mean, std = self._moments(values.device)
        return (values - mean) / std

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """f(z) in RDKit units (B, K)."""
        mean, std = self._moments(z.device)
        with torch.no_grad():
            return self(z.to(next(self.parameters()).device)).to(z.device) * std + mean

    def _moments(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor([self.stats[k]["mean"] for k in self.names], device=device)
        std = torch.tensor([max(self.stats[k]["std"], 1e-6) for k in self.names], device=device)
        return mean, std

    # --- files ---------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """What ``latent_head.json`` holds (the constructor's arguments)."""
        return {"latent_dim": self.latent_dim, "names": list(self.names), "stats": self.stats, "sigma": self.sigma,
                "hidden": self.hidden, "layers": self.layers, "steps": self.steps, "step_size": self.step_size}

    def save(self, folder: str | Path) -> Path:
        """Write ``latent_head.safetensors`` and ``latent_head.json`` into ``folder`` (no pickle)."""
        folder = Path(folder)
        save_weights(self.state_dict(), folder / HEAD_WEIGHTS)
        atomic_write_text(folder / HEAD_JSON, json.dumps(self.settings(), indent=2) + "\n")
        return folder / HEAD_JSON

    @classmethod
    def load(cls, folder: str | Path) -> "LatentPropertyHead | None":
        """The head saved in ``folder``, or None where it has none; CheckpointError for a damaged one."""
        folder = Path(folder)
        if not (folder / HEAD_JSON).is_file():
            return None
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            head = cls(**json.loads((folder / HEAD_JSON).read_text()))
            head.load_state_dict(load_file(str(folder / HEAD_WEIGHTS)), strict=True)
        except (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError) as exc:
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            raise CheckpointError(f"the latent property head in {folder} is unreadable: {first}") from None
        return head.eval()


def read_head_conditions(folder: str | Path) -> tuple[list[str], dict[str, dict[str, float]]] | None:
    """``(names, stats)`` of the latent head saved in ``folder`` (without loading its weights), or None."""
    path = Path(folder) / HEAD_JSON
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return list(data["names"]), dict(data["stats"])


# --- fitting ---------------------------------------------------------------------------------------
def fit_latent_head(mu: torch.Tensor, logvar: torch.Tensor, values: np.ndarray, names: Sequence[str],
                    stats: Mapping[str, Mapping[str, float]], prior_z: torch.Tensor | None = None,
                    prior_values: np.ndarray | None = None, held_out: float = 0.1, epochs: int = 30,
                    batch_size: int = 512, lr: float = 2e-3, seed: int = 0, **head_kw: Any
                    ) -> tuple[LatentPropertyHead, dict[str, Any]]:
    """Fit f(z) by least squares on standardised ``values`` (N, K, RDKit units; rows with a NaN are
    left out): posterior draws z ~ N(mu, exp(logvar)) of the labelled molecules (fresh each epoch) and,
    if given, prior draws ``prior_z`` labelled with the properties of what the decoder made of them
    (``prior_values``), which is where the sampler starts. A seeded ``held_out`` fraction of each set
    gives R^2 and MAE per property, and sigma: the residual std on held-out prior draws where there
    are some, else on held-out posterior draws. Returns the head and that report."""
    names = tuple(names)
    sets = {"posterior_draw": (mu.float(), (0.5 * logvar.float()).exp(), values)}
    if prior_z is not None:
        sets["prior_decoded"] = (prior_z.float(), torch.zeros_like(prior_z, dtype=torch.float32), prior_values)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the head's initial weights
    head = LatentPropertyHead(mu.shape[1], names, stats, **head_kw)
    train, val = [], {}
    for key, (m, sd, v) in sets.items():
        y = head.standardise(torch.as_tensor(np.asarray(v, np.float64), dtype=torch.float32))
        keep = torch.isfinite(y).all(1)
        m, sd, y = m[keep], sd[keep], y[keep]
        if m.shape[0] < 10:
            raise ValueError(f"a latent head needs at least 10 labelled {key.replace('_', ' ')}s, got {m.shape[0]}")
        order = torch.randperm(m.shape[0], generator=gen)
        n_val = max(1, int(round(held_out * m.shape[0])))
        val[key] = (m[order[:n_val]], sd[order[:n_val]], y[order[:n_val]])
        train.append((m[order[n_val:]], sd[order[n_val:]], y[order[n_val:]]))
    m, sd, y = (torch.cat(parts) for parts in zip(*train))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    total = epochs * math.ceil(m.shape[0] / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1))
    head.train()
    for _ in range(epochs):
        perm = torch.randperm(m.shape[0], generator=gen)
        for s in range(0, perm.numel(), batch_size):
            rows = perm[s:s + batch_size]
            z = m[rows] + torch.randn(m[rows].shape, generator=gen) * sd[rows]
            loss = (head(z) - y[rows]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    head.eval()
    units = torch.tensor([max(stats[k]["std"], 1e-6) for k in names])
    report: dict[str, Any] = {"train_rows": int(m.shape[0]), "epochs": epochs,
                              "held_out_rows": {key: int(v[0].shape[0]) for key, v in val.items()}, "properties": {}}
    for key, (vm, vsd, vy) in val.items():
        with torch.no_grad():
            resid = head(vm + torch.randn(vm.shape, generator=gen) * vsd) - vy
        for k, name in enumerate(names):
            r = resid[:, k]
            report["properties"].setdefault(name, {})[key] = {
                "sigma": float(r.std()), "sigma_units": float(r.std() * units[k]),
                "r2": 1.0 - float(r.pow(2).mean()) / float(vy[:, k].var()), "mae": float(r.abs().mean() * units[k])}
    width = "prior_decoded" if "prior_decoded" in val else "posterior_draw"
    for name in names:
        head.sigma[name] = report["properties"][name][width]["sigma"]
    report["sigma_from"] = width
    return head, report


# --- sampling --------------------------------------------------------------------------------------
def guided_latents(head: LatentPropertyHead, z: torch.Tensor, values: torch.Tensor, present: torch.Tensor,
                   guidance: float, prior_scale: float = 1.0, generator: torch.Generator | None = None,
                   steps: int | None = None, step_size: float | None = None) -> tuple[torch.Tensor, float]:
    """MALA from ``z`` (B, latent_dim, prior draws) towards ``p(z) p(y | z)^guidance``, the properties
    ``values`` (K,, RDKit units) where ``present`` (K,); returns the final z and the acceptance rate.
    ``guidance`` 0 (or nothing present) returns ``z`` itself."""
    steps = head.steps if steps is None else int(steps)
    h = (head.step_size if step_size is None else float(step_size)) * prior_scale ** 2
    if guidance == 0 or not bool(present.any()) or steps == 0:
        return z, 1.0
    device = z.device
    head = head.to(device)
    mask = present.to(device)
    target = head.standardise(values.to(device).float())[mask]
    inv_var = torch.tensor([1.0 / head.sigma[k] ** 2 for k in head.names], device=device)[mask]

    def energy_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            fit = (head(x)[:, mask] - target).pow(2).mul(inv_var).sum(-1)
            u = 0.5 * x.pow(2).sum(-1) / prior_scale ** 2 + 0.5 * guidance * fit
            (grad,) = torch.autograd.grad(u.sum(), x)
        return u.detach(), grad.detach()

    x = z.float()
    u, g = energy_and_grad(x)
    accepted = 0.0
    for _ in range(steps):
        noise = torch.randn(x.shape, generator=generator, device=device)
        prop = x - h * g + math.sqrt(2 * h) * noise
        u_p, g_p = energy_and_grad(prop)
        log_q_fwd = -(prop - x + h * g).pow(2).sum(-1) / (4 * h)
        log_q_back = -(x - prop + h * g_p).pow(2).sum(-1) / (4 * h)
        log_alpha = (u - u_p) + log_q_back - log_q_fwd
        uniform = torch.rand(x.shape[0], generator=generator, device=device)
        take = torch.log(uniform) < log_alpha
        x = torch.where(take[:, None], prop, x)
        u, g = torch.where(take, u_p, u), torch.where(take[:, None], g_p, g)
        accepted += float(take.float().mean())
    return x.to(z.dtype), accepted / steps
