"""The graph VAE's molecules as arrays, without RDKit (a bare GPU machine trains from them; filling them
from molecules is :mod:`molgen.models.vae.featurization`, RDKit's side).

- The featurised graphs: rows of :data:`NODE_COLUMNS` per atom and :data:`EDGE_COLUMNS` per bond,
  held padded in a :class:`GraphArrays` (the trainer's dataset: ``__len__`` and ``batch``), which
  :meth:`GraphArrays.save` writes as the flat arrays of the featurisation cache plus the vocabulary and
  size limits (the training set that ``molgen train --model vae --encoded-data DIR`` reads);
  :class:`~molgen.models.vae.table.GraphTable` adds the molecules and their featurisation.
- The decoder's graphs (samples, reconstructions): token indices and Kekulé bond orders, kept as flat
  arrays by :func:`save_decoded` for scoring where RDKit is (:func:`molgen.models.vae.model.graph_mols`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..._cache import write_npz

VALENCE_BINS = 8           # embeddings of valence counts clamp at 7
MAX_HS = 4                 # hydrogen-count feature clamps at 4
NODE_COLUMNS = 4            # token, hydrogens, aromatic, in ring
EDGE_COLUMNS = 5            # later atom, earlier atom, order, aromatic, in ring
FLAT_KEYS = ("nodes", "edges", "n_nodes", "n_edges", "keys", "status", "failed_idx", "failed_reason")


class GraphArrays:
    """Featurised molecules in padded arrays: ``nodes`` (m, max_atoms, 4), ``edges`` (m, max_edges, 5),
    ``n_nodes``, ``n_edges``, ``keys`` (hash of the canonical SMILES; 0 where unknown) and ``status``
    (0 not yet featurised, 1 accepted, 2 rejected, its reason in ``reasons``) per row. Batches hold the
    accepted rows among the indices asked for."""

    def __init__(self, rows: int, tokens: Sequence[str], max_atoms: int, max_edges: int | None = None) -> None:
        self.tokens = tuple(tokens)
        self.max_atoms = int(max_atoms)
        self.max_edges = int(max_edges if max_edges is not None else max_atoms + 8)
        self.nodes = np.zeros((rows, self.max_atoms, NODE_COLUMNS), dtype=np.int8)
        self.edges = np.zeros((rows, self.max_edges, EDGE_COLUMNS), dtype=np.int8)
        self.n_nodes = np.zeros(rows, dtype=np.int16)
        self.n_edges = np.zeros(rows, dtype=np.int16)
        self.keys = np.zeros(rows, dtype=np.int64)
        self.status = np.zeros(rows, dtype=np.int8)
        self.reasons: dict[int, str] = {}

    def __len__(self) -> int:
        return self.status.size

    def fill(self, arrays: dict[str, np.ndarray]) -> None:
        """Every row from the flat arrays of the featurisation cache (one vectorised scatter)."""
        n_nodes, n_edges = arrays["n_nodes"], arrays["n_edges"]
        if n_nodes.shape != (len(self),) or int(n_nodes.sum()) != len(arrays["nodes"]) \
                or int(n_edges.sum()) != len(arrays["edges"]):
            raise ValueError(f"featurised arrays do not match the {len(self)} molecules of this table")
        self.nodes[np.arange(self.max_atoms)[None, :] < n_nodes[:, None]] = arrays["nodes"]
        self.edges[np.arange(self.max_edges)[None, :] < n_edges[:, None]] = arrays["edges"]
        self.n_nodes[:], self.n_edges[:] = n_nodes, n_edges
        self.keys[:], self.status[:] = arrays["keys"], arrays["status"]
        self.reasons = dict(zip(arrays["failed_idx"].tolist(), arrays["failed_reason"].tolist()))

    def flat(self) -> dict[str, np.ndarray]:
        """The rows as the flat arrays :meth:`fill` takes (featurised rows only, in row order)."""
        nodes = self.nodes[np.arange(self.max_atoms)[None, :] < self.n_nodes[:, None]]
        edges = self.edges[np.arange(self.max_edges)[None, :] < self.n_edges[:, None]]
        idx = np.asarray(sorted(self.reasons), dtype=np.int64)
        reason = np.asarray([self.reasons[i] for i in idx.tolist()], dtype=str) if idx.size else np.zeros(0, "<U1")
        return {"nodes": nodes, "edges": edges, "n_nodes": self.n_nodes.copy(), "n_edges": self.n_edges.copy(),
                "keys": self.keys.copy(), "status": self.status.copy(), "failed_idx": idx, "failed_reason": reason}

    def save(self, path: Path) -> None:
        """The table as one .npz (flat arrays, vocabulary, size limits; no pickles), written atomically."""
        write_npz(path, {**self.flat(), "tokens": np.asarray(self.tokens, dtype=str),
                         "max_atoms": np.int64(self.max_atoms), "max_edges": np.int64(self.max_edges)})

    @classmethod
    def load(cls, path: Path) -> "GraphArrays":
        """A table written by :meth:`save` (ValueError, OSError or KeyError where the file is not one)."""
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        table = cls(len(arrays["status"]), arrays["tokens"].tolist(), int(arrays["max_atoms"]),
                    int(arrays["max_edges"]))
        table.fill(arrays)
        return table

    def take(self, start: int, stop: int) -> "GraphArrays":
        """Rows ``start .. stop`` as a table of their own (rejected rows renumbered from 0)."""
        out = GraphArrays(0, self.tokens, self.max_atoms, self.max_edges)
        for name in ("nodes", "edges", "n_nodes", "n_edges", "keys", "status"):
            setattr(out, name, getattr(self, name)[start:stop].copy())
        out.reasons = {i - start: r for i, r in self.reasons.items() if start <= i < stop}
        return out

    def accepted(self, indices: np.ndarray) -> np.ndarray:
        """The rows among ``indices`` that are featurised and representable."""
        indices = np.asarray(indices, dtype=np.int64)
        return indices[self.status[indices] == 1]

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        rows = self.accepted(indices)
        if rows.size == 0:
            reasons = {self.reasons.get(int(i), "?") for i in np.asarray(indices)[:3]}
            raise ValueError(f"no molecule in this batch can be featurised: {'; '.join(sorted(reasons))}")
        return collate(self, rows)


def collate(table: GraphArrays, rows: np.ndarray) -> dict[str, torch.Tensor]:
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


# --- decoded graphs ---------------------------------------------------------------------------------
def save_decoded(path: Path, tokens: Sequence[str],
                 chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Decoded graphs, given as chunks of ``(atoms (B, A) token indices, bonds (B, A, A) symmetric orders,
    n (B,))``, written atomically as flat arrays: ``n_atoms``, ``atoms`` (sum n), ``n_bonds`` and ``bonds``
    (sum m, 3) rows ``[i, j, order]`` with ``j < i``, and the vocabulary ``tokens``."""
    n_atoms, atoms, n_bonds, bonds = [], [], [], []
    for a, b, n in chunks:
        a, b, n = np.asarray(a), np.asarray(b), np.asarray(n, dtype=np.int64)
        width = a.shape[1] if a.ndim == 2 else 0
        n_atoms.append(n)
        atoms.append(a[np.arange(width)[None, :] < n[:, None]])
        lower = np.tril(b, -1) if b.size else b
        mol, i, j = np.nonzero(lower)
        inside = i < n[mol]  # what the decoder wrote past a molecule's end is no part of it
        mol, i, j = mol[inside], i[inside], j[inside]
        n_bonds.append(np.bincount(mol, minlength=n.size))
        bonds.append(np.stack([i, j, lower[mol, i, j]], axis=1))
    cat = (lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape, np.int64))
    write_npz(path, {"tokens": np.asarray(tokens, dtype=str), "n_atoms": cat(n_atoms, 0).astype(np.int16),
                     "atoms": cat(atoms, 0).astype(np.int8), "n_bonds": cat(n_bonds, 0).astype(np.int16),
                     "bonds": cat(bonds, (0, 3)).astype(np.int8)}, compressed=True)


def load_decoded(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """``(tokens, atoms (B, A) with -1 padding, bonds (B, A, A) symmetric, n (B,))`` of a file of
    :func:`save_decoded`."""
    with np.load(path, allow_pickle=False) as f:
        tokens, n, flat_atoms = f["tokens"].tolist(), f["n_atoms"].astype(np.int64), f["atoms"].astype(np.int64)
        n_bonds, flat_bonds = f["n_bonds"].astype(np.int64), f["bonds"].astype(np.int64)
    width = int(n.max()) if n.size else 0
    atoms = np.full((n.size, width), -1, dtype=np.int64)
    atoms[np.arange(width)[None, :] < n[:, None]] = flat_atoms
    bonds = np.zeros((n.size, width, width), dtype=np.int64)
    mol = np.repeat(np.arange(n.size), n_bonds)
    bonds[mol, flat_bonds[:, 0], flat_bonds[:, 1]] = flat_bonds[:, 2]
    bonds[mol, flat_bonds[:, 1], flat_bonds[:, 0]] = flat_bonds[:, 2]
    return tokens, atoms, bonds, n
