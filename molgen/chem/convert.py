"""The one conversion between SMILES, RDKit Mols and 3D structures: :func:`to_mol`, :func:`to_smiles`,
:func:`canonicalize` and :func:`mols_from_3d` (the one 3D-validity path).

Conventions (as in datamol): a function that tests chemistry returns ``None`` for a molecule that
fails and never raises for bad chemistry; it raises only for malformed arguments. Every caller states
its SMILES convention through :func:`to_smiles`' keywords; the defaults (no stereo, all fragments,
aromatic form, hydrogens removed) are molgen's canonical form, used for validity, uniqueness and
novelty. RDKit's own log is silenced only inside :func:`quiet_rdkit`, never for the whole process.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
from rdkit import Chem

from . import build
from .build import mol_from_graph, quiet_rdkit, sanitize
from .elements import TABLE_Z
from .geometry import bond_orders, has_clash

__all__ = ["MolLike", "quiet_rdkit", "to_mol", "to_smiles", "canonicalize", "mols_from_3d"]

#: What chemist-facing functions accept as one molecule: an RDKit Mol, a SMILES string, or None
#: (an invalid sample).
MolLike = Union[Chem.Mol, str, None]


def to_mol(x: MolLike) -> Chem.Mol | None:
    """A sanitised Mol from a Mol (a sanitised copy) or a SMILES string; None where RDKit rejects it,
    for an empty string and for None."""
    if x is None:
        return None
    if isinstance(x, str):
        if not x:
            return None
        with quiet_rdkit():
            return Chem.MolFromSmiles(x)
    return sanitize(x)


def to_smiles(mol: Chem.Mol | None, *, isomeric: bool = False, largest_fragment: bool = False,
              kekule: bool = False) -> str | None:
    """RDKit's canonical SMILES of a sanitised Mol, hydrogens removed; None for None or where RDKit fails.

    ``isomeric`` keeps stereo and isotopes (MOSES' and FCD's convention); ``largest_fragment``
    keeps the fragment with the most atoms (EDM's convention for uniqueness and novelty); ``kekule``
    writes Kekulé bonds instead of aromatic ones. An empty Mol gives ``""``.
    """
    if mol is None:
        return None
    try:
        with quiet_rdkit():
            m = build.largest_fragment(mol) if largest_fragment else mol
            m = Chem.RemoveHs(m, sanitize=False)
            return Chem.MolToSmiles(m, isomericSmiles=isomeric, kekuleSmiles=kekule)
    except Exception:  # RDKit raises several exception types for bad chemistry
        return None


def canonicalize(smiles: str, *, isomeric: bool = False, largest_fragment: bool = False) -> str | None:
    """:func:`to_smiles` of a SMILES string; None if it does not parse (or is empty, or not a string)."""
    mol = to_mol(smiles) if isinstance(smiles, str) else None
    return to_smiles(mol, isomeric=isomeric, largest_fragment=largest_fragment) if mol is not None else None


def mols_from_3d(atomic_numbers_list: Sequence[np.ndarray], positions_list: Sequence[np.ndarray],
                 orders: Sequence[np.ndarray] | None = None) -> list[Chem.Mol | None]:
    """Sanitised Mols (all fragments kept, with a 3D conformer) built with EDM's bonds, or None.

    The one rule for a valid 3D molecule, used by :class:`molgen.SampleSet`, :func:`molgen.evaluate`
    and the training evaluators: None where it has no atoms, where an element has no entry in EDM's
    bond tables, where two atoms are closer than :data:`~molgen.chem.geometry.CLASH_DISTANCE`
    (Angstrom), or where RDKit rejects the Mol. ``orders`` (bond-order matrices from
    :func:`~molgen.chem.geometry.bond_orders`) skips recomputing the bonds.
    """
    if len(atomic_numbers_list) != len(positions_list):
        raise ValueError(f"{len(atomic_numbers_list)} atom-type arrays for {len(positions_list)} coordinate arrays")
    if orders is None:
        orders = [bond_orders(np.asarray(z), np.asarray(x)) for z, x in zip(atomic_numbers_list, positions_list)]
    if len(orders) != len(atomic_numbers_list):
        raise ValueError(f"{len(atomic_numbers_list)} atom-type arrays for {len(orders)} bond-order matrices")
    out: list[Chem.Mol | None] = []
    with quiet_rdkit():
        for z, x, o in zip(atomic_numbers_list, positions_list, orders):
            z = np.asarray(z, dtype=np.int64)
            if z.size == 0 or not TABLE_Z.issuperset(z.tolist()) or has_clash(x):
                out.append(None)
                continue
            out.append(sanitize(mol_from_graph(z, o, positions=np.asarray(x, dtype=np.float64))))
    return out
