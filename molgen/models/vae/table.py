"""Molecules featurised for the graph VAE (:class:`GraphTable`: the padded arrays of
:class:`~molgen.models.vae.graphs.GraphArrays` with the molecules they come from), and the batches cut
from them for the encoder and the decoder (:func:`collate`).

A table of user input is filled lazily; a training set is featurised once and loaded from its
content-keyed cache (:meth:`GraphTable.cached`, see :mod:`molgen.models.vae.featurization`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
from rdkit import Chem

from ..._cache import cache_dir, cached_npz
from .featurization import featurization_key, featurize, featurize_many
from .graphs import GraphArrays, collate

__all__ = ["GraphTable", "collate"]


class GraphTable(GraphArrays):
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
        super().__init__(len(self.items), tokens, max_atoms, max_edges)

    @classmethod
    def from_arrays(cls, molecules: Sequence["str | Chem.Mol"], tokens: Sequence[str], max_atoms: int,
                    max_edges: int | None, arrays: dict[str, np.ndarray]) -> "GraphTable":
        """A complete table from the flat arrays of :func:`featurize_many` (one vectorised scatter)."""
        table = cls(molecules, tokens, max_atoms, max_edges)
        table.fill(arrays)
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
        path = cls.cache_path(name, key)
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

    @staticmethod
    def cache_path(name: str, key: str) -> "Path":
        """Where :meth:`cached` keeps the table of ``name`` with :func:`featurization_key` ``key``."""
        return cache_dir("vae") / f"{name}-{key[:16]}.npz"

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
        self.ensure(np.asarray(indices, dtype=np.int64))
        return super().accepted(indices)
