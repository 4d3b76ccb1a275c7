"""What a model hands the training CLI: the model, its data, default settings and an evaluator."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..models.base import GenerativeModel
from .trainer import BatchDataset


@dataclass
class TrainingSetup:
    model: GenerativeModel
    data: BatchDataset
    train_defaults: dict[str, Any] = field(default_factory=dict)
    evaluate: Callable[[GenerativeModel], dict[str, float]] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # static facts for metrics.json (dataset, split)
