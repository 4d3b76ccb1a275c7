"""Training data for conditional models: each molecule's properties, their statistics, and
condition dropout (:mod:`molgen.models.conditioning`).

Property values are RDKit's (:data:`molgen.metrics.properties.CONDITIONS`), computed once per
training set in parallel worker processes and cached by content under ``molgen._cache.cache_dir("conditions")``.
Each batch gets ``cond`` (B, K) and ``cond_mask`` (B, K): with probability ``drop_all`` a molecule
is unconditional (all masked), otherwise each property is kept with probability ``keep``, so one
model learns p(x), p(x | y) and every subset. The masks are drawn from the batch's own indices, so a
resumed run sees the same ones (a batch of the same molecules always gets the same masks).
"""
from __future__ import annotations

import zlib
from multiprocessing import get_context
from typing import Sequence

import numpy as np
import torch

from .._cache import cache_dir, cached_npz, digest_strings

# molgen.metrics (RDKit) is imported where RDKit properties are computed or named: the condition dropout
# and statistics here serve the conditional EDM too, which trains on a GPU machine without RDKit.

DROP_ALL, KEEP = 0.2, 0.5


def check_names(names: Sequence[str]) -> tuple[str, ...]:
    """The condition names, checked against :data:`molgen.metrics.properties.CONDITIONS` (one error line
    listing the choices)."""
    from ..metrics.properties import CONDITIONS

    names = tuple(n.strip() for n in names.split(",")) if isinstance(names, str) else tuple(names)
    bad = [k for k in names if k not in CONDITIONS]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(f"conditions must be distinct names from {', '.join(CONDITIONS)}; got {', '.join(names) or 'none'}")
    return names


def _values(job: tuple[list[str], tuple[str, ...]]) -> np.ndarray:
    from ..metrics.properties import condition_values

    return condition_values(*job)


def property_values(name: str, smiles: Sequence[str], names: Sequence[str], workers: int = 2,
                    chunk: int = 5000) -> np.ndarray:
    """(N, K) float64 property values of ``smiles`` (NaN where RDKit rejects one), cached."""
    names = check_names(names)
    digest = digest_strings([*names, "", *smiles])

    def compute() -> dict[str, np.ndarray]:
        from tqdm import tqdm

        jobs = [(list(smiles[i:i + chunk]), names) for i in range(0, len(smiles), chunk)]
        with get_context("spawn").Pool(max(1, workers)) as pool:
            parts = list(tqdm(pool.imap(_values, jobs), total=len(jobs), desc=f"properties {name}", unit="chunk"))
        return {"values": np.concatenate(parts) if parts else np.zeros((0, len(names)))}

    return cached_npz(cache_dir("conditions") / f"{name}-{'-'.join(names)}.npz", digest, compute)["values"]


def conditioned_config(name: str, smiles: Sequence[str], cfg: dict) -> tuple[dict, tuple[str, ...], np.ndarray | None]:
    """A training setup's conditions: the model settings with ``conditions`` checked and, unless given
    (a resumed run keeps its own), their ``condition_stats``; the names; and the (N, K) property values of
    ``smiles`` (cached as ``name``), or None for an unconditional model."""
    names = check_names(cfg["conditions"]) if cfg.get("conditions") else ()
    if not names:
        return cfg, names, None
    values = property_values(name, smiles, names)
    if not cfg.get("condition_stats"):
        cfg = {**cfg, "conditions": list(names), "condition_stats": condition_stats(values, names)}
    return cfg, names, values


def condition_stats(values: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per property: mean, std and the 1st / 99th percentiles (the range the model was trained on)."""
    out = {}
    for k, key in enumerate(names):
        v = values[:, k][np.isfinite(values[:, k])]
        out[key] = {"mean": float(v.mean()), "std": float(v.std()), "p01": float(np.percentile(v, 1)),
                    "p99": float(np.percentile(v, 99))}
    return out


class ConditionedData:
    """A training dataset whose batches also carry each molecule's conditions, with dropout."""

    def __init__(self, data, values: np.ndarray, drop_all: float = DROP_ALL, keep: float = KEEP) -> None:
        if len(values) != len(data):
            raise ValueError(f"{len(values)} property rows for {len(data)} molecules")
        self.data, self.values = data, np.asarray(values, np.float64)
        self.drop_all, self.keep = drop_all, keep

    def __len__(self) -> int:
        return len(self.data)

    def to(self, device) -> "ConditionedData":
        """Move the wrapped dataset's arrays to ``device`` (where it can), keeping the conditions: the
        trainer replaces its dataset by what ``to`` returns."""
        if callable(getattr(self.data, "to", None)):
            self.data = self.data.to(device)
        return self

    def __getattr__(self, name: str):  # the wrapped dataset's attributes (``dropped``, ``index``, ...)
        if name.startswith("__") or name == "data":
            raise AttributeError(name)
        return getattr(self.data, name)

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        if hasattr(self.data, "accepted"):  # a table that leaves out rows it cannot featurise
            idx = self.data.accepted(idx)
        out = self.data.batch(idx)
        rng = np.random.default_rng(zlib.crc32(idx.tobytes()))
        vals = self.values[idx]
        present = np.isfinite(vals) & (rng.random(vals.shape) < self.keep)
        present &= (rng.random(len(idx)) >= self.drop_all)[:, None]
        out["cond"] = torch.from_numpy(np.nan_to_num(vals).astype(np.float32))
        out["cond_mask"] = torch.from_numpy(present)
        return out
