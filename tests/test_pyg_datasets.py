"""The PyG datasets over molgen's QM9 and MOSES: tiny subsets, built once, reloaded, batched."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from torch_geometric.loader import DataLoader

from molgen.datasets import MOSESDataset, QM9Dataset
from molgen.datasets import moses as moses_data
from molgen.datasets import pyg
from molgen.datasets import qm9 as qm9_data


def _qm9_available() -> bool:
    try:
        qm9_data.load_qm9_arrays()
        return True
    except qm9_data.DataMissingError:
        return False


needs_qm9 = pytest.mark.skipif(not _qm9_available(), reason="QM9 needs the qm9 extra")
needs_moses = pytest.mark.skipif(
    not all((moses_data.moses_dir() / name).is_file() for name in moses_data._MEMBERS),
    reason="MOSES files not fetched; run `python -m molgen.datasets.moses fetch`")


class FullGraph:
    """A transform that needs no torch-cluster: every ordered pair of atoms, as PyG's own transforms do
    it, returning a copy (transforms must not change the stored graph)."""

    def __call__(self, data):
        data = data.clone()
        n = data.num_nodes
        pairs = torch.cartesian_prod(torch.arange(n), torch.arange(n)).T
        data.edge_index = pairs[:, pairs[0] != pairs[1]]
        return data


class AddMass:
    """A pre_transform that records a per-graph value (and counts its calls)."""

    calls = 0

    def __call__(self, data):
        AddMass.calls += 1
        data.n_heavy = int((data.z != 1).sum()) if "z" in data else data.num_nodes
        return data

    def __repr__(self) -> str:
        return "AddMass()"


@needs_qm9
def test_qm9_graphs_carry_the_split_s_atoms_coordinates_properties_and_smiles(tmp_path):
    ds = QM9Dataset(tmp_path, split="test", max_molecules=50)
    arrays = qm9_data.load_qm9_arrays()
    rows = qm9_data.indices("test")[:50]
    assert len(ds) == 50
    assert [int(g.idx) for g in ds] == rows.tolist()
    g = ds[7]
    z, pos = arrays.molecule(int(rows[7]))
    assert g.z.tolist() == z.tolist()
    torch.testing.assert_close(g.pos.double(), torch.from_numpy(pos))
    assert g.x.shape == (len(z), len(QM9Dataset.ATOM_TYPES))
    assert [QM9Dataset.ATOM_TYPES[k] for k in g.x.argmax(1).tolist()] == \
        [{1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}[a] for a in z.tolist()]
    assert g.y.shape == (1, len(QM9Dataset.PROPERTIES)) and g.y.dtype == torch.float64
    assert g.y[0].tolist() == arrays.props[rows[7]].tolist()
    assert g.smiles == arrays.smiles[rows[7]]
    assert "edge_index" not in g  # no bonds in the processed data: a radius graph is a transform


@needs_qm9
def test_qm9_pre_transform_runs_once_and_the_processed_file_is_reused(tmp_path, monkeypatch):
    AddMass.calls = 0
    first = QM9Dataset(tmp_path, split="valid", max_molecules=20, pre_transform=AddMass())
    assert AddMass.calls == 20 and first[0].n_heavy == int((first[0].z != 1).sum())
    monkeypatch.setattr(QM9Dataset, "_graphs", lambda self: pytest.fail("rebuilt instead of loaded"))
    again = QM9Dataset(tmp_path, split="valid", max_molecules=20, pre_transform=AddMass(),
                       transform=FullGraph())
    assert AddMass.calls == 20 and len(again) == 20
    g = again[0]
    assert g.edge_index.shape == (2, g.num_nodes * (g.num_nodes - 1))  # the transform, applied on access
    assert "edge_index" not in first[0]


@needs_qm9
def test_qm9_batches_through_a_dataloader(tmp_path):
    ds = QM9Dataset(tmp_path, split="train", max_molecules=50)
    batch = next(iter(DataLoader(ds, batch_size=16, shuffle=True)))
    assert batch.num_graphs == 16 and batch.y.shape == (16, len(QM9Dataset.PROPERTIES))
    assert batch.pos.shape == (batch.z.numel(), 3) and len(batch.smiles) == 16


def test_bad_split_and_subset_are_one_line_value_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown QM9 split 'validation'; choose from train, valid, test, all"):
        QM9Dataset(tmp_path, split="validation")
    with pytest.raises(ValueError, match="unknown MOSES split 'valid'; choose from train, test, test_scaffolds"):
        MOSESDataset(tmp_path, split="valid")
    with pytest.raises(ValueError, match="max_molecules must be a positive integer"):
        QM9Dataset(tmp_path, split="test", max_molecules=0)


def test_missing_qm9_names_the_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "qm9pack" else real(name, *a))
    qm9_data.load_qm9_arrays.cache_clear()
    try:
        with pytest.raises(qm9_data.DataMissingError, match=r"pip install 'molgen-models\[qm9\]'"):
            QM9Dataset(tmp_path / "pyg", split="test", max_molecules=5)
    finally:
        qm9_data.load_qm9_arrays.cache_clear()


def test_missing_moses_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="python -m molgen.datasets.moses fetch"):
        MOSESDataset(tmp_path / "pyg", split="test", max_molecules=5)


@needs_moses
def test_moses_graphs_are_from_smiles_with_bond_orders_and_reload(tmp_path, monkeypatch):
    from rdkit import Chem

    AddMass.calls = 0
    ds = MOSESDataset(tmp_path, split="test", max_molecules=50, pre_transform=AddMass())
    smiles = moses_data.load_moses("test")[:50]
    assert AddMass.calls == 50 and [g.smiles for g in ds] == smiles
    g, mol = ds[3], Chem.MolFromSmiles(smiles[3])
    assert g.x.shape == (mol.GetNumAtoms(), 9) and g.x[:, 0].tolist() == [a.GetAtomicNum() for a in mol.GetAtoms()]
    assert g.edge_index.shape == (2, 2 * mol.GetNumBonds()) and g.n_heavy == mol.GetNumAtoms()
    assert set(g.edge_attr[:, 0].tolist()) <= {1, 2, 3, 12}  # single, double, triple, aromatic
    # workers send back numpy arrays: each tensor from a worker would hold a file descriptor open
    assert all(type(a).__module__ == "numpy" for a in pyg._moses_chunk((["CCO"], False))[0])
    monkeypatch.setattr(pyg, "_CHUNK", 20)  # three chunks, built in two worker processes
    kekule = MOSESDataset(tmp_path, split="test", max_molecules=50, kekulize=True, workers=2)
    assert [int(k.idx) for k in kekule] == list(range(50)) and [k.smiles for k in kekule] == smiles
    assert set(torch.cat([k.edge_attr[:, 0] for k in kekule]).tolist()) <= {1, 2, 3}
    monkeypatch.setattr(MOSESDataset, "_graphs", lambda self: pytest.fail("rebuilt instead of loaded"))
    again = MOSESDataset(tmp_path, split="test", max_molecules=50, pre_transform=AddMass())
    batch = next(iter(DataLoader(again, batch_size=8)))
    assert batch.num_graphs == 8 and batch.edge_attr.shape[1] == 3 and batch.smiles == smiles[:8]


@needs_qm9
def test_a_processed_file_is_rebuilt_when_its_molgen_source_changes(tmp_path, monkeypatch):
    source = tmp_path / "qm9.npz"
    source.write_text("first")
    monkeypatch.setattr(QM9Dataset, "_source", lambda self: source)
    AddMass.calls = 0
    QM9Dataset(tmp_path / "pyg", split="test", max_molecules=5, pre_transform=AddMass())
    QM9Dataset(tmp_path / "pyg", split="test", max_molecules=5, pre_transform=AddMass())
    assert AddMass.calls == 5  # unchanged source: loaded
    source.write_text("second, longer")
    QM9Dataset(tmp_path / "pyg", split="test", max_molecules=5, pre_transform=AddMass())
    assert AddMass.calls == 10  # changed source: built again
    source.unlink()  # a source that is gone: the built file is still used
    assert len(QM9Dataset(tmp_path / "pyg", split="test", max_molecules=5, pre_transform=AddMass())) == 5
    assert AddMass.calls == 10
