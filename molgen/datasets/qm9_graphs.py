"""QM9 molecules as PyTorch Geometric ``Data`` objects.

Two consistent views of each molecule (their atom orders differ, so they are never mixed in one
object):

- ``graph="geometry"``: all atoms with hydrogens, ``z`` (atomic numbers), ``pos`` (Angstrom, DFT),
  ``edge_index`` / ``bond_order`` inferred from the coordinates with EDM's bond-length rules;
- ``graph="smiles"``: heavy atoms of QM9's SMILES (hydrogens implicit), ``z``, ``charge``,
  ``edge_index`` / ``bond_order`` (1, 2, 3; kekulised) from RDKit, no coordinates.

Both carry ``y`` (1 x 15, the properties of :data:`molgen.datasets.qm9.PROPERTIES`, units in
:data:`PROPERTY_UNITS`), ``smiles`` and ``idx`` (row in the full dataset).
"""
from __future__ import annotations

import numpy as np
import torch
from rdkit import Chem
from torch.utils.data import Dataset
from torch_geometric.data import Data

from ..chem.geometry import bond_orders
from .qm9 import PROPERTIES, indices, load_qm9_arrays

PROPERTY_NAMES: tuple[str, ...] = tuple(PROPERTIES)
PROPERTY_UNITS: tuple[str, ...] = tuple(PROPERTIES.values())


def _edges(order: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Both directions of every bond of a bond-order matrix."""
    i, j = np.nonzero(order)
    return torch.as_tensor(np.stack([i, j]), dtype=torch.long), torch.as_tensor(order[i, j], dtype=torch.long)


def smiles_graph(smiles: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Heavy-atom (atomic numbers, formal charges, kekulised bond-order matrix) of a SMILES, or None."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    Chem.Kekulize(mol, clearAromaticFlags=True)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    charge = np.array([a.GetFormalCharge() for a in mol.GetAtoms()], dtype=np.int64)
    order = np.zeros((z.size, z.size), dtype=np.int64)
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        order[i, j] = order[j, i] = int(b.GetBondTypeAsDouble())
    return z, charge, order


class QM9Graphs(Dataset):
    """A split of QM9 (``train``, ``valid``, ``test`` or ``all``) as PyG ``Data`` objects, built on
    access; works with ``torch_geometric.loader.DataLoader``."""

    def __init__(self, split: str = "train", graph: str = "geometry") -> None:
        if graph not in ("geometry", "smiles"):
            raise ValueError(f"unknown graph kind {graph!r}; choose 'geometry' or 'smiles'")
        self.arrays = load_qm9_arrays()
        self.rows = indices(split)
        self.graph = graph

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, k: int) -> Data:
        i = int(self.rows[k])
        smiles = str(self.arrays.smiles[i])
        y = torch.as_tensor(self.arrays.props[i], dtype=torch.float64).unsqueeze(0)
        if self.graph == "geometry":
            z, pos = self.arrays.molecule(i)
            edge_index, order = _edges(bond_orders(z, pos))
            return Data(z=torch.as_tensor(z), pos=torch.as_tensor(pos, dtype=torch.float32), edge_index=edge_index,
                        bond_order=order, y=y, smiles=smiles, idx=i, num_nodes=int(z.size))
        parsed = smiles_graph(smiles)
        if parsed is None:  # QM9's SMILES all parse; keep a clear error if a future file does not
            raise ValueError(f"QM9 molecule {i} has a SMILES RDKit cannot parse: {smiles!r}")
        z, charge, order_m = parsed
        edge_index, order = _edges(order_m)
        return Data(z=torch.as_tensor(z), charge=torch.as_tensor(charge), edge_index=edge_index, bond_order=order,
                    y=y, smiles=smiles, idx=i, num_nodes=int(z.size))
