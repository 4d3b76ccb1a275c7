"""Validity, uniqueness, novelty and stability: pure functions over Mols, SMILES or 3D structures.

Conventions. A *molecule* argument is an RDKit Mol, a SMILES string or None (an invalid sample).
Fractions are in [0, 1]; a fraction over an empty set is NaN. SMILES are compared as canonical
non-isomeric RDKit SMILES (:func:`molgen.chem.convert.to_smiles`' default, as GuacaMol does), so
stereo variants count as one molecule.

For 3D structures (atomic numbers and coordinates in Angstrom) the metrics follow EDM
(Hoogeboom et al. 2022): bonds come from EDM's bond-length tables (:func:`molgen.chem.geometry.bond_orders`),
a molecule is valid by the one rule of :func:`molgen.chem.convert.mols_from_3d` (RDKit sanitises the
Mol built from them, fragments allowed, every element in the tables, no clash), and the largest
fragment's canonical SMILES is used for uniqueness and novelty.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from rdkit import Chem

from ..chem.build import is_connected, mol_from_graph, quiet_rdkit
from ..chem.convert import MolLike, mols_from_3d, to_mol, to_smiles
from ..chem.elements import TABLE_Z, symbol
from ..chem.io import INVALID_SMILES
from ..chem.geometry import (CHARGE_BY_Z_VALENCE, CLASH_DISTANCE, NOT_ALLOWED, Stability, bond_orders, has_clash,
                             stability)


def _fraction(count: int, total: int) -> float:
    return count / total if total else float("nan")


# --- 2D: molecules and SMILES ---------------------------------------------------------------
def to_canonical(molecules: Sequence[MolLike], largest_fragment: bool = False) -> list[str | None]:
    """Canonical non-isomeric SMILES per molecule (None where invalid).

    With ``largest_fragment`` only the largest fragment is kept (EDM's convention).
    """
    return [to_smiles(to_mol(x), largest_fragment=largest_fragment) for x in molecules]


def validity(molecules: Sequence[MolLike]) -> float:
    """Fraction of molecules that RDKit sanitises (SMILES: that parse); fragments allowed."""
    return _fraction(sum(to_mol(x) is not None for x in molecules), len(molecules))


def validity_connected(molecules: Sequence[MolLike]) -> float:
    """Fraction of molecules that sanitise and are a single fragment."""
    flags = connected([to_mol(x) for x in molecules])
    return _fraction(sum(flags), len(flags))


def connected(mols: Sequence[Chem.Mol | None]) -> list[bool]:
    """Per sanitised Mol (None where invalid): valid and a single fragment."""
    return [m is not None and is_connected(m) for m in mols]


def _sanitize_error(mol: Chem.Mol) -> str:
    """RDKit's message for why ``mol`` does not sanitise ("" if it does)."""
    m = Chem.Mol(mol)
    try:
        with quiet_rdkit():
            Chem.SanitizeMol(m)
    except Exception as exc:  # RDKit raises several exception types for bad chemistry
        return str(exc).strip() or type(exc).__name__
    return ""


def invalid_reason(x: MolLike) -> str:
    """Why :func:`~molgen.chem.convert.to_mol` rejects ``x`` (a SMILES, a Mol or None), in words;
    "" when it does not. This explains the one validity rule, it is not a second one."""
    if x is None:
        return "no molecule"
    if isinstance(x, str):
        if not x:
            return "empty SMILES"
        if x == INVALID_SMILES:
            return f"an invalid sample (written as {INVALID_SMILES})"
        with quiet_rdkit():
            mol = Chem.MolFromSmiles(x, sanitize=False)
        if mol is None:
            return "RDKit cannot parse the SMILES"
        x = mol
    error = _sanitize_error(x)
    return error and f"RDKit rejects it: {error}"


def invalid_reason_3d(atomic_numbers: np.ndarray, positions: np.ndarray, order: np.ndarray) -> str:
    """Which condition of :func:`~molgen.chem.convert.mols_from_3d` (the one 3D-validity rule) a
    molecule fails, in words; "" when it passes. ``order``: its EDM bond-order matrix."""
    z = np.asarray(atomic_numbers, dtype=np.int64)
    if z.size == 0:
        return "no atoms"
    outside = sorted(set(z.tolist()) - TABLE_Z)
    if outside:
        return f"no bond lengths in EDM's tables for {', '.join(symbol(a) for a in outside)}"
    if has_clash(np.asarray(positions, dtype=np.float64)):
        return f"atoms closer than {CLASH_DISTANCE} A"
    error = _sanitize_error(mol_from_graph(z, order))
    return error and f"RDKit rejects the bonds from EDM's tables: {error}"


def _canonical_or_given(molecules: Sequence[MolLike], canonical: bool) -> list[str | None]:
    if canonical:
        return [s if isinstance(s, str) and s else None for s in molecules]
    return to_canonical(molecules)


def uniqueness(molecules: Sequence[MolLike], canonical: bool = False) -> float:
    """Distinct valid molecules / valid molecules (by canonical SMILES).

    With ``canonical=True`` the inputs are taken to be canonical SMILES already (None for
    invalid) and compared as strings, which skips re-parsing.
    """
    smiles = [s for s in _canonical_or_given(molecules, canonical) if s is not None]
    return _fraction(len(set(smiles)), len(smiles))


def novelty(molecules: Sequence[MolLike], training: Collection[str], canonical: bool = False) -> float:
    """Distinct valid molecules not in ``training`` / distinct valid molecules.

    ``training`` holds canonical non-isomeric SMILES (e.g. :func:`molgen.references.training_smiles`); inputs as in
    :func:`uniqueness`. This is MOSES' and EDM's definition, and molgen's only novelty: NaN when
    there is no valid molecule (as every fraction here), never an error.
    """
    unique = {s for s in _canonical_or_given(molecules, canonical) if s is not None}
    train = training if isinstance(training, (set, frozenset)) else set(training)
    return _fraction(len(unique - train), len(unique))


def _atoms_stable_2d(mol: Chem.Mol) -> np.ndarray:
    """Per-atom stability of one Mol: kekulised bond orders plus all hydrogens against the
    valences allowed for the atom's formal charge (no radicals)."""
    m = Chem.Mol(mol)
    m.UpdatePropertyCache(strict=False)
    try:
        with quiet_rdkit():
            Chem.Kekulize(m, clearAromaticFlags=True)
    except Exception:  # a non-kekulisable aromatic system keeps 1.5 bond orders: those atoms fail
        pass
    n = m.GetNumAtoms()
    valence = np.zeros(n)
    bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), b.GetBondTypeAsDouble())
                      for b in m.GetBonds()]).reshape(-1, 3)
    np.add.at(valence, bonds[:, 0].astype(np.int64), bonds[:, 2])
    np.add.at(valence, bonds[:, 1].astype(np.int64), bonds[:, 2])
    atoms = m.GetAtoms()
    valence += np.array([a.GetTotalNumHs() for a in atoms], dtype=np.float64)
    z = np.array([a.GetAtomicNum() for a in atoms], dtype=np.int64)
    charge = np.array([a.GetFormalCharge() for a in atoms], dtype=np.int64)
    radicals = np.array([a.GetNumRadicalElectrons() for a in atoms], dtype=np.int64)
    whole = (valence == np.round(valence)) & (valence >= 0) & (valence < CHARGE_BY_Z_VALENCE.shape[1])
    v = np.where(whole, valence, 0).astype(np.int64)
    implied = CHARGE_BY_Z_VALENCE[np.clip(z, 0, CHARGE_BY_Z_VALENCE.shape[0] - 1), v]
    return whole & (implied != NOT_ALLOWED) & (implied == charge) & (radicals == 0)


def stability_2d(mols: Sequence[MolLike]) -> dict[str, float]:
    """Charge- and aromaticity-aware stability of molecular graphs.

    An atom is stable when the sum of its kekulised bond orders and its hydrogens (explicit and
    implicit) is a valence allowed for its formal charge (C 4; N 3, N+ 4, N- 2; O 2, O- 1, O+ 3;
    ... see :data:`molgen.chem.elements.CHARGED_VALENCES`) and it has no unpaired electron.
    Molecules need not be sanitisable: an unsanitisable Mol is checked as built. Returns
    ``atom_stability`` (pooled over the atoms of all readable molecules, as given: implicit
    hydrogens count towards valences, not as atoms) and
    ``molecule_stability`` (all atoms stable; None and unparsable SMILES count as unstable).
    """
    n_atoms = n_stable = n_mol_stable = 0
    for x in mols:
        m = to_mol(x) if isinstance(x, str) else x  # an unparsable SMILES is no molecule at all
        if m is None or m.GetNumAtoms() == 0:
            continue
        ok = _atoms_stable_2d(m)
        n_atoms += ok.size
        n_stable += int(ok.sum())
        n_mol_stable += bool(ok.all())
    return {"atom_stability": _fraction(n_stable, n_atoms),
            "molecule_stability": _fraction(n_mol_stable, len(mols))}


# --- 3D: atom types and coordinates ---------------------------------------------------------
def _check_3d(atomic_numbers_list: Sequence, positions_list: Sequence) -> None:
    if len(atomic_numbers_list) != len(positions_list):
        raise ValueError(f"{len(atomic_numbers_list)} atom-type arrays for {len(positions_list)} coordinate arrays")


def bond_orders_3d(atomic_numbers_list: Sequence[np.ndarray],
                   positions_list: Sequence[np.ndarray]) -> list[np.ndarray]:
    """EDM bond-order matrices, one per molecule (see :func:`molgen.chem.geometry.bond_orders`)."""
    _check_3d(atomic_numbers_list, positions_list)
    return [bond_orders(np.asarray(z), np.asarray(x)) for z, x in zip(atomic_numbers_list, positions_list)]


def molecule_stabilities(atomic_numbers_list: Sequence[np.ndarray], positions_list: Sequence[np.ndarray],
                         orders: Sequence[np.ndarray] | None = None) -> list[Stability]:
    """EDM's :func:`~molgen.chem.geometry.stability` of each molecule (``.molecule_stable``: all its
    atoms stable); ``orders`` as in :func:`stability_3d`."""
    if orders is None:
        orders = bond_orders_3d(atomic_numbers_list, positions_list)
    _check_3d(atomic_numbers_list, orders)
    return [stability(np.asarray(z), o) for z, o in zip(atomic_numbers_list, orders)]


def stability_3d(atomic_numbers_list: Sequence[np.ndarray], positions_list: Sequence[np.ndarray],
                 orders: Sequence[np.ndarray] | None = None,
                 results: Sequence[Stability] | None = None) -> dict[str, float]:
    """EDM's atom and molecule stability from coordinates (Angstrom), plus the charge-aware variant.

    ``atom_stability`` is pooled over all atoms of all molecules; ``molecule_stability`` is the
    fraction of molecules whose atoms are all stable (formal charges ignored, as in EDM);
    ``molecule_stability_charged`` lets atoms take charged valences (N+ with 4 bonds, O- with 1,
    ...) whose implied charges sum to zero. ``orders`` (from :func:`bond_orders_3d`) skips
    recomputing the bonds; ``results`` (from :func:`molecule_stabilities`) the stability itself.
    """
    if results is None:
        results = molecule_stabilities(atomic_numbers_list, positions_list, orders)
    n_atoms = sum(r.n_atoms for r in results)
    return {"atom_stability": _fraction(sum(r.n_stable for r in results), n_atoms),
            "molecule_stability": _fraction(sum(r.molecule_stable for r in results), len(results)),
            "molecule_stability_charged": _fraction(sum(r.charge_aware_stable for r in results), len(results))}


def largest_fragment_smiles(mols: Sequence[Chem.Mol | None]) -> list[str | None]:
    """Canonical non-isomeric SMILES of each sanitised Mol's largest fragment (None stays None)."""
    return [to_smiles(m, largest_fragment=True) for m in mols]


def edm_metrics(atomic_numbers_list: Sequence[np.ndarray], positions_list: Sequence[np.ndarray],
                training: Collection[str] | None = None) -> dict[str, float]:
    """EDM's metrics of 3D molecules: stability (both variants), validity, connected validity,
    uniqueness (distinct / valid), valid-and-unique (distinct / all) and, with ``training``
    canonical SMILES, novelty (distinct not in training / distinct)."""
    orders = bond_orders_3d(atomic_numbers_list, positions_list)
    out = stability_3d(atomic_numbers_list, positions_list, orders)
    mols = mols_from_3d(atomic_numbers_list, positions_list, orders)
    out.update(graph_metrics(mols, largest_fragment_smiles(mols), training))
    return out


def graph_metrics(mols: Sequence[Chem.Mol | None], smiles: Sequence[str | None],
                  training: Collection[str] | None = None) -> dict[str, float]:
    """Validity, connected validity, uniqueness, valid-and-unique and novelty from sanitised Mols
    (None where invalid) and their canonical SMILES (the one used for uniqueness)."""
    n = len(mols)
    valid = [s for s in smiles if s is not None]
    out = {"validity": _fraction(len(valid), n),
           "validity_connected": _fraction(sum(connected(mols)), n),
           "uniqueness": uniqueness(smiles, canonical=True),
           "valid_and_unique": _fraction(len(set(valid)), n)}
    if training is not None:
        out["novelty"] = novelty(smiles, training, canonical=True)
    return out
