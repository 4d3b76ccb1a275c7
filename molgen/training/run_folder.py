"""The run folder around a checkpoint: its CSV log, recovery before a run, and the refusal to train
over weights that cannot be continued."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from tqdm import tqdm

from .._atomic import replace_atomically
from ..models.checkpoint import recover_checkpoint
from ..models.train_state import convert_legacy_train_state


def trim_log(path: Path, step: int) -> None:
    """Drop log rows past the resumed step (written after the checkpoint by a run that died)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    keep = [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step]
    if rows and len(keep) != len(rows) - 1:
        text = io.StringIO(newline="")
        csv.writer(text).writerows([rows[0], *keep])
        replace_atomically(path, lambda f: f.write(text.getvalue().encode()))

def append_csv(path: Path, row: dict[str, float]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


def refuse_message(folder: Path) -> str:
    return (f"{folder} holds trained weights (weights.safetensors) but no train state to resume from, and "
            f"training there would replace them; choose another --out folder")


def prepare_run_folder(folder: str | Path) -> None:
    """Before training in ``folder``: finish or drop a checkpoint write a crash interrupted, and
    convert a legacy pickle-based ``train_state.pt`` (loaded with ``weights_only=True``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    recover_checkpoint(folder)
    if convert_legacy_train_state(folder):
        tqdm.write(f"converted {folder}/train_state.pt to the safetensors + JSON train state (the .pt is removed)")
