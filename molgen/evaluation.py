"""One call that evaluates generated molecules against a reference set: :func:`evaluate`.

What is computed depends on the input and the reference (:mod:`molgen.references`):

- always: validity (fragments allowed), connected validity, uniqueness, valid-and-unique, stability
  (EDM's rule plus the charge-aware molecule stability for 3D input; the charge- and
  aromaticity-aware 2D check for graphs and SMILES) and the mean QED, SA score, logP and weight;
- graphs / SMILES (2D input) without a reference: IntDiv1 / 2 and Filters (MCF, PAINS; needs the
  fetched MOSES filter lists, else skipped with a note), as MOSES reports them;
- any reference (``"qm9"``, ``"moses"`` or a file of molecules): FCD, SNN, Frag and Scaf against
  its comparison set, Wasserstein distances of the four properties, and the set metrics unique@1k /
  @10k (first k valid molecules), IntDiv1 / 2 and Filters, for 2D and 3D input alike;
- a reference with a training set (``"qm9"``, ``"moses"``): novelty against it, and GuacaMol's KL
  score and FCD score against GuacaMol's seeded draw of 10,000 training molecules;
- ``"moses"``: FCD, SNN, Frag and Scaf against MOSES' scaffold test set too (``TestSF``);
  :meth:`EvaluationResult.moses_table` gives the metrics under the names of MOSES' ``get_all_metrics``.

``per_molecule=True`` also gives one row per input molecule (:attr:`EvaluationResult.per_molecule`)
from the same pass: the same validity, SMILES and stability as the set metrics.

3D input (atom types and coordinates: .xyz / 3D .sdf files, 3D :class:`~molgen.samples.SampleSet`)
is evaluated the EDM way: bonds from the geometry (:func:`molgen.chem.convert.mols_from_3d`, the same
rule as :attr:`SampleSet.validity <molgen.samples.SampleSet.validity>`), the largest fragment's
canonical SMILES for uniqueness, novelty and the set metrics. ChemNet runs once on the generated
molecules, for FCD and GuacaMol's FCD score.
"""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rdkit import Chem

from .chem.build import quiet_rdkit
from .chem.convert import mols_from_3d, to_mol, to_smiles
from .chem.elements import TABLE_Z, symbol
from .chem.geometry import has_clash
from .chem.io import ReadResult, read_molecules
from .metrics.core import (bond_orders_3d, connected, graph_metrics, invalid_reason, invalid_reason_3d,
                           largest_fragment_smiles, molecule_stabilities, stability_2d, stability_3d)
from .metrics.result import EvaluationResult
from .references import REFERENCES, Reference, resolve, showing_progress

__all__ = ["evaluate", "EvaluationResult", "REFERENCES"]

_UNIQUE_AT = (1_000, 10_000)
# property_table's names -> our key prefixes
_PROPERTY_KEYS = {"QED": "qed", "SA": "sa", "logP": "logp", "weight": "weight"}


# --- inputs ----------------------------------------------------------------------------------
@dataclass
class _Input:
    kind: str
    zs: list[np.ndarray] | None = None
    xs: list[np.ndarray] | None = None
    raw: list[Any] | None = None            # 2D: Mols (possibly unsanitised), SMILES or None
    texts: list[str] | None = None          # 2D from a SMILES / CSV file: each entry's text as written
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
    texts = result.smiles if result.format in ("smiles", "csv") else None
    return _Input("2d", raw=result.mols, texts=texts, n_unreadable=result.n_failed, notes=notes, source=source)


def _prepare(molecules: Any) -> _Input:
    from .samples import SampleSet

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


# --- metric groups -----------------------------------------------------------------------------
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


@dataclass
class _Built:
    """Per input molecule: the sanitised Mol (None where invalid), the SMILES the set metrics use
    (largest fragment for 3D input) and, for 3D input, EDM's molecule stability and bond orders."""
    mols: list[Chem.Mol | None]
    smiles: list[str | None]
    stable: list[bool] | None = None
    orders: list[np.ndarray] | None = None


def _structure_metrics(inp: _Input, training: frozenset[str] | None) -> tuple[dict[str, float], _Built]:
    """Stability, validity, uniqueness, novelty; returns the metrics and the molecules built."""
    if inp.kind == "3d":
        orders = bond_orders_3d(inp.zs, inp.xs)
        per_molecule = molecule_stabilities(inp.zs, inp.xs, orders)
        metrics = stability_3d(inp.zs, inp.xs, orders, results=per_molecule)
        mols = mols_from_3d(inp.zs, inp.xs, orders)
        built = _Built(mols, largest_fragment_smiles(mols), [r.molecule_stable for r in per_molecule], orders)
        inp.notes.extend(_geometry_notes(inp))
    else:
        mols = [to_mol(x) for x in inp.raw]
        built = _Built(mols, [to_smiles(m) for m in mols])
        # Unsanitisable Mols are checked as built; unparsable SMILES count as unstable.
        st = stability_2d([m if m is not None else (x if isinstance(x, Chem.Mol) else None)
                           for m, x in zip(mols, inp.raw)])
        metrics = {"atom_stability_2d": st["atom_stability"], "molecule_stability_2d": st["molecule_stability"]}
    metrics.update(graph_metrics(built.mols, built.smiles, training))
    return metrics, built


def _property_metrics(table: dict[str, np.ndarray], ref: Reference | None) -> dict[str, float]:
    """Means of the valid molecules' properties (``table``: their property_table) and, with a
    reference, the Wasserstein distances to its comparison set."""
    from .metrics.properties import property_distances

    out = {f"{_PROPERTY_KEYS[k]}_mean": float(v.mean()) if v.size else float("nan") for k, v in table.items()}
    if ref is not None and len(table["QED"]):
        dist = property_distances(table, ref.properties())
        out.update({f"{_PROPERTY_KEYS[k]}_w1": v for k, v in dist.items()})
    return out


def _once(compute: Callable[[], Any]) -> Callable[[], Any]:
    """``compute``, called at most once (the ChemNet statistics serve FCD and GuacaMol's FCD score)."""
    box: list[Any] = []

    def get() -> Any:
        if not box:
            box.append(compute())
        return box[0]

    return get


def _comparison_metrics(valid: list[Chem.Mol], fps: np.ndarray, gen_stats: Callable[[], Any] | None,
                        ref: Reference) -> dict[str, float]:
    """FCD, and MOSES' SNN, Frag and Scaf, against the reference's comparison set and against each
    of its further comparison sets (keys ``fcd_testsf``, ...: suffixed with that set's label)."""
    from .metrics import moses as mm

    out: dict[str, float] = {}
    for part in (ref, *ref.others):
        suffix = "" if part is ref else f"_{part.label.lower()}"
        if gen_stats is not None:
            from .metrics.fcd import frechet_distance

            out[f"fcd{suffix}"] = frechet_distance(gen_stats(), part.chemnet("comparison"))
        stats = part.moses_stats()
        out.update({f"snn{suffix}": mm.snn(fps, stats), f"frag{suffix}": mm.frag_similarity(valid, stats),
                    f"scaf{suffix}": mm.scaffold_similarity(valid, stats)})
    return out


def _set_metrics(valid_smiles: list[str] | None, valid: list[Chem.Mol], fps: np.ndarray,
                 notes: list[str]) -> dict[str, float]:
    """unique@k (with ``valid_smiles``: isomeric, as MOSES counts stereoisomers apart), IntDiv1 / 2
    and Filters: set metrics that need no reference.
    Filters needs the fetched MOSES filter lists; without them it is skipped with a note."""
    from .metrics import moses as mm

    out: dict[str, float] = {}
    for k in _UNIQUE_AT if valid_smiles is not None else ():
        if len(valid_smiles) >= k:
            out[f"unique@{k}"] = mm.unique_at_k(valid_smiles, k)
        else:
            notes.append(f"unique@{k // 1000}k needs at least {k} valid molecules ({len(valid_smiles)} here): skipped")
    out["intdiv1"], out["intdiv2"] = mm.internal_diversities(fps, (1, 2))
    try:
        out["filters"] = mm.filters_pass_rate(valid)
    except FileNotFoundError as exc:
        notes.append(f"Filters not computed: {exc}")
    return out


def _guacamol_metrics(valid_smiles: list[str], gen_stats: Callable[[], Any] | None,
                      ref: Reference) -> dict[str, float]:
    """GuacaMol's KL score (distinct molecules) and FCD score (all valid ones) against its seeded
    draw of 10,000 training molecules."""
    from .metrics.guacamol import kl_score

    unique = list(dict.fromkeys(valid_smiles))
    out = {"kl_score": kl_score(unique, ref.kl_stats()) if len(unique) >= 2 else float("nan")}
    if gen_stats is not None:
        from .metrics.fcd import frechet_distance

        out["fcd_score"] = math.exp(-0.2 * frechet_distance(gen_stats(), ref.chemnet("draw")))
    return out


def _reasons(inp: _Input, built: _Built) -> list[str]:
    """Why each invalid molecule is invalid ("" for a valid one), by the rule that rejected it."""
    out = []
    for i, (mol, smiles) in enumerate(zip(built.mols, built.smiles)):
        if mol is None and inp.kind == "3d":
            out.append(invalid_reason_3d(inp.zs[i], inp.xs[i], built.orders[i]) or "RDKit rejects it")
        elif mol is None:
            given = inp.raw[i] if inp.raw[i] is not None or inp.texts is None else inp.texts[i]
            out.append(invalid_reason(given) or "RDKit rejects it")
        else:
            out.append("" if smiles is not None else "RDKit cannot write its SMILES")
    return out


def _per_molecule(inp: _Input, built: _Built, valid_rows: list[int], table: dict[str, np.ndarray],
                  training: frozenset[str] | None) -> Any:
    """The per-molecule table (:attr:`EvaluationResult.per_molecule`) from the molecules evaluate built."""
    import pandas as pd

    n = len(inp)
    properties = {}
    for name, values in table.items():
        column = np.full(n, np.nan)
        column[valid_rows] = values
        properties[name] = column
    stable = built.stable if built.stable is not None else [pd.NA] * n
    novel = [pd.NA if s is None or training is None else s not in training for s in built.smiles]
    return pd.DataFrame({"index": np.arange(n), "smiles": [s or "" for s in built.smiles],
                         "valid": [s is not None for s in built.smiles], "connected": connected(built.mols),
                         "stable": pd.array(stable, dtype="boolean"), **properties,
                         "novel": pd.array(novel, dtype="boolean"), "reason": _reasons(inp, built)})


def evaluate(molecules: Any, reference: "str | os.PathLike | Reference | None" = None,
             fcd: bool = True, progress: bool | None = None, per_molecule: bool = False) -> EvaluationResult:
    """Evaluate generated molecules.

    ``molecules``: SMILES strings and / or RDKit Mols (None for a failed sample), a
    :class:`~molgen.samples.SampleSet`, a :class:`~molgen.chem.io.ReadResult`, or the path of an
    .sdf / .xyz / .smi / .csv file. ``reference``: ``"qm9"``, ``"moses"``, the path of a molecule
    file to compare with, a resolved :class:`~molgen.references.Reference`, or None / ``"none"``.
    ``fcd=False`` skips the ChemNet metrics (FCD, the GuacaMol FCD score), the slowest part on a CPU.
    ``progress``: bars on stderr while a reference's statistics are built on its first use (minutes
    for MOSES): True, False, or None (only when stderr is a terminal). ``per_molecule=True`` fills
    :attr:`EvaluationResult.per_molecule`: a pandas DataFrame with one row per input molecule, in
    input order (index, smiles, valid, connected, stable, QED, SA, logP, weight, novel, reason).

    Raises :class:`~molgen.chem.io.MoleculeFileError` for an unreadable file, ValueError for an
    unknown reference or when there is nothing to evaluate, FileNotFoundError when a named
    reference's data are missing.
    """
    ref = resolve(reference)  # first, so that a bad reference fails before any work
    inp = _prepare(molecules)
    if len(inp) == 0:
        where = f" in {inp.source}" if inp.source else ""
        raise ValueError(f"no molecule could be read{where}" + (f" ({inp.notes[0]})" if inp.notes else ""))
    if ref is not None:
        inp.notes.extend(ref.notes)
        if not fcd:
            inp.notes.append("FCD not computed (fcd=False)")
    from .metrics.properties import property_table

    with quiet_rdkit(), warnings.catch_warnings(), showing_progress(progress):
        warnings.simplefilter("ignore")
        training = ref.training if ref is not None else None
        metrics, built = _structure_metrics(inp, training)
        rows = [(i, s, m) for i, s in enumerate(built.smiles) if s and (m := to_mol(s)) is not None]
        valid_smiles, valid = [s for _, s, _ in rows], [m for _, _, m in rows]
        if ref is not None and len(valid) < 2:
            inp.notes.append("fewer than 2 valid molecules: set metrics against the reference skipped")
        if len(valid) >= 2 and (ref is not None or inp.kind == "2d"):
            from .metrics.fcd import chemnet_stats
            from .metrics.fingerprints import morgan_fingerprints

            fps = morgan_fingerprints(valid)  # one set of fingerprints for SNN and IntDiv
            gen_stats = _once(lambda: chemnet_stats(valid_smiles)) if fcd else None  # one ChemNet pass
            if ref is not None:
                metrics.update(_comparison_metrics(valid, fps, gen_stats, ref))
            isomeric = [to_smiles(built.mols[i], isomeric=True, largest_fragment=inp.kind == "3d") for i, _, _ in rows]
            metrics.update(_set_metrics(isomeric if ref is not None else None, valid, fps, inp.notes))
            if ref is not None and ref.has_training:
                metrics.update(_guacamol_metrics(valid_smiles, gen_stats, ref))
        table = property_table(valid)
        metrics.update(_property_metrics(table, ref))
        frame = _per_molecule(inp, built, [i for i, _, _ in rows], table, training) if per_molecule else None
    label = None if ref is None else ref.name if isinstance(reference, Reference) else str(reference)
    return EvaluationResult(metrics, len(inp), inp.kind, reference=label,
                            reference_label=ref.label if ref else "", n_unreadable=inp.n_unreadable,
                            source=inp.source, notes=inp.notes, per_molecule=frame)
