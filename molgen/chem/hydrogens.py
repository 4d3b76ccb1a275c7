"""Hydrogens a 3D structure lacks: counting them, and adding them with coordinates.

A Mol built from a 3D model's atoms (:func:`molgen.chem.convert.mols_from_3d`) may sanitise only
because RDKit fills under-bonded atoms with implicit hydrogens, which have no coordinates; a reader
that takes the file's atoms literally (OpenBabel, most viewers) then sees a radical. These helpers
count such hydrogens and, on request, add them as atoms with coordinates while the model's own
atoms stay exactly where the model put them.
"""
from __future__ import annotations

from rdkit import Chem
from rdkit.Chem import AllChem
from rdkit.Geometry import Point3D

from .build import quiet_rdkit
from .files import interruptible

__all__ = ["missing_hydrogens", "add_hydrogens"]


def missing_hydrogens(mol: Chem.Mol) -> int:
    """The number of hydrogens of a sanitised ``mol`` that are not atoms of their own (implicit or
    an atom's explicit H count), and so have no coordinates; 0 when every hydrogen is an atom."""
    return sum(a.GetTotalNumHs(includeNeighbors=False) for a in mol.GetAtoms())


def add_hydrogens(mol: Chem.Mol, max_iters: int = 500) -> tuple[Chem.Mol, str]:
    """A copy of a sanitised 3D ``mol`` with every hydrogen an atom with coordinates (Angstrom).

    The hydrogens are appended after the existing atoms (whose indices do not change) and placed by
    RDKit (``AddHs(addCoords=True)``), then relaxed by MMFF94 (UFF where MMFF has no parameters)
    with every existing atom a fixed point, so that only the added hydrogens move. Returns the Mol
    and the force field used: ``"mmff"``, ``"uff"``, or ``"none"`` (no parameters, or nothing to
    add; RDKit's placement is kept). Raises ValueError for a Mol without a conformer.
    """
    if mol.GetNumConformers() == 0:
        raise ValueError("add_hydrogens needs a Mol with a 3D conformer")
    n = mol.GetNumAtoms()
    with quiet_rdkit():
        m = Chem.AddHs(mol, addCoords=True)
    if m.GetNumAtoms() == n:
        return m, "none"
    field = None
    with quiet_rdkit(), interruptible():
        if AllChem.MMFFHasAllMoleculeParams(m):
            field = AllChem.MMFFGetMoleculeForceField(m, AllChem.MMFFGetMoleculeProperties(m))
            name = "mmff"
        if field is None and AllChem.UFFHasAllMoleculeParams(m):
            field = AllChem.UFFGetMoleculeForceField(m)
            name = "uff"
        if field is None:
            return m, "none"
        for k in range(n):
            field.AddFixedPoint(k)
        field.Initialize()
        field.Minimize(maxIts=max_iters)
    # The force field moves the conformer in place; fixed points do not move, and restoring them
    # from the input keeps the model's coordinates bit for bit whatever the minimiser does.
    source, conf = mol.GetConformer(), m.GetConformer()
    for k in range(n):
        conf.SetAtomPosition(k, Point3D(*source.GetAtomPosition(k)))
    return m, name
