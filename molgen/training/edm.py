"""Training EDM on QM9: the data, the defaults of ``molgen/configs/edm-qm9.json`` and the
sample-quality check that the training loop runs periodically (the learning curve).

A conditional EDM (``conditions``: QM9 DFT properties, :data:`molgen.datasets.qm9.QM9_CONDITIONS`)
trains as EDM's does, on the second half of the training split (the first half trains the property
predictor that scores it, :mod:`molgen.training.qm9_predictor`), with condition dropout
(:class:`~molgen.training.conditions.ConditionedData`) and the properties' statistics of that half."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._cache import write_npz
from ..chem.geometry import bond_orders, stability
from ..datasets.qm9 import HALVES, check_conditions, qm9_properties
from ..datasets.qm9_3d import QM9Bucketed, QM9Padded
from ..models.edm import EDM, QM9_TYPES
from .conditions import ConditionedData, condition_stats
from .setup import TrainingSetup
from .setups import default_config


def training_setup(dataset: str, model_cfg: dict[str, Any], train_cfg: dict[str, Any]) -> TrainingSetup:
    """EDM on QM9 (3D): padded or size-bucketed batches (``train_cfg["buckets"]``), the atom-count
    histogram of the training split, and the sample-quality evaluator. With ``conditions`` the data
    is the second half of the training split, each batch carrying its properties with condition dropout."""
    if dataset != "qm9":
        raise ValueError(f"edm trains on qm9 (3D); got dataset {dataset!r}")
    defaults = default_config("edm", dataset)
    cfg = {**defaults["model"], **model_cfg}
    names = check_conditions(cfg["conditions"]) if cfg.get("conditions") else ()
    split = HALVES[1] if names else "train"  # EDM: the predictor trains on the first half
    heavy_only = "H" not in cfg.get("atom_types", QM9_TYPES)
    if train_cfg.get("buckets"):  # batches of similar size: little padding, a few static shapes
        data = QM9Bucketed(split, heavy_only=heavy_only, buckets=train_cfg["buckets"])
    else:
        compile_ = train_cfg.get("compile", defaults["train"].get("compile", False))
        data = QM9Padded(split, heavy_only=heavy_only, fixed_size=bool(compile_))
    if names:
        values = qm9_properties(data.rows, names)
        cfg = {**cfg, "conditions": list(names)}
        if not cfg.get("condition_stats"):  # a resumed run keeps its own
            cfg["condition_stats"] = condition_stats(values, names)
        data = ConditionedData(data, values)
    model = EDM(**{"atom_count_hist": data.atom_count_hist.tolist(), **cfg})
    if tuple(model.atom_types) != data.atom_types:
        raise ValueError(f"model atom types {model.atom_types} do not match the data's {data.atom_types}")
    evaluator = make_evaluator(n=train_cfg.get("eval_samples"))
    return TrainingSetup(model, data, defaults["train"], evaluator, {"dataset": "qm9", "train_split": split})


def sample_quality(zs: list[np.ndarray], xs: list[np.ndarray]) -> dict[str, float | None]:
    """Atom / molecule stability (EDM's rule) and validity (the one 3D rule,
    :func:`molgen.chem.convert.mols_from_3d`) of sampled 3D molecules. Where RDKit is not installed (a
    bare GPU machine) validity is None: stability needs no RDKit, and the saved samples are scored for
    validity later with :func:`molgen.evaluate`."""
    orders = [bond_orders(z, x) for z, x in zip(zs, xs)]
    stab = [stability(z, o) for z, o in zip(zs, orders)]
    try:
        from ..chem.convert import mols_from_3d
    except ImportError:
        mols_from_3d = None
    n = max(len(zs), 1)
    valid = sum(m is not None for m in mols_from_3d(zs, xs, orders)) / n if mols_from_3d is not None else None
    return {"atom_stability": sum(s.n_stable for s in stab) / max(sum(s.n_atoms for s in stab), 1),
            "molecule_stability": sum(s.molecule_stable for s in stab) / n, "validity": valid}


def save_samples(path: Path, zs: list[np.ndarray], xs: list[np.ndarray]) -> None:
    """Keep one evaluation's samples (atomic numbers, Angstrom) as a compressed .npz, atomically."""
    n_atoms = np.array([len(z) for z in zs], dtype=np.int64)
    write_npz(path, {"n_atoms": n_atoms, "z": np.concatenate(zs).astype(np.int8),
                     "pos": np.concatenate(xs).astype(np.float32)}, compressed=True)


def load_samples(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The (atomic numbers, positions) lists written by :func:`save_samples`."""
    with np.load(path, allow_pickle=False) as f:
        cut = np.cumsum(f["n_atoms"])[:-1]
        return (np.split(f["z"].astype(np.int64), cut), np.split(f["pos"].astype(np.float64), cut))


def make_evaluator(n: int | None = None, steps: int | None = None, batch_size: int | None = None) -> Callable:
    """Evaluator for the trainer: samples n molecules (MOLGEN_EVAL_N, default 256) with the model's
    default step count (or MOLGEN_EVAL_STEPS) and returns their quality. Called with ``out_dir``
    it also writes the samples to ``out_dir/eval_samples/step-<N>.npz``."""
    n = n or int(os.environ.get("MOLGEN_EVAL_N", "256"))
    steps = steps or (int(os.environ["MOLGEN_EVAL_STEPS"]) if "MOLGEN_EVAL_STEPS" in os.environ else None)

    def evaluate(model, out_dir: Path | None = None, step: int | None = None) -> dict[str, float | None]:
        zs, xs = model.sample_arrays(n, steps=steps, seed=1234, batch_size=batch_size or n)
        result = sample_quality(zs, xs)
        result["eval_samples"] = n
        result["eval_steps"] = steps or model.default_sampling_steps
        if out_dir is not None:
            folder = Path(out_dir) / "eval_samples"
            folder.mkdir(parents=True, exist_ok=True)
            save_samples(folder / f"step-{step if step is not None else 0}.npz", zs, xs)
        return result

    return evaluate
