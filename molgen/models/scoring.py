"""Density scores as a table: the negative log-likelihood of each molecule under a model (exact, ELBO or
variational bound), per atom, and its percentile among the model's own test-split molecules, which is
how a score becomes an anomaly or out-of-distribution signal.

The test-split reference is the ``score_reference`` section of the checkpoint's model card: quantiles of
the test molecules' NLL (written by ``python -m benchmarks.studies.score_reference``). A percentile is
the share of those test molecules with a lower NLL (more likely) than the molecule: near 100 means less
likely than almost every test molecule.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

COLUMNS = ("smiles", "nll", "nll_per_atom", "percentile", "bound", "reason")


def _atoms(item: Any) -> tuple[str | None, int | None]:
    """(canonical SMILES, atom count) of one input, as far as RDKit can tell: heavy atoms for a graph,
    all atoms (hydrogens included) for a 3D record."""
    from ..chem.convert import to_mol, to_smiles

    if isinstance(item, tuple) and len(item) == 2:  # (atomic numbers, positions)
        return None, len(item[0])
    mol = to_mol(item) if item is not None else None  # a file's Mol is unsanitised: RDKit's form of it
    if mol is None:
        return (item if isinstance(item, str) else None), None
    with_h = any(a.GetAtomicNum() == 1 for a in mol.GetAtoms())
    n = mol.GetNumAtoms() if with_h else mol.GetNumHeavyAtoms()
    return to_smiles(mol), n


def percentile(nll: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """The percentile (0 to 100) of each NLL among a reference given by its quantiles at 0, 1, ..., 100 %."""
    q = np.asarray(quantiles, dtype=np.float64)
    levels = np.linspace(0, 100, len(q))
    out = np.interp(nll, q, levels, left=0.0, right=100.0)
    return np.where(np.isfinite(nll), out, np.nan)


def score_table(model: Any, molecules: Any, quantiles: np.ndarray | None = None, **kwargs: Any):
    """A pandas DataFrame with one row per input molecule (none dropped) and :data:`COLUMNS`: canonical
    ``smiles`` (None for 3D records), ``nll`` (nats), ``nll_per_atom`` (heavy atoms for graphs, all atoms
    for 3D records), ``percentile`` among the test-split reference (NaN without one), ``bound`` (exact,
    elbo or vlb) and ``reason`` (why a row has no score; empty where scored)."""
    import pandas as pd

    items = list(molecules) if not isinstance(molecules, (str, tuple)) else [molecules]
    three_d = getattr(molecules, "positions", None) is not None and model.likelihood_kind == "vlb"
    if hasattr(molecules, "mols") and three_d:  # a 3D SampleSet, for a 3D model
        items = list(zip(molecules.atomic_numbers, molecules.positions))
    elif hasattr(molecules, "mols"):
        items = list(molecules.mols)
    with warnings.catch_warnings():  # the reasons go into the table
        warnings.simplefilter("ignore", UserWarning)
        ll, reasons = model.log_likelihood(items if items else [], return_reasons=True, **kwargs)
    nll = -np.asarray(ll, dtype=np.float64)
    smiles, atoms = zip(*(_atoms(x) for x in items)) if items else ((), ())
    per_atom = np.array([v / a if a else np.nan for v, a in zip(nll, atoms)], dtype=np.float64)
    pct = percentile(nll, quantiles) if quantiles is not None else np.full(len(items), np.nan)
    why = [r or ("" if np.isfinite(v) else "not scored") for r, v in zip(reasons, nll)]
    return pd.DataFrame({"smiles": list(smiles), "nll": nll, "nll_per_atom": per_atom, "percentile": pct,
                         "bound": model.likelihood_kind, "reason": why}, columns=list(COLUMNS))
