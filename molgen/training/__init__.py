"""The shared training loop (:class:`Trainer`), its settings, and the per-model setups."""
from .config import BatchDataset, TrainConfig, TrainingDiverged, TrainingInterrupted
from .setup import TrainingSetup
from .trainer import Trainer

__all__ = ["BatchDataset", "TrainConfig", "Trainer", "TrainingDiverged", "TrainingInterrupted", "TrainingSetup"]
