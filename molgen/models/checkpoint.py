"""The checkpoint format shared by all models.

A checkpoint folder holds ``config.json`` (``{"model": name, "config": constructor kwargs,
"weights_sha256": checksum}``), ``weights.safetensors`` (the weights to use; the EMA weights when
training kept them), and ``metrics.json`` (what the weights reached and how). Nothing in it is a
pickle: loading a folder never runs code from it.

A training run folder adds the train state, so that a run resumes exactly (not needed to use the
model): ``train_state.json`` (step, molecules seen, gradient-norm history, learning curve, training
settings, optimiser hyperparameters) and ``train_state-00001-of-0000N.safetensors`` (raw weights,
EMA weights, optimiser moments and random-number-generator states, fp32 kept fp32), sharded so that
every file stays under :data:`MAX_FILE_BYTES`. ``checkpoint.json`` (the manifest: step, and the size
and sha256 of every file of the checkpoint) is written last; see :func:`write_checkpoint` for why a
crash at any point leaves the folder at the old or the new step.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as dump_safetensors

from .._atomic import fsync_dir as _fsync_dir
from .._atomic import replace_atomically

MANIFEST = "checkpoint.json"
PENDING = ".checkpoint-pending"      # the next checkpoint while it is being written
STATE_JSON = "train_state.json"
LEGACY_STATE = "train_state.pt"      # the pickle-based train state of older versions (converted on resume)
SHARD_BYTES = 12 * 2**20             # tensors per train-state shard
MAX_FILE_BYTES = 16 * 2**20          # every file of a run folder stays under this (a transfer limit)
_SHARD_RE = re.compile(r"^train_state-\d{5}-of-\d{5}\.safetensors$")
#: temporary files of writers killed outright: ``.<name>.<random>.tmp`` (molgen._atomic), and the fixed
#: names older versions used
_TMP_NAMES = ("weights.safetensors.tmp", "config.json.tmp", "metrics.json.tmp", "checkpoint.json.tmp",
              "log.csv.tmp", "train_state.pt.tmp")
FORMAT = "molgen-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, truncated, inconsistent or for another model."""


# --- small file helpers ------------------------------------------------------------------------
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to the disk (into the pending folder of
    :func:`write_checkpoint`, whose manifest makes the whole set atomic)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def replace_file(path: Path, data: bytes) -> None:
    """Replace one file of a checkpoint folder atomically and durably (readers see the old or the new
    content, never a partial one)."""
    replace_atomically(path, lambda f: f.write(data), durable=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace a text file atomically and durably."""
    replace_file(Path(path), text.encode())


def _check_folder(folder: Path, what: str = "checkpoint folder") -> None:
    if folder.is_file():
        raise CheckpointError(f"{what} {folder} is a file, not a folder")
    if not folder.is_dir():
        raise CheckpointError(f"{what} {folder} does not exist")


# --- weights, config and metrics ----------------------------------------------------------------
def weights_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """``state`` in the safetensors format (CPU, contiguous, no shared storage)."""
    return dump_safetensors({k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()})


def checkpoint_files(name: str, config: dict[str, Any], weights: dict[str, torch.Tensor],
                     metrics: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The usable part of a checkpoint as ``{file name: content}``; config.json records the
    sha256 of weights.safetensors so that a damaged or swapped weights file is caught on load."""
    blob = weights_bytes(weights)
    files = {"weights.safetensors": blob}
    if metrics is not None:
        from .card import card_text  # card.py writes through this module: imported here, not at the top

        files["metrics.json"] = card_text(metrics).encode()
    files["config.json"] = json.dumps({"model": name, "config": config, "weights_sha256": sha256_bytes(blob)},
                                      indent=2).encode()
    return files


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    replace_file(path, weights_bytes(state))


def save_checkpoint(folder: str | Path, name: str, config: dict[str, Any],
                    weights: dict[str, torch.Tensor], metrics: dict[str, Any] | None = None) -> Path:
    """Write weights.safetensors, metrics.json (if given) and config.json, each atomically.

    config.json goes last and holds the weights' checksum, so a crash in between is reported on
    load rather than giving weights that do not match their config. (Training runs write all their
    files as one atomic checkpoint instead, :func:`write_checkpoint`.)"""
    folder = Path(folder)
    if folder.is_file():
        raise CheckpointError(f"checkpoint folder {folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    for fname, data in checkpoint_files(name, config, weights, metrics).items():
        replace_file(folder / fname, data)
    return folder


def read_config(folder: str | Path, expect_model: str | None = None) -> dict[str, Any]:
    """Read and check ``config.json``; raise CheckpointError with a one-line reason.

    Returns ``{"model": name, "config": kwargs, "weights_sha256": checksum or None}``."""
    folder = Path(folder)
    _check_folder(folder)
    path = folder / "config.json"
    if not path.exists():
        raise CheckpointError(f"{folder} is not a molgen checkpoint (no config.json)")
    try:
        data = json.loads(path.read_text())
        name, config = data["model"], data["config"]
        checksum = data.get("weights_sha256")
        if not isinstance(config, dict) or not isinstance(name, str):
            raise TypeError("model must be a name and config an object")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path} is unreadable or truncated ({exc.__class__.__name__})") from None
    if expect_model is not None and name != expect_model:
        raise CheckpointError(f"{folder} holds a {name!r} checkpoint, not {expect_model!r}")
    return {"model": name, "config": config, "weights_sha256": checksum}


def read_weights(folder: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load weights.safetensors; with ``sha256`` (from config.json) check its checksum first."""
    folder = Path(folder)
    path = folder / "weights.safetensors"
    if not path.exists():
        raise CheckpointError(f"{folder} has no weights.safetensors")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({exc.__class__.__name__})") from None
    if sha256 is not None and sha256_bytes(blob) != sha256:
        if (folder / PENDING / MANIFEST).exists():
            raise CheckpointError(f"{path} does not match the sha256 in config.json: an interrupted checkpoint "
                                  f"write; resume training in {folder} (or call molgen.models.checkpoint."
                                  f"recover_checkpoint) to finish it")
        raise CheckpointError(f"{path} is truncated or corrupt: it does not match the sha256 in config.json "
                              f"(or it was replaced without updating config.json)")
    try:
        return load_safetensors(blob)
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


def build_from_checkpoint(cls: type, folder: str | Path, name: str) -> torch.nn.Module:
    """``cls(**config)`` with the checkpoint's weights loaded (checksum checked): the one way a folder
    becomes a module. A config that does not fit ``cls`` is a one-line CheckpointError."""
    info = read_config(folder, expect_model=name)
    try:
        module = cls(**info["config"])
    except TypeError as exc:
        raise CheckpointError(f"config.json in {folder} does not fit {name}: {exc}") from None
    load_state_into(module, read_weights(folder, sha256=info.get("weights_sha256")), folder)
    return module


# --- a tree of tensors and JSON values, without pickle -------------------------------------------
def write_checkpoint(folder: str | Path, files: dict[str, bytes], step: int, keep: tuple[str, ...] = ()) -> None:
    """Replace the checkpoint in ``folder`` by ``files`` as a whole.

    Every file is first written and flushed into ``folder/.checkpoint-pending/``; the manifest
    ``checkpoint.json`` (step, size and sha256 of each file, and of the files named in ``keep``,
    which stay as they are) is written there last. That is the commit point: then the files are
    moved into place one by one, the manifest last, and the pending folder is removed. A crash
    before the commit point leaves the old checkpoint (the half-written pending folder is removed
    on the next start); a crash after it is rolled forward by :func:`recover_checkpoint`, and
    readers already see the new checkpoint (:func:`read_train_state`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    recover_checkpoint(folder)
    pending = folder / PENDING
    pending.mkdir()
    entries: dict[str, dict[str, Any]] = {}
    for name, data in files.items():
        _write_file(pending / name, data)
        entries[name] = {"bytes": len(data), "sha256": sha256_bytes(data)}
    for name in keep:
        data = (folder / name).read_bytes()
        entries[name] = {"bytes": len(data), "sha256": sha256_bytes(data)}
    manifest = {"format": FORMAT, "step": int(step), "files": entries}
    _write_file(pending / (MANIFEST + ".tmp"), json.dumps(manifest, indent=2).encode())
    os.replace(pending / (MANIFEST + ".tmp"), pending / MANIFEST)
    _fsync_dir(pending)
    _commit(folder)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict) or "step" not in data:
            return None
        return data
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _commit(folder: Path) -> None:
    pending = folder / PENDING
    manifest = _read_manifest(pending / MANIFEST)
    if manifest is None:  # written before the commit point: the old checkpoint stands
        shutil.rmtree(pending, ignore_errors=True)
        return
    for name in manifest["files"]:
        if (pending / name).exists():
            os.replace(pending / name, folder / name)
    os.replace(pending / MANIFEST, folder / MANIFEST)
    _fsync_dir(folder)
    shutil.rmtree(pending, ignore_errors=True)
    _remove_orphans(folder, manifest)


def _remove_orphans(folder: Path, manifest: dict[str, Any]) -> None:
    for path in folder.iterdir():
        if _SHARD_RE.match(path.name) and path.name not in manifest["files"]:
            path.unlink(missing_ok=True)


def recover_checkpoint(folder: str | Path) -> None:
    """Bring ``folder`` back to one consistent checkpoint after a crash: finish a committed write,
    drop a half-written one and temporary files left by a killed writer. Safe to call any time
    (no-op on a tidy folder); the trainer calls it on start."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for name in _TMP_NAMES:
        (folder / name).unlink(missing_ok=True)
    for path in folder.glob(".*.tmp"):
        path.unlink(missing_ok=True)
    if (folder / PENDING).exists():
        _commit(folder)
    manifest = _read_manifest(folder / MANIFEST)
    if manifest is not None:
        _remove_orphans(folder, manifest)


def has_train_state(folder: str | Path) -> bool:
    """Whether ``folder`` holds a train state to resume from (new format or a legacy .pt)."""
    folder = Path(folder)
    return (folder / MANIFEST).exists() or (folder / PENDING / MANIFEST).exists() or (folder / LEGACY_STATE).exists()


def _read_checked(folder: Path, name: str, entry: dict[str, Any], pending: bool) -> bytes:
    """A file of the checkpoint, checked against its manifest entry; while a committed write is
    rolled forward (``pending``), a file not yet moved into place is read from the pending folder."""
    for path in ((folder / PENDING / name, folder / name) if pending else (folder / name,)):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        if sha256_bytes(data) != entry.get("sha256"):
            raise CheckpointError(f"{folder / name} does not match {MANIFEST} (sha256): the run folder is damaged "
                                  f"or was changed by hand")
        return data
    raise CheckpointError(f"{folder} lacks {name}, listed in its {MANIFEST}")
