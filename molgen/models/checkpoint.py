"""The checkpoint format shared by all models.

A checkpoint folder holds ``config.json`` (``{"model": name, "config": constructor kwargs}``),
``weights.safetensors`` (the weights to use; the EMA weights when training kept them), and
``metrics.json`` (what the weights reached and how). Training adds ``train_state.pt`` (raw weights,
optimiser, EMA, step, random state) so a run resumes exactly; it is not needed to use the model.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CheckpointError(ValueError):
    """A checkpoint folder is missing, truncated or for another model."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that readers see the old or the new content, never a partial one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp))
    os.chmod(tmp, 0o644)  # safetensors creates the file readable by its owner only
    os.replace(tmp, path)


def save_checkpoint(folder: str | Path, name: str, config: dict[str, Any],
                    weights: dict[str, torch.Tensor], metrics: dict[str, Any] | None = None) -> Path:
    """Write config.json, weights.safetensors and (if given) metrics.json atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(weights, folder / "weights.safetensors")
    atomic_write_text(folder / "config.json", json.dumps({"model": name, "config": config}, indent=2))
    if metrics is not None:
        atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=2))
    return folder


def read_config(folder: str | Path, expect_model: str | None = None) -> dict[str, Any]:
    """Read and check ``config.json``; raise CheckpointError with a one-line reason."""
    folder = Path(folder)
    path = folder / "config.json"
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    if not path.exists():
        raise CheckpointError(f"{folder} is not a molgen checkpoint (no config.json)")
    try:
        data = json.loads(path.read_text())
        name, config = data["model"], data["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is unreadable or truncated ({exc.__class__.__name__})") from None
    if expect_model is not None and name != expect_model:
        raise CheckpointError(f"{folder} holds a {name!r} checkpoint, not {expect_model!r}")
    return {"model": name, "config": config}


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    path = Path(folder) / "weights.safetensors"
    if not path.exists():
        raise CheckpointError(f"{folder} has no weights.safetensors")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupt ({exc})") from None


def read_metrics(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def load_state_into(module: torch.nn.Module, weights: dict[str, torch.Tensor], folder: str | Path) -> None:
    """Load weights strictly, turning shape / key mismatches into a CheckpointError."""
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"weights in {folder} do not fit this model's config: {first}") from None
