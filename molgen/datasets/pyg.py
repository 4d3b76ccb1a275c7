"""PyTorch Geometric datasets over molgen's data: QM9 in 3D and the MOSES graphs.

    from molgen.datasets import QM9Dataset, MOSESDataset
    from torch_geometric.loader import DataLoader
    import torch_geometric.transforms as T

    qm9 = QM9Dataset(split="train", transform=T.RadiusGraph(5.0))   # 100,000 graphs (needs torch-cluster)
    moses = MOSESDataset(split="test")                               # 176,074 graphs
    batch = next(iter(DataLoader(qm9, batch_size=64, shuffle=True)))

Both follow PyG's ``InMemoryDataset`` life cycle: the first instantiation builds the split from
molgen's own data (:mod:`molgen.datasets.qm9`'s processed cache and shipped split; the MOSES SMILES
files of :mod:`molgen.datasets.moses`), applies ``pre_filter`` / ``pre_transform`` and writes PyG's
processed file under ``root/processed/<split>[-first<N>][-kekule]/``; later instantiations load that file.
``root`` defaults to ``molgen._cache.cache_dir("pyg", "qm9" | "moses")``. PyG warns when a
``pre_transform`` differs from the one the file was built with; pass ``force_reload=True`` to rebuild.
A processed file is rebuilt by itself when the molgen file it came from (QM9's processed ``qm9.npz``,
the MOSES split's ``.csv.gz``) has changed size or time since (``source.txt`` beside it records them).
``max_molecules=N`` keeps the first N molecules of the split (for tests and quick looks). Missing data
raise molgen's one-line errors (``DataMissingError`` naming the ``qm9`` extra; ``FileNotFoundError``
naming the MOSES fetch command).
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from .._cache import cache_dir, file_stamp
from ..chem.elements import VOCABULARIES, atomic_number
from .qm9 import PROPERTIES

__all__ = ["QM9Dataset", "MOSESDataset"]

#: Bump when the content of the processed files changes, so that old ones are rebuilt.
_FORMAT = 1
#: Molecules per chunk of the parallel MOSES build.
_CHUNK = 20_000


def _progress(iterable, total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="mol", disable=not enabled, file=sys.stderr)


class _MolgenDataset(InMemoryDataset):
    """The shared life cycle: split and subset checked, one processed file per (split, subset)."""

    name = ""
    splits: tuple[str, ...] = ()

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 max_molecules: int | None = None, transform: Callable | None = None,
                 pre_transform: Callable | None = None, pre_filter: Callable | None = None,
                 force_reload: bool = False, log: bool = True, workers: int | None = None) -> None:
        if split not in self.splits:
            raise ValueError(f"unknown {self.name} split {split!r}; choose from {', '.join(self.splits)}")
        if max_molecules is not None and (isinstance(max_molecules, bool) or not isinstance(max_molecules, int)
                                          or max_molecules < 1):
            raise ValueError(f"max_molecules must be a positive integer or None, got {max_molecules!r}")
        self.split, self.max_molecules, self.workers = split, max_molecules, workers
        self.root = str(Path(root) if root is not None else cache_dir("pyg", self.name.lower()))
        stamp = self._source_stamp()
        built_from = Path(self.processed_dir) / "source.txt"
        if stamp is not None and built_from.is_file() and built_from.read_text() != stamp:
            force_reload = True  # molgen's processed data changed since this file was built
        super().__init__(self.root, transform, pre_transform, pre_filter, log=log, force_reload=force_reload)
        if stamp is not None and (force_reload or not built_from.is_file()):
            built_from.write_text(stamp)
        self.load(self.processed_paths[0])

    def _source(self) -> Path:
        """The file of molgen's data the graphs are built from."""
        raise NotImplementedError

    def _source_stamp(self) -> str | None:
        """Name, size and time of :meth:`_source` (None where it is not there: a built file is still used)."""
        source = self._source()
        return file_stamp([source]) if source.is_file() else None

    @property
    def raw_file_names(self) -> list[str]:
        return []  # the raw data are molgen's own (qm9pack, the MOSES files), read in process()

    def download(self) -> None:
        pass

    def _variant(self) -> str:
        return self.split if self.max_molecules is None else f"{self.split}-first{self.max_molecules}"

    @property
    def processed_dir(self) -> str:
        return os.path.join(self.root, "processed", self._variant())

    @property
    def processed_file_names(self) -> list[str]:
        return [f"data-v{_FORMAT}.pt"]

    def _graphs(self) -> list[Data]:
        raise NotImplementedError

    def process(self) -> None:
        graphs = self._graphs()
        if self.pre_filter is not None:
            graphs = [g for g in graphs if self.pre_filter(g)]
        if self.pre_transform is not None:
            graphs = [self.pre_transform(g) for g in graphs]
        path = Path(self.processed_paths[0])
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:  # written under another name and renamed: a failed build leaves no half file behind
            self.save(graphs, str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _show_progress(self) -> bool:
        return self.log and "PYTEST_CURRENT_TEST" not in os.environ

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)}, split={self.split!r})"


class QM9Dataset(_MolgenDataset):
    """QM9 with DFT coordinates and properties, one ``Data`` per molecule, hydrogens included.

    Each graph has ``z`` (atomic numbers, int64), ``pos`` (Angstrom, float32), ``x`` (float32 one-hot
    of molgen's QM9 vocabulary :attr:`ATOM_TYPES`, H C N O F, the atom types the molgen models use),
    ``y`` (1 x 15 float64 DFT properties, columns :attr:`PROPERTIES` with their units, as in the CSV:
    energies near -400 Ha need float64), ``smiles`` (QM9's own SMILES) and ``idx`` (the molecule's row
    in :func:`molgen.datasets.qm9.load_qm9_arrays`, what the shipped split indexes). Splits: ``"train"``
    (100,000), ``"valid"`` (17,748), ``"test"`` (13,083), ``"all"``.

    There is no ``edge_index``: molgen's processed QM9 holds no bonds matched to the 3D atoms (its SMILES
    number atoms differently). Add a graph as a transform, e.g. ``T.RadiusGraph(5.0)`` (PyG's radius
    graph needs the ``torch-cluster`` package), or a cutoff graph of your own. Needs the ``qm9`` extra.
    """

    name = "QM9"
    splits = ("train", "valid", "test", "all")
    ATOM_TYPES: tuple[str, ...] = VOCABULARIES["qm9"]

    #: The columns of ``y``: property name -> unit (D, bohr^3, Ha, bohr^2, cal/(mol K), GHz).
    PROPERTIES: dict[str, str] = dict(PROPERTIES)

    def _source(self) -> Path:
        return cache_dir("qm9") / "qm9.npz"  # load_qm9_arrays' processed file

    def _graphs(self) -> list[Data]:
        from .qm9 import indices, load_qm9_arrays

        arrays = load_qm9_arrays()
        rows = indices(self.split)[:self.max_molecules]
        lookup = torch.full((120,), -1, dtype=torch.long)
        for k, s in enumerate(self.ATOM_TYPES):
            lookup[atomic_number(s)] = k
        z_all = torch.from_numpy(arrays.z.astype(np.int64))
        pos_all = torch.from_numpy(arrays.pos)
        y_all = torch.from_numpy(arrays.props)
        graphs = []
        for i in _progress(rows.tolist(), len(rows), f"QM9 {self.split}", self._show_progress()):
            a, b = int(arrays.ptr[i]), int(arrays.ptr[i + 1])
            z = z_all[a:b]
            x = torch.nn.functional.one_hot(lookup[z], len(self.ATOM_TYPES)).float()
            graphs.append(Data(x=x, z=z, pos=pos_all[a:b].clone(), y=y_all[i:i + 1].clone(),
                               smiles=str(arrays.smiles[i]), idx=i))
        return graphs


def _moses_chunk(args: tuple[Sequence[str], bool]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``x``, ``edge_index`` and ``edge_attr`` of each SMILES of one chunk, as numpy arrays (a top-level
    function, so that worker processes can run it; tensors sent back from workers would each hold a
    shared-memory file open, and a large split runs out of file descriptors)."""
    from torch_geometric.utils import from_smiles

    smiles, kekulize = args
    graphs = [from_smiles(s, kekulize=kekulize) for s in smiles]
    return [(g.x.numpy(), g.edge_index.numpy(), g.edge_attr.numpy()) for g in graphs]


class MOSESDataset(_MolgenDataset):
    """The MOSES drug-like molecules as heavy-atom graphs, built by ``torch_geometric.utils.from_smiles``.

    Each graph has ``x`` (N x 9 int64 categorical atom features: atomic number, chirality, degree,
    formal charge, hydrogens, radical electrons, hybridisation, aromatic, in ring; the vocabularies are
    ``torch_geometric.utils.smiles.x_map``), ``edge_index`` (both directions of each bond),
    ``edge_attr`` (E x 3 int64: bond type, stereo, conjugated; bond type indexes
    ``torch_geometric.utils.smiles.e_map["bond_type"]``: 1 single, 2 double, 3 triple, 12 aromatic, or
    only 1-3 with ``kekulize=True``), ``smiles`` (MOSES' SMILES) and ``idx`` (the row in the split's file).
    Splits: ``"train"`` (1,584,663), ``"test"`` (176,074), ``"test_scaffolds"`` (176,226); MOSES has
    no validation split. Large builds run in ``workers`` processes (default: all CPUs) in chunks, with a
    progress bar. Needs the MOSES files (``python -m molgen.datasets.moses fetch``).
    """

    name = "MOSES"
    splits = ("train", "test", "test_scaffolds")

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train", *,
                 kekulize: bool = False, **kwargs) -> None:
        self.kekulize = bool(kekulize)
        super().__init__(root, split, **kwargs)

    def _variant(self) -> str:
        return super()._variant() + ("-kekule" if self.kekulize else "")

    def _source(self) -> Path:
        from .moses import moses_dir

        return moses_dir() / f"{self.split}.csv.gz"

    def _graphs(self) -> list[Data]:
        from .moses import load_moses

        smiles = load_moses(self.split)
        smiles = smiles[:self.max_molecules]
        chunks = [(smiles[a:a + _CHUNK], self.kekulize) for a in range(0, len(smiles), _CHUNK)]
        workers = min(self.workers or os.cpu_count() or 1, len(chunks))
        graphs: list[Data] = []
        with ExitStack() as stack:
            bar = stack.enter_context(_progress(None, len(smiles), f"MOSES {self.split}", self._show_progress()))
            if workers > 1:
                results = stack.enter_context(ProcessPoolExecutor(max_workers=workers)).map(_moses_chunk, chunks)
            else:
                results = map(_moses_chunk, chunks)
            for part in results:
                for x, edges, bonds in part:
                    i = len(graphs)
                    graphs.append(Data(x=torch.from_numpy(x), edge_index=torch.from_numpy(edges),
                                       edge_attr=torch.from_numpy(bonds), smiles=smiles[i], idx=i))
                bar.update(len(part))
        return graphs
