"""One call that evaluates generated molecules against a reference set: :func:`evaluate`.

What is computed depends on the input and the reference:

- always: validity (fragments allowed), connected validity, uniqueness, valid-and-unique, stability
  (EDM's rule plus the charge-aware molecule stability for 3D input; the charge- and
  aromaticity-aware 2D check for graphs and SMILES) and the mean QED, SA score, logP and weight;
- a reference (``"qm9"``, ``"moses"`` or a file of molecules): FCD against its comparison set and
  Wasserstein distances of the four properties; ``"qm9"`` and ``"moses"`` also give novelty
  against their training set;
- ``"moses"``: MOSES' unique@1k / @10k, SNN, Frag, Scaf (all against the MOSES test set),
  and GuacaMol's KL score and FCD score against 10,000 training molecules;
- graphs / SMILES (2D input), with any reference or none: IntDiv1 / 2 and Filters (MCF, PAINS;
  needs the fetched MOSES filter lists, else skipped with a note), as MOSES reports them.

3D input (atom types and coordinates: .xyz / 3D .sdf files, 3D :class:`~molgen.samples.SampleSet`)
is evaluated the EDM way: bonds from the geometry, the largest fragment's canonical SMILES for
uniqueness, novelty and the set metrics. Reference statistics are computed once and cached in
``cache_dir("refstats")``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rdkit
from rdkit import Chem

from .._cache import cache_dir, cached_npz, digest_strings
from ..chem.build import as_mol, canonical_smiles
from ..chem.elements import symbol
from ..chem.io import MoleculeFileError, ReadResult, read_molecules, write_smiles, write_text
from .core import (TABLE_Z, bond_orders_3d, graph_metrics, has_clash, largest_fragment_smiles, mols_from_3d,
                   stability_2d, stability_3d, training_smiles)

#: Named references; a path to a molecule file is accepted too.
REFERENCES = ("qm9", "moses")
_NO_REFERENCE = ("none", "")
_CACHE_VERSION = 1
_GUACAMOL_N_REFERENCE = 10_000
_UNIQUE_AT = (1_000, 10_000)

#: Display label and whether the value is a fraction (shown as a percentage), per metric key.
#: Labels containing ``{ref}`` name the comparison set.
METRICS: dict[str, tuple[str, bool]] = {
    "atom_stability": ("atom stability (EDM)", True),
    "molecule_stability": ("molecule stability (EDM)", True),
    "molecule_stability_charged": ("molecule stability (charge-aware)", True),
    "atom_stability_2d": ("atom stability (charge-aware, 2D)", True),
    "molecule_stability_2d": ("molecule stability (charge-aware, 2D)", True),
    "validity": ("validity", True),
    "validity_connected": ("validity (connected)", True),
    "uniqueness": ("uniqueness (of valid)", True),
    "valid_and_unique": ("valid and unique", True),
    "novelty": ("novelty (of unique, vs train)", True),
    "unique@1000": ("unique@1k", True),
    "unique@10000": ("unique@10k", True),
    "fcd": ("FCD/{ref}", False),
    "snn": ("SNN/{ref}", False),
    "frag": ("Frag/{ref}", False),
    "scaf": ("Scaf/{ref}", False),
    "intdiv1": ("IntDiv1", False),
    "intdiv2": ("IntDiv2", False),
    "filters": ("Filters (MCF, PAINS)", True),
    "kl_score": ("GuacaMol KL score (vs train)", False),
    "fcd_score": ("GuacaMol FCD score (vs train)", False),
    "qed_mean": ("QED (mean)", False),
    "sa_mean": ("SA score (mean)", False),
    "logp_mean": ("logP (mean)", False),
    "weight_mean": ("mol. weight (mean, g/mol)", False),
    "qed_w1": ("QED W1 distance/{ref}", False),
    "sa_w1": ("SA W1 distance/{ref}", False),
    "logp_w1": ("logP W1 distance/{ref}", False),
    "weight_w1": ("weight W1 distance/{ref} (g/mol)", False),
}
# property_table's names -> our key prefixes
_PROPERTY_KEYS = {"QED": "qed", "SA": "sa", "logP": "logp", "weight": "weight"}


@dataclass
class EvaluationResult:
    """Metrics of one set of molecules. Fractions are in [0, 1]; NaN where undefined."""

    metrics: dict[str, float]
    n_molecules: int
    input_kind: str                      # "3d" (atom types + coordinates) or "2d" (graphs / SMILES)
    reference: str | None = None         # "qm9", "moses", a file path, or None
    reference_label: str = ""            # how tables name the comparison set, e.g. "Test"
    n_unreadable: int = 0                # file entries that could not be read at all
    source: str | None = None            # the file evaluated, if any
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""
        return {"n_molecules": self.n_molecules, "n_unreadable": self.n_unreadable,
                "input": self.input_kind, "source": self.source, "reference": self.reference,
                "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v)
                            for k, v in self.metrics.items()},
                "notes": list(self.notes)}

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`as_dict` as JSON (atomically, creating parent folders)."""
        return write_text(path, json.dumps(self.as_dict(), indent=2) + "\n")

    def table(self) -> str:
        """The metrics as an aligned two-column text table, with notes below it."""
        kind = "3D coordinates" if self.input_kind == "3d" else "graphs / SMILES"
        head = f"{self.n_molecules} molecules ({kind})"
        if self.source:
            head += f" from {self.source}"
        head += f"; reference: {self.reference or 'none'}"
        rows = []
        for key, value in self.metrics.items():
            label, percent = METRICS.get(key, (key, False))
            label = label.format(ref=self.reference_label or "reference")
            if isinstance(value, float) and math.isnan(value):
                text = "n/a"
            else:
                text = f"{100 * value:.2f} %" if percent else f"{value:.4f}"
            rows.append((label, text))
        width = max([len(r[0]) for r in rows] + [6])
        lines = [head, "", f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 9}"]
        lines += [f"{label:<{width}}  {text:>9}" for label, text in rows]
        if self.notes:
            lines += [""] + [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


# --- inputs ----------------------------------------------------------------------------------
@dataclass
class _Input:
    kind: str
    zs: list[np.ndarray] | None = None
    xs: list[np.ndarray] | None = None
    raw: list[Any] | None = None            # 2D: Mols (possibly unsanitised), SMILES or None
    n_unreadable: int = 0
    notes: list[str] = field(default_factory=list)
    source: str | None = None

    def __len__(self) -> int:
        return len(self.zs if self.kind == "3d" else self.raw)


def _from_read_result(result: ReadResult) -> _Input:
    source = str(result.path) if result.path else None
    notes = [f"{result.n_failed} entries could not be read (first: {result.failures[0]})"] if result.n_failed else []
    if result.is_3d:
        return _Input("3d", result.atomic_numbers, result.positions, n_unreadable=result.n_failed,
                      notes=notes, source=source)
    if result.records and any(r.positions is not None and r.positions.size for r in result.records):
        notes.append("some SDF entries have 3D coordinates and some do not: evaluated as graphs")
    return _Input("2d", raw=result.mols, n_unreadable=result.n_failed, notes=notes, source=source)


def _prepare(molecules: Any) -> _Input:
    from ..samples import SampleSet

    if isinstance(molecules, (str, os.PathLike)):
        return _from_read_result(read_molecules(molecules))
    if isinstance(molecules, ReadResult):
        return _from_read_result(molecules)
    if isinstance(molecules, SampleSet):
        if molecules.positions is not None:
            return _Input("3d", list(molecules.atomic_numbers), list(molecules.positions))
        return _Input("2d", raw=list(molecules.mols))
    if isinstance(molecules, Chem.Mol):
        molecules = [molecules]
    if not isinstance(molecules, Sequence):
        raise TypeError(f"cannot evaluate a {type(molecules).__name__}: pass SMILES strings, RDKit Mols, "
                        "a SampleSet, a ReadResult or a file path")
    bad = next((x for x in molecules if x is not None and not isinstance(x, (str, Chem.Mol))), None)
    if bad is not None:
        raise TypeError(f"cannot evaluate a list holding a {type(bad).__name__}: use SMILES strings or Mols")
    return _Input("2d", raw=list(molecules))


# --- references ------------------------------------------------------------------------------
@dataclass
class _Reference:
    name: str | None                # cache key prefix (None: not cached)
    label: str                      # shown in the table
    smiles: Callable[[], list[str]]  # comparison set (valid SMILES)
    training: str | None = None     # name for core.training_smiles
    moses: bool = False             # add MOSES' and GuacaMol's set metrics


def _digest(smiles: Sequence[str]) -> str:
    return digest_strings(list(smiles))[:16]  # the 16-character key of the cache files already written


def _cached_smiles(name: str, compute: Callable[[], list[str]]) -> list[str]:
    """A SMILES list computed once and kept in ``cache_dir("refstats")`` (RDKit-version specific)."""
    path = cache_dir("refstats") / f"{name}.v{_CACHE_VERSION}.rdkit{rdkit.__version__}.smi"
    if path.exists():
        return path.read_text().split()
    smiles = compute()
    write_smiles(smiles, path)
    return smiles


def _qm9_test_smiles() -> list[str]:
    from ..datasets.qm9 import qm9_smiles

    def compute() -> list[str]:
        return [s for s in (canonical_smiles(Chem.MolFromSmiles(x)) for x in qm9_smiles("test")) if s]

    return _cached_smiles("qm9-test-smiles", compute)


def _moses_test_smiles() -> list[str]:
    from ..datasets.moses import load_moses

    return load_moses("test")


_CACHE_FILE_REFERENCES_FROM = 2000  # molecules


def _file_reference(path: Path) -> _Reference:
    result = read_molecules(path)
    inp = _from_read_result(result)
    if inp.kind == "3d":
        smiles = largest_fragment_smiles(mols_from_3d(inp.zs, inp.xs))
    else:
        smiles = [canonical_smiles(as_mol(x)) for x in inp.raw]
    valid = [s for s in smiles if s]
    if not valid:
        raise ValueError(f"the reference file {path} holds no valid molecule")
    # Statistics of a large reference file are cached (keyed by its path, checked by a digest of its
    # SMILES); a small one is cheaper to recompute than to leave a cache file behind for.
    key = ("file-" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
           if len(valid) >= _CACHE_FILE_REFERENCES_FROM else None)
    return _Reference(key, path.name, lambda: valid)


def _resolve_reference(reference: str | os.PathLike | None) -> _Reference | None:
    if reference is None or (isinstance(reference, str) and reference.lower() in _NO_REFERENCE):
        return None
    if isinstance(reference, str) and reference.lower() in REFERENCES:
        if reference.lower() == "qm9":
            return _Reference("qm9-test", "QM9 test", _qm9_test_smiles, training="qm9")
        from ..datasets.moses import moses_dir

        missing = [f for f in ("train.csv.gz", "test.csv.gz") if not (moses_dir() / f).is_file()]
        if missing:
            raise FileNotFoundError(f"the MOSES files are missing from {moses_dir()}; "
                                    "run `python -m molgen.datasets.moses fetch` first")
        return _Reference("moses-test", "Test", _moses_test_smiles, training="moses", moses=True)
    path = Path(reference)
    if path.exists():
        return _file_reference(path)
    if path.suffix or len(path.parts) > 1:
        raise MoleculeFileError(f"reference file not found: {path}")
    raise ValueError(f"unknown reference {str(reference)!r}: choose one of {', '.join(REFERENCES)}, none, "
                     "or the path of a molecule file (.sdf, .xyz, .smi, .csv)")


def _cached_arrays(name: str, digest: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays computed once per reference set, stored as ``.npz`` with the set's digest."""
    return cached_npz(cache_dir("refstats") / f"{name}.v{_CACHE_VERSION}.rdkit{rdkit.__version__}.npz", digest,
                      compute)


def _property_reference(ref: _Reference, smiles: list[str]) -> dict[str, np.ndarray]:
    from .properties import property_table

    if ref.name is None:
        return property_table(smiles)
    return _cached_arrays(f"{ref.name}.properties", _digest(smiles), lambda: property_table(smiles))


def _guacamol_train_smiles() -> list[str]:
    """GuacaMol's seeded draw of 10,000 training molecules (here from MOSES' train file), as
    distinct canonical SMILES without stereo; cached, so the train file is read only once."""
    def compute() -> list[str]:
        from ..datasets.moses import load_moses
        from .guacamol import random_subset

        subset = random_subset(load_moses("train"), _GUACAMOL_N_REFERENCE, seed=42)
        return list(dict.fromkeys(s for s in (canonical_smiles(Chem.MolFromSmiles(x)) for x in subset) if s))

    return _cached_smiles("moses-train-10k-smiles", compute)


def _guacamol_kl_reference(train: list[str]):
    from .guacamol import KLReference, kl_reference

    def compute() -> dict[str, np.ndarray]:
        ref = kl_reference(train)
        return {"descriptors": ref.descriptors, "nn_similarity": ref.nn_similarity}

    arrays = _cached_arrays("moses-train-10k.guacamol-kl", _digest(train), compute)
    return KLReference(arrays["descriptors"], arrays["nn_similarity"])


# --- evaluation ------------------------------------------------------------------------------
def _geometry_notes(inp: _Input) -> list[str]:
    notes = []
    unsupported = sorted({int(a) for z in inp.zs for a in np.unique(z)} - TABLE_Z)
    if unsupported:
        n = sum(not TABLE_Z.issuperset(np.unique(z).tolist()) for z in inp.zs)
        names = ", ".join(symbol(a) for a in unsupported)
        notes.append(f"{n} molecules contain elements without bond lengths in EDM's tables ({names}): counted invalid")
    clashes = sum(has_clash(x) for x in inp.xs)
    if clashes:
        notes.append(f"{clashes} molecules have atoms on top of each other (< 0.1 A apart): counted invalid")
    if inp.zs and not any((z == 1).any() for z in inp.zs):
        notes.append("no hydrogen atoms in the input: EDM's stability expects explicit hydrogens")
    return notes


def _structure_metrics(inp: _Input, training: frozenset[str] | None) -> tuple[dict[str, float], list[str]]:
    """Stability, validity, uniqueness, novelty; returns the metrics and the valid SMILES."""
    if inp.kind == "3d":
        orders = bond_orders_3d(inp.zs, inp.xs)
        metrics = stability_3d(inp.zs, inp.xs, orders)
        mols = mols_from_3d(inp.zs, inp.xs, orders)
        smiles = largest_fragment_smiles(mols)
        inp.notes.extend(_geometry_notes(inp))
    else:
        mols = [as_mol(x) for x in inp.raw]
        smiles = [canonical_smiles(m) for m in mols]
        # Unsanitisable Mols are checked as built; unparsable SMILES count as unstable.
        st = stability_2d([m if m is not None else (x if isinstance(x, Chem.Mol) else None)
                           for m, x in zip(mols, inp.raw)])
        metrics = {"atom_stability_2d": st["atom_stability"], "molecule_stability_2d": st["molecule_stability"]}
    metrics.update(graph_metrics(mols, smiles, training))
    return metrics, [s for s in smiles if s]


def _property_metrics(valid: list[Chem.Mol], ref: _Reference | None, ref_smiles: list[str] | None) -> dict[str, float]:
    from .properties import property_distances, property_table

    table = property_table(valid)
    out = {f"{_PROPERTY_KEYS[k]}_mean": float(v.mean()) if v.size else float("nan") for k, v in table.items()}
    if ref is not None and valid:
        dist = property_distances(table, _property_reference(ref, ref_smiles))
        out.update({f"{_PROPERTY_KEYS[k]}_w1": v for k, v in dist.items()})
    return out


def _chemnet_stats(smiles: list[str]) -> Any:
    from .fcd import chemnet_stats

    return chemnet_stats(smiles)


def _once(compute: Callable[[], Any]) -> Callable[[], Any]:
    """``compute``, called at most once (the ChemNet statistics serve FCD and GuacaMol's FCD score)."""
    box: list[Any] = []

    def get() -> Any:
        if not box:
            box.append(compute())
        return box[0]

    return get


def _fcd_metrics(gen_stats: Callable[[], Any], ref: _Reference, ref_smiles: list[str]) -> dict[str, float]:
    from .fcd import chemnet_reference, frechet_distance

    return {"fcd": frechet_distance(gen_stats(), chemnet_reference(ref_smiles, name=ref.name))}


def _similarity_metrics(valid: list[Chem.Mol], fps: np.ndarray, ref: _Reference,
                        ref_smiles: list[str]) -> dict[str, float]:
    """MOSES' SNN, Frag and Scaf against the comparison set (its statistics cached)."""
    from . import moses as mm

    stats = mm.moses_reference(ref_smiles, name=ref.name)
    return {"snn": mm.snn(fps, stats), "frag": mm.frag_similarity(valid, stats),
            "scaf": mm.scaffold_similarity(valid, stats)}


def _moses_metrics(valid_smiles: list[str], valid: list[Chem.Mol], fps: np.ndarray,
                   gen_stats: Callable[[], Any] | None, notes: list[str]) -> dict[str, float]:
    """unique@k, IntDiv, Filters, and GuacaMol's KL and FCD scores against 10,000 MOSES train molecules."""
    from . import moses as mm

    out: dict[str, float] = {}
    for k in _UNIQUE_AT:
        if len(valid_smiles) >= k:
            out[f"unique@{k}"] = mm.unique_at_k(valid_smiles, k)
        else:
            notes.append(f"unique@{k // 1000}k needs at least {k} valid molecules ({len(valid_smiles)} here): skipped")
    out["intdiv1"], out["intdiv2"] = mm.internal_diversities(fps, (1, 2))
    out["filters"] = mm.filters_pass_rate(valid)
    from .guacamol import kl_score

    train = _guacamol_train_smiles()
    unique = list(dict.fromkeys(valid_smiles))
    out["kl_score"] = kl_score(unique, _guacamol_kl_reference(train)) if len(unique) >= 2 else float("nan")
    if gen_stats is not None:
        from .fcd import chemnet_reference, frechet_distance

        out["fcd_score"] = math.exp(-0.2 * frechet_distance(gen_stats(), chemnet_reference(train, name="moses-train-10k")))
    return out


def _diversity_metrics(valid: list[Chem.Mol], fps: np.ndarray | None, notes: list[str]) -> dict[str, float]:
    """IntDiv1 / 2 and Filters: set metrics that need no reference (given for every 2D evaluation,
    as MOSES does). Filters needs the fetched MOSES filter lists; without them it is skipped with a note."""
    from . import moses as mm

    if fps is None:
        fps = mm.morgan_fingerprints(valid)
    out: dict[str, float] = {}
    out["intdiv1"], out["intdiv2"] = mm.internal_diversities(fps, (1, 2))
    try:
        out["filters"] = mm.filters_pass_rate(valid)
    except FileNotFoundError as exc:
        notes.append(f"Filters not computed: {exc}")
    return out


def evaluate(molecules: Any, reference: str | os.PathLike | None = None, fcd: bool = True) -> EvaluationResult:
    """Evaluate generated molecules.

    ``molecules``: SMILES strings and / or RDKit Mols (None for a failed sample), a
    :class:`~molgen.samples.SampleSet`, a :class:`~molgen.chem.io.ReadResult`, or the path of an
    .sdf / .xyz / .smi / .csv file. ``reference``: ``"qm9"``, ``"moses"``, the path of a molecule
    file to compare with, or None / ``"none"``. ``fcd=False`` skips the ChemNet metrics (FCD, the
    GuacaMol FCD score), the slowest part on a CPU.

    Raises :class:`~molgen.chem.io.MoleculeFileError` for an unreadable file, ValueError for an
    unknown reference or when there is nothing to evaluate, FileNotFoundError when a named
    reference's data are missing.
    """
    ref = _resolve_reference(reference)  # first, so that a bad reference fails before any work
    inp = _prepare(molecules)
    if len(inp) == 0:
        where = f" in {inp.source}" if inp.source else ""
        raise ValueError(f"no molecule could be read{where}" + (f" ({inp.notes[0]})" if inp.notes else ""))
    training = training_smiles(ref.training) if ref is not None and ref.training else None
    metrics, valid_smiles = _structure_metrics(inp, training)
    parsed = [(s, m) for s in valid_smiles if (m := Chem.MolFromSmiles(s)) is not None]
    valid_smiles, valid = [s for s, _ in parsed], [m for _, m in parsed]
    ref_smiles = ref.smiles() if ref is not None else None
    if ref is not None and len(valid) < 2:
        inp.notes.append("fewer than 2 valid molecules: set metrics against the reference skipped")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ref is not None and len(valid) >= 2:
            gen_stats = _once(lambda: _chemnet_stats(valid_smiles)) if fcd else None  # one ChemNet pass
            if gen_stats is not None:
                metrics.update(_fcd_metrics(gen_stats, ref, ref_smiles))
            from .moses import morgan_fingerprints

            fps = morgan_fingerprints(valid)  # one set of fingerprints for SNN and IntDiv
            metrics.update(_similarity_metrics(valid, fps, ref, ref_smiles))
            if ref.moses:
                metrics.update(_moses_metrics(valid_smiles, valid, fps, gen_stats, inp.notes))
        if inp.kind == "2d" and len(valid) >= 2 and not (ref is not None and ref.moses):
            metrics.update(_diversity_metrics(valid, fps if ref is not None else None, inp.notes))
        metrics.update(_property_metrics(valid, ref, ref_smiles))
    return EvaluationResult(metrics, len(inp), inp.kind, reference=None if ref is None else str(reference),
                            reference_label=ref.label if ref else "", n_unreadable=inp.n_unreadable,
                            source=inp.source, notes=inp.notes)
