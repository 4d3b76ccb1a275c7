"""Training setup and learning-curve evaluator of the autoregressive model (``ar``).

Sizes per dataset: ``molgen/configs/ar-{qm9,moses}.json``. QM9 is CPU-trainable: one core for under
an hour (a few thousand steps, hence the short EMA horizon). MOSES is sized for one GPU, where a step
costs about the same up to large batches (kernel-launch bound); on a CPU use ``--batch-size 64 --lr 5e-4``.

With ``encoded_data`` (a folder holding ``train.npz`` and ``heldout.npz``: the training split and 1,000
held-out molecules already linearised, as :class:`~molgen.models.ar.actions.EncodedSet` files) training
needs no RDKit (a bare GPU machine). Its learning curve then holds the held-out NLL only, and each
evaluation keeps its samples as action sequences, ``<run>/eval_samples/step-<N>.npz`` (with the valence
masks) and ``step-<N>-nomask.npz`` (without), which :func:`~molgen.training.saved_samples.score_saved_samples`
scores later where RDKit is.
"""
from __future__ import annotations

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
from .saved_samples import SavedSampleEvaluator, read_encoded_sets
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
    folder = Path(train_cfg["encoded_data"])
    t0 = time.perf_counter()
    enc, held_enc = read_encoded_sets(folder, EncodedSet.load, "linearised", model_cfg)
    tokens, counts = vocabulary(enc)
    largest = int(np.diff(enc.atom_ptr).max())
    model = ARModel(**{**defaults["model"], "atom_types": tokens, "max_atoms": largest, **model_cfg})
    data = ActionDataset(enc, model.atom_types, model.max_atoms, model.max_actions)
    held = ActionDataset(held_enc, model.atom_types, model.max_atoms, model.max_actions)
    metrics = {"dataset": dataset, "train_split": "train", "train_molecules": len(data),
               "train_dropped": {**data.dropped, "not_linearisable": len(enc.failed)},
               "atom_type_counts": counts, "linearise_seconds": round(time.perf_counter() - t0, 1),
               "heldout_for_curve": f"{len(held)} held-out {dataset} molecules, linearised in {folder}"}
    evaluator = SavedSampleEvaluator(lambda m, folder, step: {"heldout_nll": _heldout_nll(m, held)}, _write_actions,
                                     train_cfg.get("eval_samples") or 500)
    return TrainingSetup(model=model, data=data, train_defaults=defaults["train"], evaluate=evaluator,
                         metrics=metrics)


def _heldout_nll(model: GenerativeModel, held: ActionDataset) -> float:
    """The mean held-out NLL, nats per molecule, valence masks on."""
    assert isinstance(model, ARModel)
    return float(-model.encoded_log_likelihood(held, mask=True).mean())


def _write_actions(model: GenerativeModel, n: int, seed: int, mask: bool, path: Path, batch_size: int = 2500) -> None:
    """``n`` samples kept as action sequences (no RDKit)."""
    assert isinstance(model, ARModel)
    enc, _ = model.sample_actions(n, seed=seed, mask=mask, batch_size=min(batch_size, n))
    enc.save(path, compressed=True)


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
