"""Which training setup serves which model, and the per-dataset defaults in ``molgen/configs``.

Each model's setup lives in ``molgen.training.<model>`` as ``training_setup(dataset, model_cfg, train_cfg)
-> TrainingSetup``; the models themselves import neither training nor datasets. The defaults of a
model on a dataset are ``molgen/configs/<model>-<dataset>.json``: ``{"model": constructor arguments,
"train": TrainConfig settings}``, the same format as ``python -m molgen.train --config``.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable

from .setup import TrainingSetup

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
Setup = Callable[[str, dict[str, Any], dict[str, Any]], TrainingSetup]
#: model name -> its setup, or the module whose ``training_setup`` it is (imported when first needed)
_SETUPS: dict[str, str | Setup] = {"ar": "molgen.training.ar", "vae": "molgen.training.vae",
                                   "edm": "molgen.training.edm"}


def register_setup(model: str, setup: Setup) -> Setup:
    """Make ``setup(dataset, model_cfg, train_cfg) -> TrainingSetup`` the way to train ``model`` (a model
    registered with :func:`molgen.models.register`); returns ``setup``."""
    _SETUPS[model] = setup
    return setup


def config_path(model: str, dataset: str) -> Path:
    return CONFIG_DIR / f"{model}-{dataset}.json"


def trainable_datasets(model: str) -> list[str]:
    """The datasets that ``model`` has a default config for."""
    return sorted(p.stem.partition("-")[2] for p in CONFIG_DIR.glob(f"{model}-*.json"))


def default_config(model: str, dataset: str) -> dict[str, dict[str, Any]]:
    """``{"model": {...}, "train": {...}}`` from ``molgen/configs/<model>-<dataset>.json``; a ValueError
    names the datasets there are defaults for."""
    path = config_path(model, dataset)
    if not path.is_file():
        choices = ", ".join(trainable_datasets(model)) or "none"
        raise ValueError(f"no {model} training config for dataset {dataset!r}; choose from {choices}")
    data = json.loads(path.read_text())
    return {"model": dict(data.get("model", {})), "train": dict(data.get("train", {}))}


def training_setup(model: str, dataset: str, model_cfg: dict[str, Any], train_cfg: dict[str, Any]) -> TrainingSetup:
    """The model, data, default settings and learning-curve evaluator for training ``model`` on ``dataset``;
    ``model_cfg`` / ``train_cfg`` override the defaults of ``default_config``."""
    if model not in _SETUPS:
        raise ValueError(f"no training setup for model {model!r}; choose from {', '.join(sorted(_SETUPS))}")
    setup = _SETUPS[model]
    if isinstance(setup, str):
        setup = _SETUPS[model] = importlib.import_module(setup).training_setup
    return setup(dataset, model_cfg, train_cfg)
