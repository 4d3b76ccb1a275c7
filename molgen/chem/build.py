"""Building and sanitising RDKit molecules (SMILES and canonical forms: :mod:`molgen.chem.convert`).

Conventions (as in datamol): functions that test chemistry return ``None`` for a molecule that
fails, and never raise for bad chemistry; they raise only for malformed arguments.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Sequence

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Geometry import Point3D

from .geometry import bond_orders

@contextmanager
def quiet_rdkit() -> Iterator[None]:
    """Silence RDKit's log (parse and sanitisation errors) inside the block, and restore it after.

    molgen never silences RDKit for the whole process: a user's own RDKit calls keep their log.
    """
    block = rdBase.BlockLogs()
    try:
        yield
    finally:
        del block


BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE,
              4: Chem.BondType.AROMATIC}
ORDER_OF_BOND = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3,
                 Chem.BondType.AROMATIC: 4}


def mol_from_graph(atomic_numbers: Sequence[int], order: np.ndarray,
                   charges: Sequence[int] | None = None,
                   positions: np.ndarray | None = None, implicit_hs: bool = True) -> Chem.Mol:
    """An unsanitised Mol from atom types, a bond-order matrix (1, 2, 3; 4 = aromatic) and charges.

    ``positions`` (Angstrom), if given, become a 3D conformer. With ``implicit_hs`` (EDM's
    behaviour) RDKit may fill an under-bonded atom with implicit hydrogens on sanitising; without it
    such an atom becomes a radical.
    """
    z = np.asarray(atomic_numbers, dtype=np.int64)
    order = np.asarray(order)
    if order.shape != (z.size, z.size):
        raise ValueError(f"bond matrix has shape {order.shape}, expected {(z.size, z.size)}")
    mol = Chem.RWMol()
    for k, zk in enumerate(z.tolist()):
        atom = Chem.Atom(int(zk))
        if charges is not None and charges[k]:
            atom.SetFormalCharge(int(charges[k]))
        if not implicit_hs:
            atom.SetNoImplicit(True)
        mol.AddAtom(atom)
    ii, jj = np.nonzero(np.triu(order, 1))
    for i, j in zip(ii.tolist(), jj.tolist()):
        mol.AddBond(i, j, BOND_TYPES[int(order[i, j])])
    if positions is not None:
        conf = Chem.Conformer(int(z.size))
        for k, p in enumerate(np.asarray(positions, dtype=np.float64).tolist()):
            conf.SetAtomPosition(k, Point3D(*p))
        conf.Set3D(True)
        mol.AddConformer(conf, assignId=True)
    return mol.GetMol()


def mol_from_3d(atomic_numbers: Sequence[int], positions: np.ndarray,
                charges: Sequence[int] | None = None) -> Chem.Mol:
    """An unsanitised Mol whose bonds are inferred from coordinates (Angstrom) with EDM's tables."""
    order = bond_orders(np.asarray(atomic_numbers), np.asarray(positions))
    return mol_from_graph(atomic_numbers, order, charges, positions)


def sanitize(mol: Chem.Mol | None) -> Chem.Mol | None:
    """A sanitised copy of ``mol``, or None if RDKit rejects it."""
    if mol is None:
        return None
    m = Chem.Mol(mol)
    try:
        with quiet_rdkit():
            Chem.SanitizeMol(m)
    except Exception:  # RDKit raises several exception types for bad chemistry
        return None
    return m


def largest_fragment(mol: Chem.Mol) -> Chem.Mol:
    """The fragment with the most atoms (the first one on ties)."""
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    return max(frags, key=lambda f: f.GetNumAtoms()) if len(frags) > 1 else mol


def is_connected(mol: Chem.Mol) -> bool:
    """True when the molecule is a single fragment."""
    return len(Chem.GetMolFrags(mol)) == 1
