"""Featurisation for the graph VAE: atom tokens (element + formal charge), molecules as padded
node / edge arrays in the canonical breadth-first order (:func:`featurize`), a table of them
(:class:`GraphTable`: filled lazily for user input, or built once per training set and cached on
disk, :meth:`GraphTable.cached`), batches for the encoder and decoder (:func:`collate`), and the
training SMILES per dataset.

The training-set cache lives in ``molgen._cache.cache_dir("vae")``: ``<name>-<key>.npz`` holds the
featurised graphs as flat int8 arrays (``nodes`` (sum n, 4), ``edges`` (sum m, 5), per molecule
``n_nodes``, ``n_edges``, ``keys``, ``status``; the rejected molecules' positions and reasons),
and ``<name>-scan-<key>.npz`` the token counts of :func:`scan_atom_tokens`. Keys are SHA-256
digests of every SMILES and of the settings (vocabulary, size limits, :data:`FEATURIZE_VERSION`,
the featuriser's source code and the RDKit version), so any edit of the list or of the code
builds a new file. Files are written under a temporary name and renamed (no half files, no
pickles)."""
from __future__ import annotations

import hashlib
import inspect
import os
import re
import time
import warnings
from collections import Counter
from functools import lru_cache
from multiprocessing import get_context
from typing import Sequence

import numpy as np
import torch
from rdkit import Chem, rdBase

from .._cache import cache_dir, cached_npz, digest_strings
from ..chem.build import mol_from_graph, sanitize
from ..chem.elements import atomic_number, max_valence, parse_token, token_name

_BOND_ORDER = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
_VALENCE_BINS = 8           # embeddings of valence counts clamp at 7
_MAX_HS = 4                 # hydrogen-count feature clamps at 4
NODE_COLUMNS = 4            # token, hydrogens, aromatic, in ring
EDGE_COLUMNS = 5            # later atom, earlier atom, order, aromatic, in ring
MIN_TOKEN_COUNT = 10        # tokens rarer than this in the training set are left out of the vocabulary
#: Bump when :func:`featurize` changes what it returns (the cache key also hashes its source code).
FEATURIZE_VERSION = 1


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
    if molecule is None:
        return "no molecule (None, e.g. an invalid sample)"
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


# --- many molecules at once, cached on disk -----------------------------------------------------
def _flatten(results: Sequence[tuple[np.ndarray, np.ndarray, int] | str]) -> dict[str, np.ndarray]:
    """Results of :func:`featurize` as flat arrays (the cache's layout, see the module docstring)."""
    m = len(results)
    status = np.full(m, 2, dtype=np.int8)
    n_nodes, n_edges = np.zeros(m, dtype=np.int16), np.zeros(m, dtype=np.int16)
    keys = np.zeros(m, dtype=np.int64)
    nodes, edges, bad_idx, bad_reason = [], [], [], []
    for i, r in enumerate(results):
        if isinstance(r, str):
            bad_idx.append(i)
            bad_reason.append(r)
            continue
        nd, ed, key = r
        status[i], n_nodes[i], n_edges[i], keys[i] = 1, len(nd), len(ed), key
        nodes.append(nd)
        edges.append(ed)
    return {"nodes": np.concatenate(nodes) if nodes else np.zeros((0, NODE_COLUMNS), np.int8),
            "edges": np.concatenate(edges) if edges else np.zeros((0, EDGE_COLUMNS), np.int8),
            "n_nodes": n_nodes, "n_edges": n_edges, "keys": keys, "status": status,
            "failed_idx": np.asarray(bad_idx, dtype=np.int64),
            "failed_reason": np.asarray(bad_reason, dtype=str) if bad_reason else np.zeros(0, "<U1")}


def _featurize_flat(job: tuple[list, tuple[str, ...], int, int]) -> dict[str, np.ndarray]:
    return _flatten(_featurize_star(job))


def _concat(parts: Sequence[dict[str, np.ndarray]], starts: Sequence[int]) -> dict[str, np.ndarray]:
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "failed_idx"}
    out["failed_idx"] = np.concatenate([p["failed_idx"] + s for p, s in zip(parts, starts)])
    return out


def build_workers() -> int:
    """Processes for a one-off featurisation that training waits for: every core, at most 16."""
    return max(1, min(16, os.cpu_count() or 1))


def featurize_many(molecules: Sequence["str | Chem.Mol"], tokens: Sequence[str], max_atoms: int,
                   max_edges: int, workers: int | None = None, chunk: int = 4096, progress: bool = True,
                   desc: str = "featurise") -> dict[str, np.ndarray]:
    """:func:`featurize` over many molecules, in ``workers`` processes (default :func:`build_workers`)
    working on chunks of ``chunk`` molecules, with a progress bar; returns the flat arrays of the cache."""
    from tqdm import tqdm

    tokens = tuple(tokens)
    n = len(molecules)
    starts = list(range(0, n, chunk)) or [0]
    jobs = ((list(molecules[s:s + chunk]), tokens, int(max_atoms), int(max_edges)) for s in starts)
    workers = min(workers if workers is not None else build_workers(), len(starts))
    parts = []
    with tqdm(total=n, disable=not progress, desc=desc, unit="mol", dynamic_ncols=True) as bar:
        if workers <= 1:
            for job in jobs:
                parts.append(_featurize_flat(job))
                bar.update(len(job[0]))
        else:
            with get_context("forkserver").Pool(workers) as pool:
                for part in pool.imap(_featurize_flat, jobs):
                    parts.append(part)
                    bar.update(len(part["status"]))
    return _concat(parts, starts)


def _source_digest(*objects: object) -> str:
    """Digest of the source code of functions (empty where the source is not available)."""
    h = hashlib.sha256()
    for obj in objects:
        try:
            h.update(inspect.getsource(obj).encode())
        except (OSError, TypeError):
            h.update(getattr(obj, "__qualname__", repr(obj)).encode())
    return h.hexdigest()


def featurization_key(smiles: Sequence[str], tokens: Sequence[str], max_atoms: int, max_edges: int,
                      digest: str | None = None) -> str:
    """SHA-256 tying a cached featurisation to every SMILES (``digest``: their
    :func:`molgen._cache.digest_strings`, if already computed), the vocabulary and its valence caps,
    the size limits, :data:`FEATURIZE_VERSION`, the featuriser's code and the RDKit version."""
    settings = {"version": FEATURIZE_VERSION, "rdkit": rdBase.rdkitVersion, "tokens": list(tokens),
                "caps": [max_valence(t) for t in tokens], "max_atoms": int(max_atoms),
                "max_edges": int(max_edges), "molecules": len(smiles),
                "code": _source_digest(featurize, _token_tables, _canonical_hash, mol_from_graph, sanitize)}
    text = repr(sorted(settings.items())) + "\n" + (digest or digest_strings(list(smiles)))
    return hashlib.sha256(text.encode()).hexdigest()


def cached_scan(name: str, smiles: Sequence[str], digest: str | None = None,
                verbose: bool = True) -> tuple[Counter, int]:
    """:func:`scan_atom_tokens`, cached in ``cache_dir("vae")`` by the full content of ``smiles``."""
    key = hashlib.sha256((f"scan|{len(smiles)}|{_source_digest(scan_atom_tokens, _bracket_token)}|"
                          + (digest or digest_strings(list(smiles)))).encode()).hexdigest()
    path = cache_dir("vae") / f"{name}-scan-{key[:16]}.npz"

    def compute() -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        counts, largest = scan_atom_tokens(smiles)
        if verbose:
            print(f"scanned the atom tokens of {len(smiles):,} {name} SMILES in {time.perf_counter() - t0:.1f} s; "
                  f"cached in {path}", flush=True)
        return {"tokens": np.asarray(list(counts), dtype=str) if counts else np.zeros(0, "<U1"),
                "counts": np.asarray(list(counts.values()), dtype=np.int64), "largest": np.asarray(largest)}

    arrays = cached_npz(path, key, compute)
    return Counter(dict(zip(arrays["tokens"].tolist(), arrays["counts"].tolist()))), int(arrays["largest"])


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
