"""Featurisation for the graph VAE: atom tokens (element + formal charge), molecules as padded
node / edge arrays in the canonical breadth-first order (:func:`featurize`), a table of them filled
lazily and in background processes (:class:`GraphTable`), batches for the encoder and decoder
(:func:`collate`), and the training SMILES per dataset."""
from __future__ import annotations

import hashlib
import os
import re
import threading
import warnings
from collections import Counter
from functools import lru_cache
from multiprocessing import get_context
from typing import Sequence

import numpy as np
import torch
from rdkit import Chem

from ..chem.build import mol_from_graph, sanitize
from ..chem.elements import atomic_number, max_valence, parse_token, token_name

_BOND_ORDER = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
_VALENCE_BINS = 8           # embeddings of valence counts clamp at 7
_MAX_HS = 4                 # hydrogen-count feature clamps at 4
NODE_COLUMNS = 4            # token, hydrogens, aromatic, in ring
EDGE_COLUMNS = 5            # later atom, earlier atom, order, aromatic, in ring
MIN_TOKEN_COUNT = 10        # tokens rarer than this in the training set are left out of the vocabulary


# --- atom tokens in SMILES text -----------------------------------------------------------------
_SMILES_ATOM = re.compile(r"\[[^\]]+\]|Br|Cl|[BCNOPSFI]|[bcnops]")
_BRACKET = re.compile(r"\[\d*([A-Z][a-z]?|se|as|te|[bcnops])[^\]+-]*((?:\+|-)+\d*)?[^\]]*\]")


def _bracket_token(text: str) -> str | None:
    m = _BRACKET.fullmatch(text)
    if m is None:
        return None
    symbol = m.group(1)[0].upper() + m.group(1)[1:]
    if symbol == "H":
        return None
    signs = m.group(2) or ""
    digits = signs.lstrip("+-")
    sign = signs[:1]
    charge = 0 if not sign else (1 if sign == "+" else -1) * (int(digits) if digits else len(signs))
    return token_name(symbol, charge)


def scan_atom_tokens(smiles: Sequence[str]) -> tuple[Counter, int]:
    """Atom-token counts and the largest heavy-atom count, read from SMILES text without RDKit.

    A fast pre-pass (seconds for MOSES' 1.6 M strings) that fixes the vocabulary and the size
    limit before molecules are featurised lazily; explicit hydrogens are not counted. The counts
    are of the SMILES as written: RDKit's normalisations on parsing (e.g. a nitro group written
    N(=O)=O becomes [N+](=O)[O-]) are not applied, so charged tokens can be undercounted.
    """
    counts: Counter = Counter()
    largest = 0
    for s in smiles:
        atoms = _SMILES_ATOM.findall(s)
        n = len(atoms)
        for a in atoms:
            if a[0] == "[":
                tok = _bracket_token(a)
                if tok is None:
                    n -= 1
                    continue
                counts[tok] += 1
            else:
                counts[a[0].upper() + a[1:]] += 1
        largest = max(largest, n)
    return counts, largest


# --- featurisation --------------------------------------------------------------------------------
def _canonical_hash(smiles: str) -> int:
    return int.from_bytes(hashlib.blake2b(smiles.encode(), digest_size=8).digest(), "little", signed=True)


@lru_cache(maxsize=16)
def _token_tables(tokens: tuple[str, ...]) -> tuple[dict[tuple[str, int], int], list[int], list[int], list[int]]:
    """(symbol, charge) -> index, valence caps, atomic numbers and charges of a vocabulary."""
    parsed = [parse_token(t) for t in tokens]
    return ({sc: k for k, sc in enumerate(parsed)}, [max_valence(t) for t in tokens],
            [atomic_number(s) for s, _ in parsed], [c for _, c in parsed])


def featurize(molecule: "str | Chem.Mol", tokens: Sequence[str], max_atoms: int,
              max_edges: int | None = None) -> tuple[np.ndarray, np.ndarray, int] | str:
    """A molecule as the decoder's target graph, or the reason it cannot be one.

    Returns ``(nodes, edges, key)``: ``nodes`` (n, 4) int8 rows ``[token, hydrogens, aromatic,
    in_ring]`` in canonical BFS order; ``edges`` (m, 5) int8 rows ``[t, j, order, aromatic, in_ring]``
    with ``j < t`` and Kekulé orders 1-3; ``key`` a 64-bit hash of the canonical non-isomeric SMILES.
    Hydrogens must be the implicit ones RDKit fills in (checked by rebuilding the molecule from the
    graph whenever an atom carries a charge or bracket hydrogens), so decoding the target graph
    reproduces the input exactly.
    """
    if isinstance(molecule, str):
        mol = Chem.MolFromSmiles(molecule) if molecule.strip() else None
        if mol is None:
            return "RDKit cannot parse this SMILES"
    elif isinstance(molecule, Chem.Mol):
        mol = sanitize(molecule)
        if mol is None:
            return "RDKit cannot sanitise this molecule"
    else:
        return f"expected a SMILES string or an RDKit Mol, got {type(molecule).__name__}"
    n = mol.GetNumAtoms()
    if n and mol.GetNumHeavyAtoms() < n:
        mol = Chem.RemoveHs(mol)
        n = mol.GetNumAtoms()
    if n == 0:
        return "the molecule has no heavy atoms"
    if n > max_atoms:
        return f"it has {n} heavy atoms; this model decodes at most {max_atoms}"
    n_frags = len(Chem.GetMolFrags(mol))
    if n_frags > 1:
        return f"it has {n_frags} disconnected fragments; the decoder builds connected graphs"
    tokens = tuple(tokens)
    index, caps, _, _ = _token_tables(tokens)
    nodes = np.zeros((n, NODE_COLUMNS), dtype=np.int64)
    check_hydrogens = False
    for i in range(n):
        a = mol.GetAtomWithIdx(i)
        if a.GetNumRadicalElectrons():
            return f"atom {i} ({a.GetSymbol()}) is a radical"
        key = (a.GetSymbol(), a.GetFormalCharge())
        k = index.get(key)
        if k is None:
            return f"atom {token_name(*key)} is not in this model's vocabulary ({', '.join(tokens)})"
        nodes[i] = (k, min(a.GetTotalNumHs(), _MAX_HS), a.GetIsAromatic(), a.IsInRing())
        check_hydrogens = check_hydrogens or key[1] != 0 or a.GetNoImplicit()
    kek = Chem.Mol(mol)
    try:
        Chem.Kekulize(kek, clearAromaticFlags=True)
    except Exception:  # RDKit raises KekulizeException (and others) for bad aromatic systems
        return "it cannot be kekulised"
    orders = Chem.GetAdjacencyMatrix(kek, useBO=True)
    if not np.all(np.isin(orders, (0.0, 1.0, 2.0, 3.0))):
        return "it has bonds other than single, double, triple or aromatic"
    orders = orders.astype(np.int64)
    valence = orders.sum(1) + nodes[:, 1]
    over = np.flatnonzero(valence > np.asarray(caps)[nodes[:, 0]])
    if over.size:
        i = int(over[0])
        return f"atom {i} ({tokens[nodes[i, 0]]}) exceeds valence {caps[nodes[i, 0]]}"
    ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=True))
    by_rank = np.argsort(ranks)
    adjacency = orders[np.ix_(by_rank, by_rank)] > 0  # atoms renumbered by canonical rank
    neighbours = [np.flatnonzero(row).tolist() for row in adjacency]
    bfs, seen = [0], [False] * n
    seen[0] = True
    for i in bfs:  # breadth-first from the lowest rank; the list grows while it is walked
        for nb in neighbours[i]:
            if not seen[nb]:
                seen[nb] = True
                bfs.append(nb)
    order = by_rank[bfs]                      # original atom index of BFS position t
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    m_bonds = mol.GetNumBonds()
    if max_edges is not None and m_bonds > max_edges:
        return f"it has {m_bonds} bonds; this table holds at most {max_edges}"
    edges = np.zeros((m_bonds, EDGE_COLUMNS), dtype=np.int64)
    for k in range(m_bonds):
        b = mol.GetBondWithIdx(k)
        u, v = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        i, j = pos[u], pos[v]
        edges[k] = (max(i, j), min(i, j), orders[u, v], b.GetIsAromatic(), b.IsInRing())
    canonical = Chem.MolToSmiles(mol, isomericSmiles=False)
    nodes = nodes[order]
    if check_hydrogens:
        _, _, zs, charges = _token_tables(tokens)
        matrix = np.zeros((n, n), dtype=np.int64)
        matrix[edges[:, 0], edges[:, 1]] = edges[:, 2]
        rebuilt = sanitize(mol_from_graph([zs[t] for t in nodes[:, 0]], matrix + matrix.T,
                                          [charges[t] for t in nodes[:, 0]]))
        if rebuilt is None or Chem.MolToSmiles(rebuilt, isomericSmiles=False) != canonical:
            return "its hydrogen counts differ from the default valences (explicit or missing hydrogens)"
    return nodes.astype(np.int8), edges.astype(np.int8), _canonical_hash(canonical)


def _featurize_star(job: tuple[list, tuple[str, ...], int, int]) -> list:
    items, tokens, max_atoms, max_edges = job
    return [featurize(x, tokens, max_atoms, max_edges) for x in items]


class GraphTable:
    """Molecules featurised for the VAE, held in padded arrays and filled on demand.

    ``batch(indices)`` featurises whatever it has not seen yet (so training starts at once), and
    :meth:`prefetch` fills the rest in background processes. Molecules that cannot be represented
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
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self.items)

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

    def prefetch(self, workers: int, chunk: int = 4096) -> None:
        """Featurise every molecule in ``workers`` background processes (returns at once)."""
        if self._thread is not None or workers < 1 or not len(self):
            return
        self._thread = threading.Thread(target=self._prefetch, args=(workers, chunk), daemon=True)
        self._thread.start()

    def _prefetch(self, workers: int, chunk: int) -> None:
        # multiprocessing.Pool workers are daemonic: they are terminated when the trainer exits,
        # even if featurisation has not finished (a ProcessPoolExecutor would be waited for).
        starts = range(0, len(self), chunk)
        jobs = ((self.items[s:s + chunk], self.tokens, self.max_atoms, self.max_edges) for s in starts)
        with get_context("forkserver").Pool(workers) as pool:
            for s, results in zip(starts, pool.imap(_featurize_star, jobs)):
                for k, result in enumerate(results):
                    if self.status[s + k] == 0:
                        self._store(s + k, result)

    def wait(self) -> None:
        """Block until a running :meth:`prefetch` has finished."""
        if self._thread is not None:
            self._thread.join()

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



def default_workers() -> int:
    """Background featurisation processes: all cores but one, at most 8 (other jobs may share the
    machine; 8 featurise MOSES' 1.6 M molecules in about a minute)."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def _has_valence(token: str) -> bool:
    try:
        max_valence(token)
    except ValueError:
        return False
    return True


def _dataset_smiles(dataset: str) -> tuple[list[str], list[str]]:
    """Training SMILES and 2,000 held-out ones in random order (for the learning curve's
    reconstruction check; empty, with a warning, if the held-out file is not installed)."""
    from ..datasets import dataset_smiles

    train = dataset_smiles(dataset, "train")
    try:
        holdout = dataset_smiles(dataset, "valid" if dataset == "qm9" else "test")
    except FileNotFoundError as exc:
        warnings.warn(f"no held-out molecules for the learning curve's reconstruction check: {exc}", stacklevel=2)
        holdout = []
    pick = np.random.default_rng(0).permutation(len(holdout))[:2000]
    return train, [holdout[i] for i in pick]
