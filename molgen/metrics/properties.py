"""Per-molecule properties (QED, SA score, logP, molecular weight) and distribution distances.

QED: Bickerton et al. 2012 (RDKit ``QED.qed``), in [0, 1]. SA: Ertl & Schuffenhauer 2009 (RDKit
Contrib ``sascorer``), 1 (easy) to 10 (hard). logP: Wildman-Crippen (``Crippen.MolLogP``).
weight: average molecular weight in g/mol (``Descriptors.MolWt``). The names follow MOSES.
"""
from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from types import ModuleType

import numpy as np
from rdkit import Chem, RDConfig
from rdkit.Chem import QED, Crippen, Descriptors
from scipy.stats import wasserstein_distance

from molgen.chem.convert import MolLike, to_mol
from molgen.metrics._progress import in_chunks
from molgen.metrics.fingerprints import to_mols

__all__ = ["qed", "sa_score", "logp", "mol_weight", "tpsa", "PROPERTIES", "CONDITIONS", "property_table", "property_distances"]


@lru_cache(maxsize=1)
def _sascorer() -> ModuleType:
    """Import RDKit Contrib's ``sascorer`` once, without touching ``sys.path``."""
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    if not os.path.isfile(path):
        raise ImportError(f"RDKit's SA_Score contrib module was not found at {path}")
    spec = importlib.util.spec_from_file_location("molgen_rdkit_sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def qed(mol: Chem.Mol) -> float:
    """Quantitative estimate of drug-likeness, in [0, 1]."""
    return float(QED.qed(mol))


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility score, 1 (easy to make) to 10 (hard)."""
    return float(_sascorer().calculateScore(mol))


def logp(mol: Chem.Mol) -> float:
    """Wildman-Crippen octanol/water logP."""
    return float(Crippen.MolLogP(mol))


def mol_weight(mol: Chem.Mol) -> float:
    """Average molecular weight in g/mol (implicit hydrogens included)."""
    return float(Descriptors.MolWt(mol))


def tpsa(mol: Chem.Mol) -> float:
    """Topological polar surface area in A^2 (Ertl et al. 2000, RDKit ``Descriptors.TPSA``)."""
    return float(Descriptors.TPSA(mol))


PROPERTIES: dict[str, Callable[[Chem.Mol], float]] = {
    "QED": qed, "SA": sa_score, "logP": logp, "weight": mol_weight,
}

#: The properties a conditional model can be asked for (``condition={"logp": 3.5}``), RDKit-exact.
CONDITIONS: dict[str, Callable[[Chem.Mol], float]] = {
    "logp": logp, "qed": qed, "sa": sa_score, "mw": mol_weight, "tpsa": tpsa,
}
CONDITION_UNITS = {"logp": "", "qed": "", "sa": "", "mw": "g/mol", "tpsa": "A^2"}


def condition_values(molecules: Sequence[MolLike], names: Sequence[str]) -> np.ndarray:
    """(N, K) float64 values of the :data:`CONDITIONS` ``names`` per molecule (NaN where RDKit rejects one)."""
    out = np.full((len(molecules), len(names)), np.nan)
    for i, x in enumerate(molecules):
        mol = to_mol(x)
        if mol is not None:
            out[i] = [CONDITIONS[k](mol) for k in names]
    return out


def _table(molecules: Iterable[MolLike]) -> dict[str, np.ndarray]:
    mols = to_mols(molecules)
    return {name: np.array([fn(m) for m in mols], dtype=np.float64) for name, fn in PROPERTIES.items()}


def property_table(molecules: Iterable[MolLike], progress: bool | None = False, desc: str = "properties"
                   ) -> dict[str, np.ndarray]:
    """``{"QED", "SA", "logP", "weight"} -> float64 array`` with one value per molecule.

    ``progress`` shows a bar labelled ``desc`` on stderr for a long list (None: only on a terminal)."""
    if progress is False or not isinstance(molecules, Sequence):
        return _table(molecules)
    parts = in_chunks(_table, molecules, desc, progress)
    return {name: np.concatenate([p[name] for p in parts]) for name in PROPERTIES}


def property_distances(gen: Sequence[MolLike] | Mapping[str, np.ndarray],
                       ref: Sequence[MolLike] | Mapping[str, np.ndarray]) -> dict[str, float]:
    """1-D Wasserstein (earth mover's) distance between the two sets, per property, in its units.

    Either side may be molecules or a precomputed :func:`property_table`.
    """
    gen_table = gen if isinstance(gen, Mapping) else property_table(gen)
    ref_table = ref if isinstance(ref, Mapping) else property_table(ref)
    out = {}
    for name in PROPERTIES:
        if len(gen_table[name]) == 0 or len(ref_table[name]) == 0:
            raise ValueError("property distances need at least one molecule on each side")
        out[name] = float(wasserstein_distance(gen_table[name], ref_table[name]))
    return out
