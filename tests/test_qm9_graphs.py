"""QM9 as PyG Data: both graph views are internally consistent and batch with PyG's loader."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.loader import DataLoader

from molgen.datasets.qm9_graphs import PROPERTY_UNITS, QM9Graphs, smiles_graph


def test_geometry_view_has_hydrogens_positions_and_symmetric_bonds() -> None:
    ds = QM9Graphs("all", graph="geometry")
    methane = ds[0]  # QM9 molecule 1 is CH4
    assert methane.z.tolist() == [6, 1, 1, 1, 1]
    assert methane.pos.shape == (5, 3)
    assert methane.edge_index.shape[1] == 8 and set(methane.bond_order.tolist()) == {1}
    assert methane.y.shape == (1, len(PROPERTY_UNITS))
    ei = methane.edge_index
    assert set(map(tuple, ei.t().tolist())) == set(map(tuple, ei.flip(0).t().tolist()))


def test_smiles_view_kekulises_aromatic_bonds() -> None:
    z, charge, order = smiles_graph("c1ccccc1O")
    assert z.tolist() == [6, 6, 6, 6, 6, 6, 8] and charge.tolist() == [0] * 7
    ring = [order[i, (i + 1) % 6] for i in range(6)]
    assert sorted(ring) == [1, 1, 1, 2, 2, 2]
    assert smiles_graph("not a smiles") is None


def test_views_batch_with_pyg_loader() -> None:
    for graph in ("geometry", "smiles"):
        ds = QM9Graphs("test", graph=graph)
        batch = next(iter(DataLoader(ds, batch_size=8)))
        assert batch.num_graphs == 8
        assert int(batch.edge_index.max()) < batch.num_nodes
        assert batch.y.shape == (8, len(PROPERTY_UNITS))


def test_unknown_graph_kind() -> None:
    with pytest.raises(ValueError, match="geometry"):
        QM9Graphs("test", graph="3d")
