"""Training setup and learning-curve evaluator of the autoregressive model (``ar``).

Sizes per dataset: ``molgen/configs/ar-{qm9,moses}.json``. QM9 is CPU-trainable: one core for under
an hour (a few thousand steps, hence the short EMA horizon). MOSES is sized for one GPU, where a step
costs about the same up to large batches (kernel-launch bound); on a CPU use ``--batch-size 64 --lr 5e-4``.

With ``encoded_data`` (a folder holding ``train.npz`` and ``heldout.npz``: the training split and 1,000
held-out molecules already linearised, as :class:`~molgen.models.ar.actions.EncodedSet` files) training
needs no RDKit (a bare GPU machine). Its learning curve then holds the held-out NLL only, and each
evaluation keeps its samples as action sequences, ``<run>/eval_samples/step-<N>.npz`` (with the valence
masks) and ``step-<N>-nomask.npz`` (without), which :func:`score_saved_samples` scores later where RDKit is.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import dataset_smiles
from ..models.ar import ARModel
from ..models.ar.actions import ActionDataset, EncodedSet, vocabulary
from ..models.base import GenerativeModel
from .data_order import fixed_subset
from .conditions import ConditionedData, conditioned_config
from .setup import TrainingSetup
from .setups import default_config


def training_setup(dataset: str, model_cfg: dict[str, Any], train_cfg: dict[str, Any]) -> TrainingSetup:
    """Model, encoded training set, defaults and a sampling evaluator for ``qm9`` or ``moses``.

    The vocabulary and ``max_atoms`` (the largest training molecule, so the model never samples sizes
    it has not seen) come from the training split unless ``model_cfg`` sets them.
    """
    defaults = default_config("ar", dataset)
    if train_cfg.get("encoded_data"):
        return _encoded_setup(dataset, model_cfg, train_cfg, defaults)
    from ..chem.convert import canonicalize
    from ..models.ar.encoding import encode_cached

    t0 = time.perf_counter()
    split = smiles = dataset_smiles(dataset, "train")
    if train_cfg.get("max_molecules"):  # a fixed subset (the conditional fine-tune on a CPU labels fewer)
        smiles = [split[k] for k in fixed_subset(len(split), train_cfg["max_molecules"])]
    enc = encode_cached(f"{dataset}-train", smiles)
    seconds = time.perf_counter() - t0
    tokens, counts = vocabulary(enc)
    largest = int(np.diff(enc.atom_ptr).max())  # the data's largest molecule bounds the support
    model_cfg, names, values = conditioned_config(f"{dataset}-train", smiles, model_cfg)
    model = ARModel(**{**defaults["model"], "atom_types": tokens, "max_atoms": largest, **model_cfg})
    data = ActionDataset(enc, model.atom_types, model.max_atoms, model.max_actions)
    if names:  # p(x | y): each molecule's properties, dropped at random (classifier-free guidance)
        data = ConditionedData(data, values[enc.source[data.index]])
    held_split = "valid" if dataset == "qm9" else "test"
    held = dataset_smiles(dataset, held_split)
    held = [held[k] for k in np.random.default_rng(0).choice(len(held), 1000, replace=False)]
    state: dict[str, Any] = {}

    def evaluate(m: GenerativeModel) -> dict[str, float]:
        assert isinstance(m, ARModel)
        if "train" not in state:  # reference set for novelty, built on first use
            state["train"] = (set(filter(None, map(canonicalize, split))) if dataset == "qm9"
                              else set(split))  # MOSES ships RDKit-canonical SMILES
            state["held"] = m.encode_molecules(held)[0]
        return sample_metrics(m, state["train"], state["held"])

    metrics = {"dataset": dataset, "train_split": "train" if not train_cfg.get("max_molecules") else
               f"train, a fixed random subset (seed 0) of {len(smiles)} molecules", "train_molecules": len(data),
               "train_dropped": {**data.dropped, "not_linearisable": len(enc.failed)},
               "atom_type_counts": counts, "linearise_seconds": round(seconds, 1),
               "heldout_for_curve": f"1000 random {dataset} {held_split} molecules (seed 0)"}
    return TrainingSetup(model=model, data=data, train_defaults=defaults["train"], evaluate=evaluate,
                         metrics=metrics)


def _encoded_setup(dataset: str, model_cfg: dict[str, Any], train_cfg: dict[str, Any],
                   defaults: dict[str, dict[str, Any]]) -> TrainingSetup:
    """The setup of :func:`training_setup` from a linearised training set (no RDKit, no SMILES)."""
    if model_cfg.get("conditions"):
        raise ValueError("--encoded-data trains without conditions (their values are computed from the SMILES "
                         "with RDKit); drop --conditions")
    folder = Path(train_cfg["encoded_data"])
    t0 = time.perf_counter()
    sets = {}
    for name in ("train", "heldout"):
        try:
            sets[name] = EncodedSet.load(folder / f"{name}.npz")
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"cannot read the linearised set {folder / name}.npz: {exc}") from None
    enc = sets["train"]
    tokens, counts = vocabulary(enc)
    largest = int(np.diff(enc.atom_ptr).max())
    model = ARModel(**{**defaults["model"], "atom_types": tokens, "max_atoms": largest, **model_cfg})
    data = ActionDataset(enc, model.atom_types, model.max_atoms, model.max_actions)
    held = ActionDataset(sets["heldout"], model.atom_types, model.max_atoms, model.max_actions)
    metrics = {"dataset": dataset, "train_split": "train", "train_molecules": len(data),
               "train_dropped": {**data.dropped, "not_linearisable": len(enc.failed)},
               "atom_type_counts": counts, "linearise_seconds": round(time.perf_counter() - t0, 1),
               "heldout_for_curve": f"{len(held)} held-out {dataset} molecules, linearised in {folder}"}
    return TrainingSetup(model=model, data=data, train_defaults=defaults["train"],
                         evaluate=SavedSampleEvaluator(held, train_cfg.get("eval_samples") or 500), metrics=metrics)


class SavedSampleEvaluator:
    """The learning curve without RDKit: the held-out NLL (nats per molecule, valence masks on), and ``n``
    samples with the masks and ``n`` without, kept in the run folder as action sequences for
    :func:`score_saved_samples`."""

    def __init__(self, held: ActionDataset, n: int, batch_size: int = 2500) -> None:
        self.held, self.n, self.batch_size = held, n, batch_size

    def __call__(self, model: GenerativeModel, out_dir: Path | None = None, step: int | None = None
                 ) -> dict[str, float]:
        assert isinstance(model, ARModel)
        row: dict[str, float] = {"heldout_nll": float(-model.encoded_log_likelihood(self.held, mask=True).mean()),
                                 "eval_samples": self.n}
        if out_dir is not None:
            folder = Path(out_dir) / "eval_samples"
            folder.mkdir(parents=True, exist_ok=True)
            for suffix, mask, seed in (("", True, 1234), ("-nomask", False, 4321)):
                enc, _ = model.sample_actions(self.n, seed=seed, mask=mask, batch_size=min(self.batch_size, self.n))
                enc.save(folder / f"step-{step if step is not None else 0}{suffix}.npz", compressed=True)
        return row


def score_saved_samples(run: Path, reference: str | None, fcd: bool = True) -> list[dict[str, Any]]:
    """Score the samples a :class:`SavedSampleEvaluator` kept in ``run`` into its learning curve (in
    ``metrics.json``, rewritten atomically): validity and uniqueness of the masked samples, with
    ``reference`` ("moses": novelty against its training set, FCD against its test set) those too, and the
    validity of the unmasked ones. Rows already scored, or without their samples, stay as they are.
    Returns the curve."""
    import json

    from ..evaluation import evaluate
    from ..models.ar.encoding import molecules_from_actions
    from ..samples import SampleSet

    path = Path(run) / "metrics.json"
    card = json.loads(path.read_text())
    for row in card.get("learning_curve", []):
        masked = Path(run) / "eval_samples" / f"step-{row['step']}.npz"
        raw = masked.with_name(f"step-{row['step']}-nomask.npz")
        if row.get("validity") is not None or not masked.is_file():
            continue
        samples = SampleSet.from_mols(molecules_from_actions(EncodedSet.load(masked)), model="ar")
        result = evaluate(samples, reference=reference, fcd=fcd).metrics
        row.update({k: result[k] for k in ("validity", "uniqueness", "novelty", "fcd") if k in result})
        if raw.is_file():
            row["validity_no_mask"] = SampleSet.from_mols(molecules_from_actions(EncodedSet.load(raw)),
                                                          model="ar").validity
        row["scored_by"] = "molgen.training.ar.score_saved_samples (RDKit, after the run)"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(card, indent=2))
    os.replace(tmp, path)
    return card.get("learning_curve", [])


def sample_metrics(model: ARModel, train: set[str], held: ActionDataset, n: int = 500) -> dict[str, float]:
    """Learning-curve metrics: validity with / without masks, uniqueness, novelty against ``train``
    (canonical SMILES), and the mean held-out NLL (nats per molecule) of ``held``."""
    s = model.sample(n, seed=1234, batch_size=n)
    valid = [x for x in s.smiles if x is not None]
    uniq = set(valid)
    raw = model.sample(n // 2, seed=4321, batch_size=n // 2, mask=False)
    nll = -model.encoded_log_likelihood(held, mask=True, batch_size=250)
    return {"validity": s.validity, "validity_no_mask": raw.validity,
            "uniqueness": len(uniq) / max(len(valid), 1),
            "novelty": len(uniq - train) / max(len(uniq), 1),
            "heldout_nll": float(nll.mean())}
