"""Training setup and learning-curve evaluator of the graph VAE (``vae``).

Sizes per dataset: ``molgen/configs/vae-{qm9,moses}.json``. QM9 is sized for a CPU run of ~25 minutes;
MOSES for a GPU (bf16, large batches). The vocabulary and ``max_atoms`` come from a scan of the
training SMILES; the training set is featurised once, in parallel, and cached on disk by its full
content (:meth:`molgen.models.vae.table.GraphTable.cached`); batches are then cut from the cached arrays.

With ``encoded_data`` (a folder holding ``train.npz`` and ``heldout.npz``: featurised tables,
:meth:`~molgen.models.vae.graphs.GraphArrays.save`, e.g. from ``python -m benchmarks.gpu_burst.moses_vae_travel
unpack``) training needs no RDKit (a bare GPU machine). Its learning curve then holds the held-out negative
ELBO (``heldout_nelbo``, nats per molecule), and each evaluation keeps its decoded graphs (samples with and
without the valence masks, greedy reconstructions of the held-out molecules) for
:func:`~molgen.training.saved_samples.score_saved_samples`.
"""
from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .._cache import digest_strings
from ..chem.elements import max_valence
from ..datasets import dataset_smiles
from ..models.base import GenerativeModel
from ..models.vae import GraphVAE
from ..models.vae.graphs import GraphArrays, collate, save_decoded
from .conditions import ConditionedData, conditioned_config
from .saved_samples import TARGETS, SavedSampleEvaluator, read_encoded_sets
from .setup import TrainingSetup
from .setups import default_config

if TYPE_CHECKING:
    from ..models.vae.table import GraphTable

MIN_TOKEN_COUNT = 10  # tokens rarer than this in the training set are left out of the vocabulary


def atom_vocabulary(counts: "Counter[str] | dict[str, int]") -> list[str]:
    """The atom tokens a model trained on these token counts gets: those seen at least
    :data:`MIN_TOKEN_COUNT` times that have a valence cap, most frequent first (ties by name)."""
    return [t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if c >= MIN_TOKEN_COUNT and _has_valence(t)]


def _has_valence(token: str) -> bool:
    try:
        max_valence(token)
    except ValueError:
        return False
    return True


def training_setup(dataset: str, model_cfg: dict[str, Any], train_cfg: dict[str, Any]) -> TrainingSetup:
    """Model, featurised training set, defaults and learning-curve evaluator for ``qm9`` or ``moses``.

    The vocabulary and ``max_atoms`` come from the training split (unless ``model_cfg`` sets them).
    """
    defaults = default_config("vae", dataset)
    if train_cfg.get("encoded_data"):
        return _encoded_setup(dataset, model_cfg, train_cfg, defaults)
    from ..models.vae.featurization import cached_scan
    from ..models.vae.table import GraphTable

    t0 = time.perf_counter()
    train, holdout = dataset_split_smiles(dataset)
    digest = digest_strings(train)
    counts, largest = cached_scan(f"{dataset}-train", train, digest=digest)
    cfg = {**defaults["model"], **model_cfg}
    if "atom_types" not in cfg:
        cfg["atom_types"] = atom_vocabulary(counts)
    cfg.setdefault("max_atoms", largest)
    cfg, names, values = conditioned_config(f"{dataset}-train", train, cfg)
    model = GraphVAE(**cfg)
    table = GraphTable.cached(f"{dataset}-train", train, model.atom_types, model.max_atoms, digest=digest)
    data = ConditionedData(table, values) if names else table  # p(x | y) with condition dropout
    setup_seconds = time.perf_counter() - t0
    left_out = {t: c for t, c in counts.items() if t not in model.atom_types}
    metrics = {"dataset": dataset, "train_split": "train", "train_molecules": len(train),
               "train_not_representable": len(table.reasons),
               "atom_token_counts": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
               "tokens_left_out": left_out, "setup_seconds": round(setup_seconds, 1)}
    return TrainingSetup(model=model, data=data, train_defaults=defaults["train"],
                         evaluate=CurveEvaluator(table, holdout), metrics=metrics)


def _encoded_setup(dataset: str, model_cfg: dict[str, Any], train_cfg: dict[str, Any],
                   defaults: dict[str, dict[str, Any]]) -> TrainingSetup:
    """The setup of :func:`training_setup` from featurised tables (no RDKit, no SMILES); the model takes the
    tables' vocabulary and size limit (one error line where ``model_cfg``, e.g. from ``--init-from``, differs)."""
    folder = Path(train_cfg["encoded_data"])
    t0 = time.perf_counter()
    table, held = read_encoded_sets(folder, GraphArrays.load, "featurised", model_cfg)
    cfg = {**defaults["model"], "atom_types": list(table.tokens), "max_atoms": table.max_atoms, **model_cfg}
    if list(cfg["atom_types"]) != list(table.tokens) or int(cfg["max_atoms"]) != table.max_atoms \
            or held.tokens != table.tokens:
        raise ValueError(f"the featurised set in {folder} has atom types {', '.join(table.tokens)} and max_atoms "
                         f"{table.max_atoms}; this model has {', '.join(cfg['atom_types'])} and {cfg['max_atoms']} "
                         f"(pack the set with the model's vocabulary)")
    model = GraphVAE(**cfg)
    info_path = folder / "info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    metrics = {"dataset": dataset, "train_split": info.get("train_split", "train"), "train_molecules": len(table),
               "train_not_representable": len(table.reasons), "setup_seconds": round(time.perf_counter() - t0, 1),
               "heldout_for_curve": info.get("heldout", f"{len(held)} held-out {dataset} molecules, featurised in "
                                                          f"{folder}")}
    evaluator = SavedSampleEvaluator(HeldoutGraphs(held), _write_graphs, train_cfg.get("eval_samples") or 300)
    return TrainingSetup(model=model, data=table, train_defaults=defaults["train"], evaluate=evaluator,
                         metrics=metrics)


class HeldoutGraphs:
    """The held-out part of the VAE's learning curve without RDKit: the mean negative ELBO (nats per
    molecule) of the accepted held-out rows, and, given a folder, their greedy reconstructions
    (``step-<N>-recon.npz``) beside their own graphs (written once, :data:`~molgen.training.saved_samples.TARGETS`)."""

    def __init__(self, held: GraphArrays) -> None:
        self.held, self.rows = held, np.flatnonzero(held.status == 1)

    def __call__(self, model: GenerativeModel, folder: Path | None, step: int) -> dict[str, float]:
        assert isinstance(model, GraphVAE)
        row = {"heldout_nelbo": float(-model.table_log_likelihood(self.held, self.rows).mean())}
        if folder is not None:
            if not (folder / TARGETS).is_file():
                b = collate(self.held, self.rows)
                save_decoded(folder / TARGETS, self.held.tokens,
                             [(b["atoms"].numpy(), b["bonds"].numpy(), b["n_atoms"].numpy())])
            model.reconstruct_graphs(self.held, self.rows, folder / f"step-{step}-recon.npz")
        return row


def _write_graphs(model: GenerativeModel, n: int, seed: int, mask: bool, path: Path) -> None:
    assert isinstance(model, GraphVAE)
    model.sample_graphs(n, path, seed=seed, constrained=mask)


def dataset_split_smiles(dataset: str) -> tuple[list[str], list[str]]:
    """Training SMILES and 2,000 held-out ones in random order (for the learning curve's
    reconstruction check; empty, with a warning, if the held-out file is not installed)."""
    train = dataset_smiles(dataset, "train")
    try:
        holdout = dataset_smiles(dataset, "valid" if dataset == "qm9" else "test")
    except FileNotFoundError as exc:
        warnings.warn(f"no held-out molecules for the learning curve's reconstruction check: {exc}", stacklevel=2)
        holdout = []
    pick = np.random.default_rng(0).permutation(len(holdout))[:2000]
    return train, [holdout[i] for i in pick]


class CurveEvaluator:
    """Learning-curve metrics from a few hundred prior samples and held-out reconstructions.

    Novelty is checked against the training molecules featurised so far (all of them for a
    cached training table; ``train_featurised`` says how far it got).
    """

    def __init__(self, table: GraphTable, holdout: Sequence[str], n_samples: int = 300, n_recon: int = 100) -> None:
        self.table, self.holdout = table, list(holdout)
        self.n_samples, self.n_recon = n_samples, n_recon
        self._recon_items: list[str] | None = None

    def __call__(self, model: GenerativeModel) -> dict[str, float]:
        from ..chem.convert import canonicalize
        from ..models.vae.featurization import canonical_hash

        if not isinstance(model, GraphVAE):
            raise TypeError(f"CurveEvaluator evaluates a GraphVAE, got {type(model).__name__}")
        out = model.sample(self.n_samples, seed=0)
        valid = [s for s in out.smiles if s is not None]
        unique = set(valid)
        done = self.table.status == 1
        known = set(self.table.keys[done].tolist())
        novel = sum(canonical_hash(s) not in known for s in unique)
        if self._recon_items is None:  # featurise the held-out molecules once
            holdout = model.graphs(self.holdout)
            ok = np.flatnonzero(holdout.status == 1)[:self.n_recon]
            self._recon_items = [holdout.items[i] for i in ok]
        items = self._recon_items
        target = [canonicalize(s) for s in items]
        recon = model.reconstruct(items) if items else []
        row = {"validity": len(valid) / len(out), "uniqueness": len(unique) / max(len(valid), 1),
               "novelty": novel / max(len(unique), 1), "train_featurised": float((self.table.status != 0).mean())}
        if items:
            row["reconstruction"] = float(np.mean([a == b for a, b in zip(recon, target)]))
        return row
