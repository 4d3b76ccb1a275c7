"""Training the QM9 property predictor of EDM's conditional protocol (:mod:`molgen.models.edm.predictor`).

EDM's split: the predictor trains on the first half of the training split
(:data:`molgen.datasets.qm9.HALVES`), picks nothing on the validation split here (the trainer keeps the
EMA weights, evaluated on a fixed draw of validation molecules for the learning curve), and its test MAE
is measured on the second half, the generator's half, which the predictor never sees (EDM's
``qm9_second_half`` test). The targets are standardised by the first half's mean and mean absolute
deviation. The run folder is a normal molgen training run (resumable, ``--max-minutes``), and a
finished run's ``metrics.json`` carries ``evaluation`` with the test MAE per property.

    python -m molgen.cli.train_predictor --out runs/qm9-predictor --max-minutes 12
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..datasets.qm9 import HALVES, QM9_CONDITIONS, check_conditions, indices, qm9_properties
from ..datasets.qm9_3d import QM9Padded
from ..models.card import read_card, write_card
from ..models.edm.predictor import PropertyPredictor
from .config import TrainConfig
from .data_order import fixed_subset
from .trainer import Trainer

#: EDM's predictor: 7 layers of 128 hidden units with attention; lr 5e-4 to 1e-3 (here 5e-4), batch 96.
#: float32 on a GPU too (no bf16 autocast): the errors to reach are ~0.1 % of the values (alpha 0.1 of 75
#: Bohr^3), about bfloat16's resolution.
DEFAULT_MODEL = {"hidden": 128, "n_layers": 7, "attention": True}
DEFAULT_TRAIN = {"batch_size": 96, "lr": 5e-4, "ema_decay": 0.999, "checkpoint_every": 2000, "log_every": 100,
                 "eval_every": 2000, "bf16": False}


class PropertyData:
    """Padded QM9 molecules whose batches also carry ``props`` (B, K), the targets."""

    def __init__(self, data: QM9Padded, values: np.ndarray) -> None:
        if len(values) != len(data):
            raise ValueError(f"{len(values)} property rows for {len(data)} molecules")
        self.data, self.values = data, torch.as_tensor(np.asarray(values, np.float32))

    def __len__(self) -> int:
        return len(self.data)

    def to(self, device: str | torch.device) -> "PropertyData":
        self.data = self.data.to(device)
        self.values = self.values.to(device)
        return self

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        out = self.data.batch(indices)
        out["props"] = self.values[torch.as_tensor(np.asarray(indices), dtype=torch.long).to(self.values.device)]
        return out


def property_data(split: str, names: Sequence[str], max_molecules: int | None = None) -> PropertyData:
    """A split (or a fixed subset of it) with its properties in EDM's units."""
    data = QM9Padded(split, subset=fixed_subset(indices(split).size, max_molecules))
    return PropertyData(data, qm9_properties(data.rows, names))


def target_stats(values: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean and mean absolute deviation per property (EDM's normalisation of targets and contexts)."""
    mean = values.mean(0)
    mad = np.abs(values - mean).mean(0)
    return {k: {"mean": float(mean[i]), "mad": float(mad[i])} for i, k in enumerate(names)}


@torch.no_grad()
def mean_absolute_errors(model: PropertyPredictor, data: PropertyData, batch_size: int = 256) -> dict[str, float]:
    """MAE per property (in its unit) of ``model`` on every molecule of ``data``."""
    total = torch.zeros(len(model.properties), dtype=torch.float64)
    for start in range(0, len(data), batch_size):
        batch = data.batch(np.arange(start, min(start + batch_size, len(data))))
        batch = {k: v.to(model.device) for k, v in batch.items()}
        total += (model.predict_batch(batch) - batch["props"]).abs().sum(0).double().cpu()
    return {k: float(total[i] / max(len(data), 1)) for i, k in enumerate(model.properties)}


#: Validation molecules of the learning curve (a fixed subset, :func:`molgen.training.data_order.fixed_subset`).
CURVE_MOLECULES = 2000


def make_evaluator(names: Sequence[str], n: int = CURVE_MOLECULES):
    """Learning-curve evaluator: MAE per property on a fixed draw of ``n`` validation molecules."""
    valid = property_data("valid", names, max_molecules=n)

    def evaluate(model: PropertyPredictor) -> dict[str, float]:
        return {f"valid_mae_{k}": v for k, v in mean_absolute_errors(model, valid).items()}

    return evaluate


def train_predictor(out: str | Path, properties: Sequence[str] = tuple(QM9_CONDITIONS),
                    model_cfg: dict[str, Any] | None = None, train_cfg: dict[str, Any] | None = None,
                    device: str = "cpu", max_molecules: int | None = None, test_molecules: int | None = None,
                    eval_molecules: int = 2000, command: str = "") -> dict[str, Any]:
    """Train (or resume, when ``out`` holds a run) the predictor on the first half and write its test MAE
    on the second half (``test_molecules``: a fixed subset of it; None: all 50,000) into the card as
    ``evaluation``. ``max_molecules`` trains on a fixed subset of the first half (tests, CPU runs).
    A resumed run keeps its saved model settings. Returns the card."""
    from ..models.checkpoint import has_train_state, read_config
    from ..models.train_state import read_train_state

    out = Path(out)
    names = check_conditions(properties)
    if has_train_state(out) and max_molecules is None:  # a resumed run keeps its training subset
        max_molecules = read_card(out).get("train_subset")
    train = property_data(HALVES[0], names, max_molecules=max_molecules)
    budget = {k: v for k, v in (train_cfg or {}).items() if k in ("max_steps", "max_minutes") and v is not None}
    if has_train_state(out):  # the saved settings win; a budget given now replaces the saved one
        saved = read_config(out, expect_model=PropertyPredictor.name)["config"]
        model = PropertyPredictor(**saved)
        if tuple(model.properties) != names:
            raise ValueError(f"the run in {out} predicts {', '.join(model.properties)}, not {', '.join(names)}")
        state, _ = read_train_state(out, tensors=False)
        cfg = {**state["train_config"], **{k: None for k in ("max_steps", "max_minutes")}, **budget}
        cfg.update({k: v for k, v in (train_cfg or {}).items() if k in ("progress",)})
    else:
        stats = target_stats(train.values.numpy().astype(np.float64), names)
        model = PropertyPredictor(properties=names, property_stats=stats, **{**DEFAULT_MODEL, **(model_cfg or {})})
        cfg = {**DEFAULT_TRAIN, **(train_cfg or {})}
    trainer = Trainer(model, train, TrainConfig(**cfg), out, device=device,
                      evaluate=make_evaluator(names, eval_molecules),
                      extra_metrics={"dataset": "qm9", "train_split": HALVES[0], "train_molecules": len(train),
                                     "train_subset": max_molecules})
    trainer.fit()
    test = property_data(HALVES[1], names, max_molecules=test_molecules).to(trainer.device)
    mae = mean_absolute_errors(trainer.ema.module, test)
    card = read_card(out)
    card["evaluation"] = {"command": command, "date": datetime.date.today().isoformat(), "test_split": HALVES[1],
                          "molecules": len(test), "test_mae": mae,
                          "units": {k: QM9_CONDITIONS[k][2] for k in names}}
    write_card(out, card)
    return card
