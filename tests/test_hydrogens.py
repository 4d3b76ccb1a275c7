"""Hydrogens a 3D structure lacks: counted exactly, and added with coordinates while the model's own
atoms stay where they are."""
from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from molgen.chem.hydrogens import add_hydrogens, missing_hydrogens


def _heavy_atoms_3d(smiles: str) -> Chem.Mol:
    """``smiles`` embedded (seeded) and its hydrogens stripped: a 3D structure with implicit H only."""
    m = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(m, randomSeed=0) == 0
    return Chem.RemoveHs(m)


def _h_bond_lengths(mol: Chem.Mol) -> np.ndarray:
    x = mol.GetConformer().GetPositions()
    return np.array([np.linalg.norm(x[b.GetBeginAtomIdx()] - x[b.GetEndAtomIdx()]) for b in mol.GetBonds()
                     if 1 in (b.GetBeginAtom().GetAtomicNum(), b.GetEndAtom().GetAtomicNum())])


def test_missing_hydrogens_counts_the_hydrogens_without_atoms():
    assert missing_hydrogens(Chem.MolFromSmiles("CCO")) == 6
    assert missing_hydrogens(Chem.AddHs(Chem.MolFromSmiles("CCO"))) == 0
    assert missing_hydrogens(Chem.MolFromSmiles("[CH2]")) == 2  # an explicit H count has no coordinates either


@pytest.mark.parametrize("smiles, field", [("CCO", "mmff"), ("CB(C)C", "uff")])  # MMFF has no boron: UFF
def test_added_hydrogens_leave_the_model_atoms_in_place_at_sane_bond_lengths(smiles, field):
    mol = _heavy_atoms_3d(smiles)
    before = mol.GetConformer().GetPositions()
    out, used = add_hydrogens(mol)
    assert used == field
    n = mol.GetNumAtoms()
    assert out.GetNumAtoms() == n + missing_hydrogens(mol) and missing_hydrogens(out) == 0
    assert [a.GetAtomicNum() for a in out.GetAtoms()][:n] == [a.GetAtomicNum() for a in mol.GetAtoms()]
    after = out.GetConformer().GetPositions()
    assert np.abs(after[:n] - before).max() < 1e-6  # the model's atoms did not move
    lengths = _h_bond_lengths(out)
    assert lengths.size == out.GetNumAtoms() - n and ((lengths > 0.9) & (lengths < 1.2)).all(), lengths
    assert mol.GetNumAtoms() == n  # the input is not changed


def test_the_relaxation_moves_the_added_hydrogens():
    mol = _heavy_atoms_3d("CCO")
    placed = Chem.AddHs(mol, addCoords=True).GetConformer().GetPositions()
    relaxed = add_hydrogens(mol)[0].GetConformer().GetPositions()
    assert np.abs(relaxed[mol.GetNumAtoms():] - placed[mol.GetNumAtoms():]).max() > 1e-3


def test_nothing_to_add_and_no_conformer():
    full = Chem.AddHs(Chem.MolFromSmiles("O"))
    AllChem.EmbedMolecule(full, randomSeed=0)
    out, used = add_hydrogens(full)
    assert used == "none" and out.GetNumAtoms() == 3
    with pytest.raises(ValueError, match="3D conformer"):
        add_hydrogens(Chem.MolFromSmiles("CCO"))
