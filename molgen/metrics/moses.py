"""MOSES set metrics (Polykovskiy et al., Front. Pharmacol. 2020) as pure functions.

Every function takes valid molecules, as SMILES strings or RDKit Mols (filtering out invalid
generations is the caller's job; an unparsable SMILES raises ``ValueError``). The numbers follow
MOSES' own implementation (``moses/metrics/metrics.py`` and ``utils.py``):

- fingerprints are Morgan bit vectors, radius 2, 1024 bits; Tanimoto of two empty vectors is 1;
- SNN is the mean over generated molecules of the highest Tanimoto similarity to the reference set;
- IntDiv_p is ``1 - mean_i (mean_j T_ij^p)^(1/p)`` over all ordered pairs, self-pairs included
  (for p = 1 this is ``1 - mean of all T_ij``);
- Frag / Scaf are cosine similarities of BRICS-fragment / Bemis-Murcko-scaffold SMILES counts,
  scaffolds with fewer than 2 rings being dropped; NaN when either side has no fragment/scaffold;
- Filters: no ring of 8 or more atoms, no formal charge, only C N S O F Cl Br H, and no match of the
  MCF or PAINS SMARTS on the molecule with explicit hydrogens.

Reference-side statistics (fingerprints, fragment and scaffold counts) are computed once with
:func:`moses_reference`; :mod:`molgen.references` caches them for the named references.
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from rdkit import Chem
from rdkit.Chem import FilterCatalog
from rdkit.Chem.Scaffolds import MurckoScaffold

from molgen._cache import cache_dir
from molgen.metrics._progress import in_chunks
from molgen.chem.convert import MolLike, to_mol, to_smiles
from molgen.metrics.fingerprints import (as_fingerprints, max_tanimoto, mean_power_tanimoto, morgan_fingerprints,
                                         tanimoto_matrix, to_mols)

__all__ = [
    "MolLike", "to_mols", "morgan_fingerprints", "tanimoto_matrix", "max_tanimoto",
    "fragment_counts", "scaffold_counts", "cosine_similarity",
    "MosesReference", "moses_reference",
    "snn", "frag_similarity", "scaffold_similarity", "internal_diversity", "internal_diversities",
    "filter_patterns", "filter_failure", "passes_filters", "filters_pass_rate", "unique_at_k",
]

ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})

# --------------------------------------------------------------------------------------------
# Fragments and scaffolds


def _brics_fragments(mol: Chem.Mol) -> list[str]:
    fragmented = Chem.FragmentOnBRICSBonds(mol)
    return Chem.MolToSmiles(fragmented).split(".")


def fragment_counts(molecules: Iterable[MolLike]) -> Counter[str]:
    """Counts of BRICS fragment SMILES (with their ``[n*]`` attachment points), summed over the set."""
    counts: Counter[str] = Counter()
    for mol in to_mols(molecules):
        counts.update(_brics_fragments(mol))
    return counts


def _scaffold(mol: Chem.Mol, min_rings: int) -> str | None:
    try:
        scaffold = MurckoScaffold.GetScaffoldForMol(mol)
    except (RuntimeError, ValueError):
        return None
    if scaffold.GetRingInfo().NumRings() < min_rings:
        return None
    smiles = Chem.MolToSmiles(scaffold)
    return smiles or None


def scaffold_counts(molecules: Iterable[MolLike], min_rings: int = 2) -> Counter[str]:
    """Counts of Bemis-Murcko scaffold SMILES; scaffolds with fewer than ``min_rings`` rings are dropped."""
    counts: Counter[str] = Counter()
    for mol in to_mols(molecules):
        scaffold = _scaffold(mol, min_rings)
        if scaffold is not None:
            counts[scaffold] += 1
    return counts


def cosine_similarity(counts_a: Mapping[str, float], counts_b: Mapping[str, float]) -> float:
    """Cosine similarity of two count dictionaries over the union of keys (NaN if either is empty)."""
    if not counts_a or not counts_b:
        return float("nan")
    keys = sorted(set(counts_a) | set(counts_b))
    va = np.array([counts_a.get(k, 0) for k in keys], dtype=np.float64)
    vb = np.array([counts_b.get(k, 0) for k in keys], dtype=np.float64)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


# --------------------------------------------------------------------------------------------
# Reference statistics


@dataclass(frozen=True)
class MosesReference:
    """Reference-set statistics for SNN, Frag and Scaf.

    ``fingerprints``: packed Morgan (r=2, 1024 bits) fingerprints, ``uint8 (n, 128)``;
    ``fragments`` / ``scaffolds``: BRICS fragment and (>= 2 ring) scaffold counts.
    """

    fingerprints: np.ndarray
    fragments: Counter[str]
    scaffolds: Counter[str]

    def __len__(self) -> int:
        return len(self.fingerprints)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The statistics as plain arrays (what :meth:`save` writes)."""
        return {"fingerprints": self.fingerprints,
                "fragment_keys": np.array(list(self.fragments), dtype=str),
                "fragment_counts": np.array(list(self.fragments.values()), dtype=np.int64),
                "scaffold_keys": np.array(list(self.scaffolds), dtype=str),
                "scaffold_counts": np.array(list(self.scaffolds.values()), dtype=np.int64)}

    @classmethod
    def from_arrays(cls, data: Mapping[str, np.ndarray]) -> "MosesReference":
        """Inverse of :meth:`to_arrays` (a dict or an open ``.npz`` file)."""
        return cls(
            fingerprints=data["fingerprints"],
            fragments=Counter(dict(zip(data["fragment_keys"].tolist(), data["fragment_counts"].tolist()))),
            scaffolds=Counter(dict(zip(data["scaffold_keys"].tolist(), data["scaffold_counts"].tolist()))),
        )

    def save(self, path: str | Path, digest: str = "") -> None:
        """Write to an ``.npz`` file (no pickles), atomically."""
        from .._cache import write_npz

        write_npz(path, {"digest": np.array(digest), **self.to_arrays()}, compressed=True)

    @classmethod
    def load(cls, path: str | Path) -> "MosesReference":
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            return cls.from_arrays(data)


def _summed(counts: list[Counter[str]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return total


def moses_reference(reference: Sequence[MolLike], progress: bool | None = False, desc: str = "") -> MosesReference:
    """SNN / Frag / Scaf statistics of a reference set, computed once (cache them with
    :meth:`MosesReference.to_arrays`; :mod:`molgen.references` does for the named references).

    ``progress`` shows a bar per stage (parsing, fingerprints, fragments, scaffolds) on stderr
    (None: only on a terminal); ``desc`` prefixes the bars' labels."""
    head = f"{desc}: " if desc else ""
    mols = [m for part in in_chunks(to_mols, reference, f"{head}parse", progress) for m in part]
    fps = np.concatenate(in_chunks(morgan_fingerprints, mols, f"{head}fingerprints", progress))
    fragments = _summed(in_chunks(fragment_counts, mols, f"{head}fragments", progress))
    scaffolds = _summed(in_chunks(scaffold_counts, mols, f"{head}scaffolds", progress))
    return MosesReference(fps, fragments, scaffolds)


# --------------------------------------------------------------------------------------------
# Metrics


def snn(gen: Sequence[MolLike], reference: MosesReference | np.ndarray | Sequence[MolLike]) -> float:
    """Similarity to nearest neighbour: mean over ``gen`` of the max Tanimoto to the reference.

    ``reference`` is a :class:`MosesReference`, a fingerprint array (packed ``uint8`` from
    :func:`morgan_fingerprints` or a 0/1 bit matrix), or molecules; ``gen`` is molecules or their
    packed fingerprints.
    """
    if isinstance(reference, MosesReference):
        ref_fps = reference.fingerprints
    elif isinstance(reference, np.ndarray):
        ref_fps = reference
    else:
        ref_fps = morgan_fingerprints(reference)
    gen_fps = as_fingerprints(gen)
    if len(gen_fps) == 0 or len(ref_fps) == 0:
        raise ValueError("SNN needs at least one generated and one reference molecule")
    return float(max_tanimoto(gen_fps, ref_fps, empty=1.0, n_bits=1024).mean())


def _reference_counts(reference: "MosesReference | Mapping[str, int] | Sequence[MolLike]", field: str,
                      count: "Callable[[Sequence[MolLike]], Mapping[str, int]]") -> Mapping[str, int]:
    """Counts of a reference given as precomputed stats, a count mapping, or molecules."""
    if isinstance(reference, MosesReference):
        return getattr(reference, field)
    if isinstance(reference, Mapping):
        return reference
    return count(reference)


def frag_similarity(gen: Sequence[MolLike], reference: MosesReference | Mapping[str, int] | Sequence[MolLike]) -> float:
    """Cosine similarity of BRICS fragment counts (``reference``: stats, counts, or molecules)."""
    return cosine_similarity(_reference_counts(reference, "fragments", fragment_counts), fragment_counts(gen))


def scaffold_similarity(gen: Sequence[MolLike], reference: MosesReference | Mapping[str, int] | Sequence[MolLike]) -> float:
    """Cosine similarity of Bemis-Murcko scaffold counts (>= 2 rings; ``reference`` as in Frag)."""
    return cosine_similarity(_reference_counts(reference, "scaffolds", scaffold_counts), scaffold_counts(gen))


def internal_diversity(gen: "Sequence[MolLike] | np.ndarray", p: float = 1) -> float:
    """IntDiv_p = 1 - mean_i (mean_j T_ij^p)^(1/p) over all ordered pairs of ``gen``, self-pairs included.

    This is MOSES' code (the power mean is taken per molecule, then averaged); for p = 1 it equals
    ``1 - mean(T)``. Identical molecules give 0. ``gen``: molecules or their packed fingerprints.
    """
    return internal_diversities(gen, (p,))[0]


def internal_diversities(gen: "Sequence[MolLike] | np.ndarray", ps: Sequence[float] = (1, 2)) -> list[float]:
    """:func:`internal_diversity` for several p, from one pass over the pairwise similarities."""
    fps = as_fingerprints(gen)
    if len(fps) == 0:
        raise ValueError("internal diversity of an empty set is undefined")
    return [float(1.0 - m.mean()) for m in mean_power_tanimoto(fps, ps)]


#: Where ``python -m molgen.datasets.moses fetch`` puts MOSES' filter lists (in ``cache_dir("moses")``).
FILTER_FILES = ("mcf.csv", "wehi_pains.csv")


def _filter_files() -> tuple[Path, Path]:
    folder = cache_dir("moses")
    for name in FILTER_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"MOSES file {folder / name} is missing; "
                                    "run `python -m molgen.datasets.moses fetch` first")
    return folder / FILTER_FILES[0], folder / FILTER_FILES[1]


def filter_patterns() -> tuple[list[Chem.Mol], list[Chem.Mol]]:
    """MOSES' structural alerts as RDKit query molecules: ``(mcf, pains)`` (22 and 480 patterns).

    ``mcf.csv`` has a header (``names,smarts``); ``wehi_pains.csv`` has none (``smarts,name``,
    with the SMARTS padded by spaces). The patterns are meant to be matched against molecules
    with explicit hydrogens (several use ``[H]`` / ``[#1]``). Parsed once per file version.
    """
    mcf, pains = _read_named_patterns(*_file_versions())
    return [pattern for _, pattern in mcf], [pattern for _, pattern in pains]


def _file_versions() -> tuple[tuple[Path, int, int], ...]:
    """The filter files with their versions (mtime, size): the key the parsed patterns are cached by."""
    return tuple((p, p.stat().st_mtime_ns, p.stat().st_size) for p in _filter_files())


@lru_cache(maxsize=2)
def _read_named_patterns(*files: tuple[Path, int, int]) -> tuple[tuple[tuple[str, Chem.Mol], ...], ...]:
    """``((name, pattern), ...)`` per file: MCF's names as given (``MCF7``), PAINS' ``<regId=...>``
    unwrapped (``ene_rhod_A(235)``)."""
    import pandas as pd

    mcf_table = pd.read_csv(files[0][0], dtype=str)
    pains_table = pd.read_csv(files[1][0], header=None, names=["smarts", "name"], dtype=str)
    result = []
    for table, names in ((mcf_table, mcf_table.get("names")), (pains_table, pains_table["name"])):
        patterns = []
        for i, smarts in enumerate(table["smarts"]):
            pattern = Chem.MolFromSmarts(smarts.strip())
            if pattern is None:
                raise ValueError(f"cannot parse filter SMARTS {smarts.strip()!r}")
            name = names.iloc[i] if names is not None and isinstance(names.iloc[i], str) else f"pattern {i + 1}"
            name = name.strip()
            if name.startswith("<regId=") and name.endswith(">"):
                name = name[len("<regId="):-1]
            patterns.append((name, pattern))
        result.append(tuple(patterns))
    return tuple(result)


def _alert_catalog() -> FilterCatalog.FilterCatalog:
    """MCF + PAINS patterns in one RDKit FilterCatalog (one C++ call per molecule)."""
    return _catalog_for(*_file_versions())


@lru_cache(maxsize=2)
def _catalog_for(*files: tuple[Path, int, int]) -> FilterCatalog.FilterCatalog:
    mcf, pains = _read_named_patterns(*files)
    catalog = FilterCatalog.FilterCatalog()
    for kind, table in (("MCF", mcf), ("PAINS", pains)):
        for name, pattern in table:
            catalog.AddEntry(FilterCatalog.FilterCatalogEntry(f"{kind} {name}", FilterCatalog.SmartsMatcher(pattern)))
    return catalog


def filter_failure(mol: MolLike) -> str | None:
    """Why ``mol`` fails MOSES' filter, or None when it passes: ``ring of N atoms`` (N >= 8),
    ``formal charge``, ``atom X`` (not C N S O F Cl Br H), ``MCF <name>`` / ``PAINS <name>`` (the
    first alert that matches, on the molecule with explicit hydrogens) or ``no SMILES``. The first
    reason in that order is given. Needs the fetched MOSES files."""
    (mol,) = to_mols([mol])
    rings = [len(ring) for ring in mol.GetRingInfo().AtomRings() if len(ring) >= 8]
    if rings:
        return f"ring of {max(rings)} atoms"
    if any(atom.GetFormalCharge() != 0 for atom in mol.GetAtoms()):
        return "formal charge"
    for atom in mol.GetAtoms():
        if atom.GetSymbol() not in ALLOWED_ATOMS:
            return f"atom {atom.GetSymbol()}"
    match = _alert_catalog().GetFirstMatch(Chem.AddHs(mol))
    if match is not None:
        return match.GetDescription()
    # MOSES also requires a non-empty SMILES (without stereo) that parses back.
    smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
    return None if smiles and Chem.MolFromSmiles(smiles) is not None else "no SMILES"


def passes_filters(mol: MolLike) -> bool:
    """MOSES' filter: no ring >= 8 atoms, uncharged, only C N S O F Cl Br H, no MCF/PAINS alert
    (:func:`filter_failure` says which rule a molecule breaks). Needs the fetched MOSES files."""
    return filter_failure(mol) is None


def filters_pass_rate(gen: Sequence[MolLike]) -> float:
    """Fraction of ``gen`` passing :func:`passes_filters` (needs the fetched MOSES filter lists)."""
    mols = to_mols(gen)
    if not mols:
        raise ValueError("filters_pass_rate of an empty set is undefined")
    return float(np.mean([passes_filters(mol) for mol in mols]))


def _canonical(item: MolLike) -> str | None:
    """MOSES' canonical form: isomeric SMILES of the molecule as given (a Mol is not re-sanitised)."""
    return to_smiles(to_mol(item) if isinstance(item, str) else item, isomeric=True)


def unique_at_k(smiles: Sequence[MolLike], k: int | None = None) -> float:
    """Fraction of distinct canonical SMILES among the first ``k`` molecules (all if ``k`` is None).

    As in MOSES, fewer than ``k`` molecules gives a warning and the fraction over those present;
    an invalid SMILES raises ``ValueError``.
    """
    if k is not None:
        if len(smiles) < k:
            warnings.warn(f"unique@{k} computed on only {len(smiles)} molecules")
        smiles = smiles[:k]
    if len(smiles) == 0:
        raise ValueError("unique@k of an empty set is undefined")
    canonical = {_canonical(s) for s in smiles}
    if None in canonical:
        raise ValueError("invalid molecule passed to unique_at_k")
    return len(canonical) / len(smiles)
