"""Model cards: the ``metrics.json`` beside a checkpoint's weights, one schema, written in one place.

A card says what the weights are and how good they are. Its top-level keys:

- training facts, written by the trainer: ``dataset``, ``train_split``, ``steps``, ``epochs``,
  ``train_seconds``, ``train_config`` and ``learning_curve``, plus what the model's training setup
  records about its data (``train_molecules``, token counts, ...);
- provenance of a shipped checkpoint: ``train_command`` and ``train_hardware`` (a string, or a list
  of strings for a run in several parts) and ``weights`` (which weights: EMA, float16, ...);
- ``evaluation``: the headline evaluation, with the ``command`` that produced it, its ``date`` and
  its numbers (``molgen.list_models()`` shows the headline metrics found in it);
- ``score_reference``: quantiles of the test split's NLL (``quantiles``, 0 to 100 %), with its
  ``command`` and ``date``, from which ``model.score`` gives percentiles;
- ``other_evaluations``: ``{name: evaluation}`` for further settings (another temperature, another
  number of diffusion steps), each with its ``command`` and ``date`` too;
- ``earlier_evaluations``: when training goes on from a checkpoint, the three sections above describe
  weights that are gone, so the trainer moves them here (:func:`retire_evaluations`), as a list of
  ``{"steps", "epochs", "evaluation", ...}``, oldest first: history, never the headline.

Older cards used other names for the same things (``split``, ``train_machine``, top-level
``evaluation_<setting>`` keys); :func:`validate_card` refuses them and names the key to use. JSON has
no NaN: non-finite numbers are written as ``null``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_text

CARD_FILE = "metrics.json"
#: Keys every card written through :func:`write_card` or by the trainer has.
REQUIRED = ("steps", "epochs", "train_config")
#: Keys a shipped checkpoint's card has in addition (``dataset`` and ``train_split`` come from the model's
#: training setup).
REQUIRED_SHIPPED = ("dataset", "train_split", "train_seconds", "train_command", "train_hardware", "weights",
                    "evaluation")
#: Keys an evaluation (``evaluation``, each of ``other_evaluations``) has.
REQUIRED_EVALUATION = ("command", "date")
#: Old key -> the key to use.
RENAMED = {"split": "train_split", "train_machine": "train_hardware", "commands": "command"}


def _problems(card: Any, shipped: bool) -> list[str]:
    if not isinstance(card, dict):
        return [f"a model card is a JSON object, not a {type(card).__name__}"]
    out = [f"{key!r} is missing" for key in (*REQUIRED, *(REQUIRED_SHIPPED if shipped else ())) if key not in card]
    out += [f"{old!r} is now {new!r}" for old, new in RENAMED.items() if old in card]
    out += [f"{key!r}: put it under 'other_evaluations' as {key.removeprefix('evaluation_')!r}"
            for key in card if key.startswith("evaluation_")]
    for key in ("train_command", "train_hardware"):
        value = card.get(key)
        if value is not None and not (isinstance(value, str) or (isinstance(value, list)
                                                                 and all(isinstance(v, str) for v in value))):
            out.append(f"{key!r} must be a string or a list of strings")
    evaluations = {k: card.get(k) for k in ("evaluation", "score_reference") if k in card}
    others = card.get("other_evaluations", {})
    if not isinstance(others, dict):
        out.append("'other_evaluations' must be an object {name: evaluation}")
        others = {}
    evaluations.update({f"other_evaluations/{name}": value for name, value in others.items()})
    earlier = card.get("earlier_evaluations", [])
    if not (isinstance(earlier, list) and all(isinstance(e, dict) and "steps" in e for e in earlier)):
        out.append("'earlier_evaluations' must be a list of objects, each with its 'steps'")
    for where, value in evaluations.items():
        if not isinstance(value, dict):
            out.append(f"{where!r} must be an object")
            continue
        out += [f"{where!r} has no {key!r}" for key in REQUIRED_EVALUATION if key not in value]
        out += [f"{where!r}: {old!r} is now {new!r}" for old, new in RENAMED.items() if old in value]
    return out


def upgrade_card(card: dict[str, Any]) -> dict[str, Any]:
    """A card of an older version in this schema: old key names renamed, top-level ``evaluation_<x>``
    moved to ``other_evaluations[x]`` (the trainer applies it to the card of a run it resumes)."""
    out: dict[str, Any] = {}
    others = dict(card.get("other_evaluations", {})) if isinstance(card.get("other_evaluations"), dict) else {}
    for key, value in card.items():
        if key.startswith("evaluation_"):
            others.setdefault(key.removeprefix("evaluation_"), value)
        elif key != "other_evaluations":
            new = RENAMED.get(key, key)
            if new not in card or new == key:
                out[new] = value
    if others:
        out["other_evaluations"] = others
    return out


#: The sections that describe one set of weights.
EVALUATION_SECTIONS = ("evaluation", "score_reference", "other_evaluations")


def retire_evaluations(card: dict[str, Any], steps: int) -> dict[str, Any]:
    """``card`` for weights at ``steps``: if it was written at another step, its evaluations (which
    measured the weights it was written with) move to ``earlier_evaluations`` with that step and epoch
    count, so that neither ``list_models`` nor ``model.score`` reports numbers of weights that are gone."""
    if card.get("steps") == steps or not any(key in card for key in EVALUATION_SECTIONS):
        return card
    out = {k: v for k, v in card.items() if k not in EVALUATION_SECTIONS}
    earlier = {"steps": card.get("steps"), "epochs": card.get("epochs"),
               **{k: card[k] for k in EVALUATION_SECTIONS if k in card}}
    out["earlier_evaluations"] = [*(card.get("earlier_evaluations") or []), earlier]
    return out


def validate_card(card: dict[str, Any], shipped: bool = False) -> None:
    """ValueError listing every way ``card`` departs from the schema (``shipped``: also the keys of
    a checkpoint that molgen ships)."""
    problems = _problems(card, shipped)
    if problems:
        raise ValueError(f"model card does not fit the schema: {'; '.join(problems)}")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def card_text(card: dict[str, Any]) -> str:
    """The text of ``metrics.json`` for ``card`` (non-finite numbers as null), unchecked: what
    :func:`card_json` writes after its check, and what ``save_pretrained`` writes for metrics a user gives."""
    return json.dumps(_finite(card), indent=2, allow_nan=False)


def card_json(card: dict[str, Any], shipped: bool = False) -> str:
    """The card as the text of ``metrics.json``, after :func:`validate_card`."""
    validate_card(card, shipped)
    return card_text(card)


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card of a checkpoint folder (``{}`` when it has none)."""
    path = Path(folder) / CARD_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def write_card(folder: str | Path, card: dict[str, Any], shipped: bool | None = None) -> Path:
    """Validate ``card`` and write it as ``folder/metrics.json`` atomically (readers see the old or the
    new card). ``shipped`` (default: whether ``folder`` is in ``molgen/pretrained``) adds the keys of a
    shipped checkpoint to the check."""
    from .base import PRETRAINED_DIR

    path = Path(folder) / CARD_FILE
    if shipped is None:
        shipped = path.resolve().parent.parent == PRETRAINED_DIR.resolve()
    atomic_write_text(path, card_json(card, shipped))
    return path


def update_card(folder: str | Path, section: str, values: dict[str, Any]) -> Path:
    """Set one evaluation of a checkpoint's card and write the card: ``section`` is ``"evaluation"``
    (the headline one), ``"other_evaluations/<name>"`` or ``"score_reference"`` (the test split's NLL
    quantiles that ``model.score`` turns into percentiles). The way studies record their results."""
    card = read_card(folder)
    if section in ("evaluation", "score_reference"):
        card[section] = values
    elif section.startswith("other_evaluations/") and section.count("/") == 1 and section.split("/")[1]:
        card.setdefault("other_evaluations", {})[section.split("/")[1]] = values
    else:
        raise ValueError(f"section must be 'evaluation', 'other_evaluations/<name>' or 'score_reference', got {section!r}")
    return write_card(folder, card)
