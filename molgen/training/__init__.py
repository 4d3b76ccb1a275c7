"""The shared training loop."""
from .setup import TrainingSetup
from .trainer import BatchDataset, TrainConfig, Trainer, TrainingDiverged, TrainingInterrupted

__all__ = ["BatchDataset", "TrainConfig", "Trainer", "TrainingDiverged", "TrainingInterrupted", "TrainingSetup"]
