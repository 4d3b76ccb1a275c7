"""The train state of a run folder: the tree of tensors and JSON values that lets a run resume exactly,
as ``train_state.json`` plus safetensors shards (see :mod:`molgen.models.checkpoint` for the folder and
its manifest), and the conversion of the pickle-based ``train_state.pt`` of older versions."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as dump_safetensors

from .checkpoint import (_SHARD_RE, FORMAT, LEGACY_STATE, MANIFEST, PENDING, SHARD_BYTES, STATE_JSON, CheckpointError,
                         _check_folder, _read_checked, _read_manifest, write_checkpoint)


def _encode_tree(tree: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    """JSON for ``tree``: tensors go to ``tensors`` under their path, tuples and dicts with
    non-string keys (optimizer states) are tagged so that they come back as they were."""
    if torch.is_tensor(tree):
        if path in tensors:
            raise ValueError(f"two tensors would be stored as {path!r}")
        tensors[path] = tree.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": path}
    if isinstance(tree, dict):
        if all(isinstance(k, str) for k in tree) and not any(k.startswith("__") and k.endswith("__") for k in tree):
            return {k: _encode_tree(v, tensors, f"{path}/{k}") for k, v in tree.items()}
        return {"__items__": [[k, _encode_tree(v, tensors, f"{path}/{k}")] for k, v in tree.items()]}
    if isinstance(tree, tuple):
        return {"__tuple__": [_encode_tree(v, tensors, f"{path}/{i}") for i, v in enumerate(tree)]}
    if isinstance(tree, list):
        return [_encode_tree(v, tensors, f"{path}/{i}") for i, v in enumerate(tree)]
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot store a {type(tree).__name__} at {path!r} in a train state")


def _decode_tree(node: Any, tensors: dict[str, torch.Tensor] | None) -> Any:
    """Inverse of :func:`_encode_tree`; with ``tensors=None`` every tensor reads as None."""
    if isinstance(node, list):
        return [_decode_tree(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        return None if tensors is None else tensors[node["__tensor__"]]
    if "__tuple__" in node:
        return tuple(_decode_tree(v, tensors) for v in node["__tuple__"])
    if "__items__" in node:
        return {k: _decode_tree(v, tensors) for k, v in node["__items__"]}
    return {k: _decode_tree(v, tensors) for k, v in node.items()}


def encode_train_state(tree: dict[str, Any], shard_bytes: int = SHARD_BYTES) -> dict[str, bytes]:
    """``tree`` (nested dicts / lists of tensors and JSON values) as ``{file name: content}``:
    train_state.json and safetensors shards of at most ``shard_bytes`` of tensor data each.
    A tensor larger than a shard is split into flat parts, stored under ``name#0``, ``name#1``..."""
    tensors: dict[str, torch.Tensor] = {}
    doc = _encode_tree(tree, tensors, "")
    pieces: list[tuple[str, torch.Tensor]] = []
    split: dict[str, list[int]] = {}
    for key, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if nbytes > shard_bytes and t.numel() > 1:
            per = max(shard_bytes // t.element_size(), 1)
            flat = t.reshape(-1)
            parts = [flat[i:i + per].clone() for i in range(0, flat.numel(), per)]
            split[key] = list(t.shape)
            pieces += [(f"{key}#{i}", p) for i, p in enumerate(parts)]
        else:
            pieces.append((key, t))
    shards: list[dict[str, torch.Tensor]] = [{}]
    used = 0
    for key, t in pieces:
        nbytes = t.numel() * t.element_size()
        if shards[-1] and used + nbytes > shard_bytes:
            shards.append({})
            used = 0
        shards[-1][key] = t
        used += nbytes
    n = len(shards)
    names = [f"train_state-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    files = {name: dump_safetensors(shard) for name, shard in zip(names, shards)}
    meta = {"format": FORMAT, "shards": names, "split_tensors": split, "tree": doc}
    return {STATE_JSON: json.dumps(meta).encode(), **files}


def decode_train_state(files: dict[str, bytes], where: str = "train state") -> dict[str, Any]:
    """Inverse of :func:`encode_train_state`; damaged input is a CheckpointError."""
    try:
        meta = json.loads(files[STATE_JSON])
        names, split, doc = meta["shards"], meta["split_tensors"], meta["tree"]
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{STATE_JSON} in {where} is unreadable or truncated ({exc.__class__.__name__})") from None
    tensors: dict[str, torch.Tensor] = {}
    for name in names:
        if name not in files:
            raise CheckpointError(f"{where} lacks {name}")
        try:
            tensors.update(load_safetensors(files[name]))
        except (SafetensorError, ValueError) as exc:
            raise CheckpointError(f"{name} in {where} is truncated or corrupt ({exc})") from None
    try:
        for key, shape in split.items():
            parts = []
            while f"{key}#{len(parts)}" in tensors:
                parts.append(tensors.pop(f"{key}#{len(parts)}"))
            tensors[key] = torch.cat(parts).reshape(shape)
        return _decode_tree(doc, tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{where} does not fit together ({exc.__class__.__name__}: {exc})") from None


# --- atomic checkpoints: stage everything, write the manifest, then move into place ---------------


#: Train-state key: true when the EMA module's tensors are not in the shards but in weights.safetensors
#: of the same checkpoint (the usable weights are the EMA; storing them once saves a copy of the model).
EMA_IN_WEIGHTS = "ema_module_in_weights"


def _ema_from_weights(tree: dict[str, Any], blob: bytes | None, folder: Path) -> None:
    """Fill ``tree["ema"]`` with ``module.<name>`` tensors from the checkpoint's weights file."""
    if blob is None:
        raise CheckpointError(f"the train state in {folder} keeps its EMA in weights.safetensors, which the "
                              f"checkpoint does not list")
    try:
        weights = load_safetensors(blob)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"weights.safetensors in {folder} is unreadable ({exc.__class__.__name__})") from None
    model = tree.get("model") or {}
    if set(weights) != set(model) or any(weights[k].dtype != model[k].dtype or weights[k].shape != model[k].shape
                                         for k in weights):
        raise CheckpointError(f"weights.safetensors in {folder} is not the EMA of its train state (other names, "
                              f"shapes or dtypes): it was replaced after training")
    tree["ema"] = {**tree.get("ema", {}), **{f"module.{k}": weights[k] for k in model}}  # the model's order


def read_train_state(folder: str | Path, tensors: bool = True) -> tuple[dict[str, Any], int]:
    """The train state of a run folder and its step, after checking every file against the
    manifest (metrics.json excepted: other tools add results to it). With ``tensors=False`` only
    the JSON part (settings, step) is read. A legacy ``train_state.pt`` is read with
    ``torch.load(weights_only=True)``, which runs no code. Damage is a one-line CheckpointError."""
    folder = Path(folder)
    _check_folder(folder, "run folder")
    for attempt in range(3):  # a concurrent roll-forward may move files while we read
        pending = _read_manifest(folder / PENDING / MANIFEST)
        manifest = pending or _read_manifest(folder / MANIFEST)
        if manifest is None:
            if (folder / MANIFEST).exists():
                raise CheckpointError(f"{folder / MANIFEST} is unreadable or truncated")
            if (folder / LEGACY_STATE).exists():
                tree = load_legacy_train_state(folder / LEGACY_STATE)
                return tree, int(tree["state"]["step"])
            raise CheckpointError(f"nothing to resume in {folder} (no {MANIFEST})")
        try:
            tree = _read_tree(folder, manifest, pending is not None, tensors)
        except CheckpointError:
            if attempt < 2 and pending is not None and not (folder / PENDING / MANIFEST).exists():
                continue  # the write was finished while we read: read the new manifest
            raise
        step = int(manifest["step"])
        try:
            saved_step = int(tree["state"]["step"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{STATE_JSON} in {folder} has no step") from None
        if saved_step != step:
            raise CheckpointError(f"{folder}: {STATE_JSON} is at step {saved_step} but {MANIFEST} at step {step}")
        return tree, step
    raise CheckpointError(f"{folder} kept changing while it was read; is another run writing to it?")


def _read_tree(folder: Path, manifest: dict[str, Any], pending: bool, tensors: bool) -> Any:
    entries = manifest["files"]
    if STATE_JSON not in entries:
        raise CheckpointError(f"the {MANIFEST} of {folder} lists no {STATE_JSON}")
    files = {STATE_JSON: _read_checked(folder, STATE_JSON, entries[STATE_JSON], pending)}
    usable = {name: _read_checked(folder, name, entries[name], pending)  # the usable checkpoint, same step
              for name in ("weights.safetensors", "config.json") if name in entries}
    if tensors:
        for name in entries:
            if _SHARD_RE.match(name):
                files[name] = _read_checked(folder, name, entries[name], pending)
        tree = decode_train_state(files, str(folder))
        if isinstance(tree, dict) and tree.get(EMA_IN_WEIGHTS):
            _ema_from_weights(tree, usable.get("weights.safetensors"), folder)
        return tree
    try:
        return _decode_tree(json.loads(files[STATE_JSON])["tree"], None)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{STATE_JSON} in {folder} is unreadable ({exc.__class__.__name__})") from None


def load_legacy_train_state(path: str | Path) -> dict[str, Any]:
    """Read a ``train_state.pt`` of older versions without running code from it."""
    path = Path(path)
    try:
        tree = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # untrusted bytes: every failure is the same kind of answer
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path} is not a loadable train state ({exc.__class__.__name__}: {first})") from None
    if not isinstance(tree, dict) or not isinstance(tree.get("state"), dict) or "step" not in tree["state"]:
        raise CheckpointError(f"{path} is not a molgen train state")
    return tree


def convert_legacy_train_state(folder: str | Path) -> bool:
    """Convert ``folder/train_state.pt`` (pickle-based, older versions) to the safetensors + JSON
    train state with a manifest, and remove the .pt. The weights, config and metrics stay as they
    are. Returns False when there is nothing to convert. The trainer does this on resume; by hand:

        python -c "from molgen.models.train_state import convert_legacy_train_state as c; c('runs/edm')"
    """
    folder = Path(folder)
    legacy = folder / LEGACY_STATE
    if not legacy.exists() or (folder / MANIFEST).exists() or (folder / PENDING / MANIFEST).exists():
        return False
    tree = load_legacy_train_state(legacy)
    keep = tuple(n for n in ("weights.safetensors", "config.json", "metrics.json") if (folder / n).exists())
    write_checkpoint(folder, encode_train_state(tree), step=int(tree["state"]["step"]), keep=keep)
    legacy.unlink()
    return True
