"""Molecules featurised for the graph VAE, in padded arrays (:class:`GraphTable`), and the batches
cut from them for the encoder and the decoder (:func:`collate`).

A table of user input is filled lazily; a training set is featurised once and loaded from its
content-keyed cache (:meth:`GraphTable.cached`, see :mod:`molgen.models.vae.featurization`).
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
from rdkit import Chem

from ..._cache import cache_dir, cached_npz
from .featurization import EDGE_COLUMNS, NODE_COLUMNS, featurization_key, featurize, featurize_many


class GraphTable:
    """Molecules featurised for the VAE, held in padded arrays.

    A table of user input is filled on demand (``batch(indices)`` and :meth:`ensure` featurise
    the rows they have not seen); a training set comes complete from its disk cache
    (:meth:`cached`), so that ``batch`` only slices arrays. Molecules that cannot be represented
    (see :func:`featurize`) are left out of batches; their reasons are kept in ``reasons``.
    Implements the trainer's dataset protocol (``__len__`` and ``batch``).
    """

    def __init__(self, molecules: Sequence["str | Chem.Mol"], tokens: Sequence[str], max_atoms: int,
                 max_edges: int | None = None) -> None:
        self.items = list(molecules)
        self.tokens = tuple(tokens)
        self.max_atoms = int(max_atoms)
        self.max_edges = int(max_edges if max_edges is not None else max_atoms + 8)
        m = len(self.items)
        self.nodes = np.zeros((m, self.max_atoms, NODE_COLUMNS), dtype=np.int8)
        self.edges = np.zeros((m, self.max_edges, EDGE_COLUMNS), dtype=np.int8)
        self.n_nodes = np.zeros(m, dtype=np.int16)
        self.n_edges = np.zeros(m, dtype=np.int16)
        self.keys = np.zeros(m, dtype=np.int64)
        self.status = np.zeros(m, dtype=np.int8)  # 0 not yet featurised, 1 accepted, 2 rejected
        self.reasons: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def from_arrays(cls, molecules: Sequence["str | Chem.Mol"], tokens: Sequence[str], max_atoms: int,
                    max_edges: int | None, arrays: dict[str, np.ndarray]) -> "GraphTable":
        """A complete table from the flat arrays of :func:`featurize_many` (one vectorised scatter)."""
        table = cls(molecules, tokens, max_atoms, max_edges)
        n_nodes, n_edges = arrays["n_nodes"], arrays["n_edges"]
        if n_nodes.shape != (len(table),) or int(n_nodes.sum()) != len(arrays["nodes"]) \
                or int(n_edges.sum()) != len(arrays["edges"]):
            raise ValueError(f"featurised arrays do not match the {len(table)} molecules of this table")
        table.nodes[np.arange(table.max_atoms)[None, :] < n_nodes[:, None]] = arrays["nodes"]
        table.edges[np.arange(table.max_edges)[None, :] < n_edges[:, None]] = arrays["edges"]
        table.n_nodes[:], table.n_edges[:] = n_nodes, n_edges
        table.keys[:], table.status[:] = arrays["keys"], arrays["status"]
        table.reasons = dict(zip(arrays["failed_idx"].tolist(), arrays["failed_reason"].tolist()))
        return table

    @classmethod
    def cached(cls, name: str, smiles: Sequence[str], tokens: Sequence[str], max_atoms: int,
               max_edges: int | None = None, digest: str | None = None, workers: int | None = None,
               progress: bool = True, verbose: bool = True) -> "GraphTable":
        """A complete table of ``smiles``, featurised once (in parallel, with a progress bar) and
        kept in ``cache_dir("vae")/<name>-<key>.npz``; later calls load it in seconds.

        The key (:func:`featurization_key`) covers every SMILES and every setting, so an edited
        list or featuriser never reuses a stale file. ``digest``: the SMILES' ``digest_strings``,
        if the caller already has it.
        """
        max_edges = int(max_edges if max_edges is not None else max_atoms + 8)
        key = featurization_key(smiles, tokens, max_atoms, max_edges, digest)
        path = cache_dir("vae") / f"{name}-{key[:16]}.npz"
        t0 = time.perf_counter()
        built = []

        def compute() -> dict[str, np.ndarray]:
            built.append(True)
            return featurize_many(smiles, tokens, max_atoms, max_edges, workers, progress=progress,
                                  desc=f"featurise {name}")

        table = cls.from_arrays(smiles, tokens, max_atoms, max_edges, cached_npz(path, key, compute))
        if verbose:
            what = "featurised" if built else "loaded the featurised"
            print(f"{what} {len(table):,} {name} molecules in {time.perf_counter() - t0:.1f} s "
                  f"({len(table.reasons):,} not representable); cache {path}", flush=True)
        return table

    def _store(self, i: int, result: tuple[np.ndarray, np.ndarray, int] | str) -> None:
        if isinstance(result, str):
            self.reasons[i] = result
            self.status[i] = 2
            return
        nodes, edges, key = result
        self.nodes[i, :len(nodes)] = nodes
        self.edges[i, :len(edges)] = edges
        self.n_nodes[i], self.n_edges[i], self.keys[i] = len(nodes), len(edges), key
        self.status[i] = 1  # written last: readers see a complete row

    def ensure(self, indices: np.ndarray) -> None:
        """Featurise the given rows now (in this process) if they are not yet."""
        for i in np.asarray(indices)[self.status[indices] == 0].tolist():
            self._store(i, featurize(self.items[i], self.tokens, self.max_atoms, self.max_edges))

    @property
    def complete(self) -> bool:
        return bool((self.status != 0).all())

    def accepted(self, indices: np.ndarray) -> np.ndarray:
        """The rows among ``indices`` that are featurised and representable (featurising them if needed)."""
        indices = np.asarray(indices, dtype=np.int64)
        self.ensure(indices)
        return indices[self.status[indices] == 1]

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        rows = self.accepted(indices)
        if rows.size == 0:
            reasons = {self.reasons.get(int(i), "?") for i in np.asarray(indices)[:3]}
            raise ValueError(f"no molecule in this batch can be featurised: {'; '.join(sorted(reasons))}")
        return collate(self, rows)


def collate(table: GraphTable, rows: np.ndarray) -> dict[str, torch.Tensor]:
    """Tensors for accepted ``rows`` of ``table``: a PyG-style graph batch for the encoder (``x``,
    ``edge_index``, ``edge_attr``, ``batch``) and padded decoder targets (``atoms`` (B, N) with -1
    padding, symmetric ``bonds`` (B, N, N), ``n_atoms`` (B,))."""
    n = table.n_nodes[rows].astype(np.int64)
    ne = table.n_edges[rows].astype(np.int64)
    b, big_n, big_e = rows.size, int(n.max()), int(ne.max()) if ne.size else 0
    nodes = table.nodes[rows, :big_n].astype(np.int64)
    node_mask = np.arange(big_n)[None, :] < n[:, None]
    offsets = np.cumsum(n) - n
    edges = table.edges[rows, :big_e].astype(np.int64)
    e = edges[np.arange(big_e)[None, :] < ne[:, None]]
    owner = np.repeat(np.arange(b), ne)
    src, dst = e[:, 0] + offsets[owner], e[:, 1] + offsets[owner]
    bonds = np.zeros((b, big_n, big_n), dtype=np.int64)
    bonds[owner, e[:, 0], e[:, 1]] = e[:, 2]
    bonds[owner, e[:, 1], e[:, 0]] = e[:, 2]
    feats = e[:, 2:]
    return {
        "x": torch.from_numpy(nodes[node_mask]),
        "batch": torch.from_numpy(np.repeat(np.arange(b), n)),
        "edge_index": torch.from_numpy(np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])),
        "edge_attr": torch.from_numpy(np.concatenate([feats, feats])),
        "atoms": torch.from_numpy(np.where(node_mask, nodes[..., 0], -1)),
        "bonds": torch.from_numpy(bonds),
        "n_atoms": torch.from_numpy(n),
    }
