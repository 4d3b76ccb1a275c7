"""A property predictor for 3D molecules: the judge of EDM's conditional-generation protocol on QM9.

EDM scores a conditional generator by the mean absolute error between the properties it was asked
for and those an EGNN regressor predicts for its samples; the regressor is trained on the other half
of the training split (:data:`molgen.datasets.qm9.HALVES`). Here it is one EGNN trunk
(:class:`molgen.nn.egnn.EGNN`, fully connected, invariant node features) with sum pooling over the
atoms and one output per property, trained with the L1 loss on properties standardised by their mean
and mean absolute deviation (EDM's normalisation). EDM trains one network per property; one network
with a head per property costs a sixth of the GPU time for the six, and a run with a single property
(``properties=["alpha"]``) gives EDM's per-property setting with the same code.

Inputs are atom types as one-hot vectors and coordinates (Angstrom), nothing else (EDM's predictor
sees no charges either). A checkpoint is a folder: ``config.json`` (this class's keyword arguments),
``weights.safetensors`` and ``metrics.json`` (the card, with its test MAE), no pickle.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ...nn.egnn import EGNN
from ..base import evaluating, resolve_device
from ..checkpoint import build_from_checkpoint, save_checkpoint
from .model import QM9_TYPES, remove_mean
from .records import as_records, collate, unscorable


class PropertyPredictor(nn.Module):
    """EGNN regressor from (atom types, coordinates) to ``properties`` in their units.

    ``property_stats``: per property ``{"mean": ..., "mad": ...}`` (of its training data), the
    standardisation of the targets. ``forward`` returns standardised values; :meth:`predict` and
    :meth:`predict_batch` return them in the properties' units."""

    name: ClassVar[str] = "qm9-property-predictor"

    def __init__(self, *, properties: Sequence[str], property_stats: Mapping[str, Mapping[str, float]],
                 atom_types: Sequence[str] = QM9_TYPES, hidden: int = 128, n_layers: int = 7,
                 attention: bool = True, max_atoms: int = 29) -> None:
        super().__init__()
        self.properties = tuple(properties)
        if not self.properties:
            raise ValueError("a property predictor needs at least one property")
        missing = [k for k in self.properties if k not in property_stats]
        if missing:
            raise ValueError(f"property_stats lacks {', '.join(missing)}")
        self.atom_types = tuple(atom_types)
        self.max_atoms = int(max_atoms)
        self.config: dict[str, Any] = {
            "properties": list(self.properties),
            "property_stats": {k: {"mean": float(property_stats[k]["mean"]), "mad": float(property_stats[k]["mad"])}
                               for k in self.properties},
            "atom_types": list(self.atom_types), "hidden": int(hidden), "n_layers": int(n_layers),
            "attention": bool(attention), "max_atoms": self.max_atoms}
        stats = self.config["property_stats"]
        self.register_buffer("mean", torch.tensor([stats[k]["mean"] for k in self.properties]), persistent=False)
        self.register_buffer("mad", torch.tensor([max(stats[k]["mad"], 1e-8) for k in self.properties]),
                             persistent=False)
        self.egnn = EGNN(len(self.atom_types), hidden, hidden=hidden, n_layers=n_layers, attention=attention,
                         tanh=True, coords_range=15.0, normalization_factor=1.0)
        self.node_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, len(self.properties)))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, types: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Standardised predictions (B, K) for type indices (B, N), positions (B, N, 3), mask (B, N)."""
        m = mask.unsqueeze(-1).to(pos.dtype)
        h = nn.functional.one_hot(types.clamp(min=0), len(self.atom_types)).to(pos.dtype) * m
        h, _ = self.egnn(h, remove_mean(pos * m, m), m)
        return self.head((self.node_mlp(h) * m).sum(1))

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L1 between standardised predictions and targets ``batch["props"]`` (B, K), mean over both."""
        pred = self(batch["types"], batch["pos"].float(), batch["mask"])
        err = (pred.float() - (batch["props"].float() - self.mean) / self.mad).abs()
        logs = {f"mae_{k}": (err[:, i].mean() * self.mad[i]).detach() for i, k in enumerate(self.properties)}
        return err.mean(), logs

    @torch.no_grad()
    def predict_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predictions (B, K) in the properties' units for a collated batch (``types``, ``pos``, ``mask``)."""
        with evaluating(self):
            return self(batch["types"], batch["pos"].float(), batch["mask"]).float() * self.mad + self.mean

    def predict(self, molecules: Any, batch_size: int = 256) -> np.ndarray:
        """(M, K) float64 predictions in the properties' units for molecules given as a SampleSet, RDKit
        Mols with 3D conformers, or (atomic numbers, positions in Angstrom) pairs; NaN rows for molecules
        without coordinates, with elements outside the vocabulary or with too many atoms."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        records = as_records(molecules)
        from ...chem.elements import ATOMIC_NUMBERS

        z_to_type = {ATOMIC_NUMBERS[a]: i for i, a in enumerate(self.atom_types)}
        out = np.full((len(records), len(self.properties)), np.nan)
        ok = [i for i, r in enumerate(records) if unscorable(r, z_to_type, self.max_atoms, self.atom_types) is None]
        for start in range(0, len(ok), batch_size):
            idx = ok[start:start + batch_size]
            batch = collate([records[i] for i in idx], z_to_type, self.device)
            out[idx] = self.predict_batch(batch).cpu().double().numpy()
        return out

    # --- checkpoints ---------------------------------------------------------------------------------
    def save(self, folder: str | Path, metrics: dict[str, Any] | None = None) -> Path:
        """Write config.json, weights.safetensors and (if given) metrics.json to ``folder``."""
        return save_checkpoint(folder, self.name, self.config, self.state_dict(), metrics)

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> "PropertyPredictor":
        """A saved predictor (a checkpoint folder, also a training run's) in eval mode on ``device``."""
        return build_from_checkpoint(cls, folder, cls.name).to(resolve_device(device)).eval()
