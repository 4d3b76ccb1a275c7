"""Conditions p(x | y) shared by the models: named properties, their embedding, and the checks.

A conditional model holds a :class:`ConditionEncoder` for its ``conditions`` (names from
:data:`molgen.metrics.properties.CONDITIONS`), with each property's training statistics
(``condition_stats``: mean, std and the 1st / 99th percentiles, computed by the training setup). A
property enters as a small MLP of its standardised value; an absent one contributes nothing, so
the same weights model p(x) (no condition), p(x | y) (all) and any subset in between. Training drops
conditions at random (condition dropout), which is what classifier-free guidance needs: at
guidance scale w the sampler mixes logits as ``uncond + w * (cond - uncond)`` (w = 1: the
conditional model; w > 1: sharper). The MLPs' last layers start at zero, so a conditional model
initialised from unconditional weights starts out as exactly that model.

Generate-and-select (``sample(..., candidates=K)``): a model draws K samples per requested molecule and
:func:`closest_to_request` keeps, of each K, the one whose exact RDKit values of the requested properties
lie closest to the request; it costs K times the sampling plus RDKit's property values of every draw.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn


class ConditionEncoder(nn.Module):
    """Sum of per-property embeddings (B, d) of standardised values, absent properties left out."""

    def __init__(self, names: Sequence[str], stats: Mapping[str, Mapping[str, float]], d: int) -> None:
        super().__init__()
        self.names = tuple(names)
        missing = [k for k in self.names if k not in stats]
        if missing:
            raise ValueError(f"condition_stats lacks {', '.join(missing)}")
        self.register_buffer("mean", torch.tensor([float(stats[k]["mean"]) for k in self.names]), persistent=False)
        self.register_buffer("std", torch.tensor([max(float(stats[k]["std"]), 1e-6) for k in self.names]),
                             persistent=False)
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(1, d), nn.SiLU(), nn.Linear(d, d)) for _ in self.names)
        for mlp in self.mlps:
            nn.init.zeros_(mlp[-1].weight)
            nn.init.zeros_(mlp[-1].bias)

    def forward(self, values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        z = ((values - self.mean) / self.std).to(self.mean.dtype)
        out = 0
        for k, mlp in enumerate(self.mlps):
            out = out + mlp(z[:, k:k + 1]) * present[:, k:k + 1].to(z.dtype)
        return out


def condition_tensors(condition: "Mapping[str, Any] | None", names: Sequence[str],
                      stats: Mapping[str, Mapping[str, float]] | None, model: str
                      ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(values (K,), present (K,))`` for a request such as ``{"logp": 3.5}``, or None for none.

    Unknown names, non-numbers and a model trained without conditions raise one-line ValueErrors; a
    value outside the training range (1st to 99th percentile) warns and says the range."""
    if condition is None or len(condition) == 0:
        return None
    if not isinstance(condition, Mapping):
        raise ValueError(f"condition must be a dict such as {{'logp': 3.5}}, got {type(condition).__name__}")
    if not names:
        raise ValueError(f"this {model} checkpoint was trained without conditions; "
                         "train a conditional one with `molgen train --conditions logp,qed`")
    values = torch.zeros(len(names))
    present = torch.zeros(len(names), dtype=torch.bool)
    for key, value in condition.items():
        if key not in names:
            raise ValueError(f"unknown condition {key!r} for this {model} checkpoint; choose from {', '.join(names)}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"condition {key} must be a finite number, got {value!r}")
        k = names.index(key)
        lo, hi = (stats or {}).get(key, {}).get("p01"), (stats or {}).get(key, {}).get("p99")
        if lo is not None and hi is not None and not lo <= value <= hi:
            warnings.warn(f"condition {key}={value:g} is outside the training range {lo:.3g} to {hi:.3g} "
                          "(1st to 99th percentile); expect the model to miss it", stacklevel=3)
        values[k], present[k] = float(value), True
    return values, present


def check_guidance(guidance: Any, condition: "Mapping[str, Any] | None") -> float:
    """The guidance scale as a float (finite, >= 0); ValueError if it is not, or if it is other than 1
    without a condition."""
    if isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not math.isfinite(guidance) \
            or guidance < 0:
        raise ValueError(f"guidance must be a finite number >= 0, got {guidance!r}")
    if guidance != 1.0 and not condition:
        raise ValueError("guidance applies with a condition only")
    return float(guidance)


def check_candidates(candidates: Any, condition: "Mapping[str, Any] | None") -> int:
    """The number of draws per kept sample (an int >= 1); ValueError if it is not, or if it is > 1
    without a condition."""
    if isinstance(candidates, bool) or not isinstance(candidates, numbers.Integral) or candidates < 1:
        raise ValueError(f"candidates must be a positive integer, got {candidates!r}")
    if candidates > 1 and not condition:
        raise ValueError("candidates applies with a condition only (it keeps the draw closest to it)")
    return int(candidates)


def closest_to_request(molecules: Sequence[Any], k: int, condition: Mapping[str, float],
                       stats: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """Indices (``len(molecules) // k``,) of the kept molecule of each ``k`` consecutive ones: the one whose
    exact values of the requested properties (RDKit's, :func:`molgen.metrics.properties.condition_values`)
    are closest to ``condition``, by the sum of squared differences in units of each property's training
    std (``stats[name]["std"]``, the scale :class:`ConditionEncoder` standardises by). Molecules (RDKit Mols
    or SMILES) that are None, invalid or whose values RDKit cannot compute lose; ties keep the earliest.
    A property RDKit does not compute (QM9's DFT ones) raises a ValueError."""
    from ..metrics.properties import CONDITIONS, condition_values  # RDKit: imported where it is used

    names = tuple(condition)
    exact = [key for key in names if key not in CONDITIONS]
    if exact:
        raise ValueError(f"candidates selects by RDKit's exact values, which {', '.join(exact)} are not; "
                         f"it applies to {', '.join(CONDITIONS)}")
    if k < 1 or len(molecules) % k:
        raise ValueError(f"{len(molecules)} molecules are not groups of {k}")
    target = np.array([float(condition[key]) for key in names])
    scale = np.array([max(float(stats[key]["std"]), 1e-6) for key in names])
    dist = (((condition_values(list(molecules), names) - target) / scale) ** 2).sum(1)
    dist = np.where(np.isfinite(dist), dist, np.inf).reshape(-1, k)
    return dist.argmin(1) + np.arange(0, len(molecules), k)


def condition_embedding(encoder: "ConditionEncoder | None", condition: "Mapping[str, Any] | None",
                        names: Sequence[str], stats: Mapping[str, Mapping[str, float]] | None, model: str,
                        device: "torch.device | str") -> torch.Tensor | None:
    """A model's embedding (d,) of a request such as ``{"logp": 2.5}`` (checked by
    :func:`condition_tensors`), or None for an unconditional draw."""
    req = condition_tensors(condition, names, stats, model)
    if req is None or encoder is None:
        return None
    values, present = (x[None].to(device) for x in req)
    with torch.no_grad():
        return encoder(values, present)[0]


def parse_condition_args(items: Sequence[str]) -> dict[str, float]:
    """``["logp=3.5", "qed=0.8"]`` (the CLI's ``--condition``) as a dict; one error line for a bad item."""
    out: dict[str, float] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not sep or not key or not math.isfinite(value):
            raise ValueError(f"--condition takes NAME=NUMBER (e.g. logp=3.5), got {item!r}")
        if key in out:
            raise ValueError(f"--condition {key} is given twice")
        out[key] = value
    return out
