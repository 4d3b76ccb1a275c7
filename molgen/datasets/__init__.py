"""Datasets: QM9 (3D, from qm9pack) and MOSES (SMILES, from the molsets wheel); for PyTorch Geometric
users, :class:`QM9Dataset` and :class:`MOSESDataset` (:mod:`molgen.datasets.pyg`, imported on first use)."""
from __future__ import annotations

DATASETS = ("qm9", "moses")
__all__ = ["DATASETS", "dataset_smiles", "QM9Dataset", "MOSESDataset"]


def dataset_smiles(dataset: str, split: str) -> list[str]:
    """SMILES of a split: QM9 train / valid / test (its own SMILES column); MOSES train / test /
    test_scaffolds. Raises ValueError for an unknown dataset or split."""
    if dataset == "qm9":
        from .qm9 import qm9_smiles

        return qm9_smiles(split)
    if dataset == "moses":
        from .moses import load_moses

        return load_moses(split)
    raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")


def __getattr__(name: str):
    if name in ("QM9Dataset", "MOSESDataset"):  # lazily: importing torch_geometric takes a second
        from . import pyg

        return getattr(pyg, name)
    raise AttributeError(f"module 'molgen.datasets' has no attribute {name!r}")
