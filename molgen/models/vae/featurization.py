"""Featurisation for the graph VAE: atom tokens (element + formal charge) read from SMILES text
(:func:`scan_atom_tokens`), molecules as node / edge arrays in the canonical breadth-first order of
:mod:`molgen.chem.order` (:func:`featurize`; bonds kekulised in the input's numbering), and the
parallel featurisation of whole training sets with its cache keys (the tables that hold the result
are :mod:`molgen.models.vae.table`).

The training-set cache lives in ``molgen._cache.cache_dir("vae")``: ``<name>-<key>.npz`` holds the
featurised graphs as flat int8 arrays (``nodes`` (sum n, 4), ``edges`` (sum m, 5), per molecule
``n_nodes``, ``n_edges``, ``keys``, ``status``; the rejected molecules' positions and reasons; the
layout is :mod:`molgen.models.vae.graphs`, which reads and writes it without RDKit),
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
from collections import Counter
from functools import lru_cache
from multiprocessing import get_context
from typing import Sequence

import numpy as np
from rdkit import Chem, rdBase

from ..._cache import cache_dir, cached_npz, digest_strings
from ...chem.build import mol_from_graph, quiet_rdkit, sanitize
from ...chem.elements import atomic_number, max_valence, parse_token, token_name
from ...chem.order import canonical_bfs_order
from .graphs import EDGE_COLUMNS, MAX_HS, NODE_COLUMNS  # the array layout (no RDKit)

_BOND_ORDER = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
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
def canonical_hash(smiles: str) -> int:
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
        with quiet_rdkit():
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
        with quiet_rdkit():
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
        nodes[i] = (k, min(a.GetTotalNumHs(), MAX_HS), a.GetIsAromatic(), a.IsInRing())
        check_hydrogens = check_hydrogens or key[1] != 0 or a.GetNoImplicit()
    kek = Chem.Mol(mol)
    try:
        with quiet_rdkit():
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
    order = canonical_bfs_order(mol)          # original atom index of BFS position t
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
    return nodes.astype(np.int8), edges.astype(np.int8), canonical_hash(canonical)


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
                "code": _source_digest(featurize, _token_tables, canonical_hash, canonical_bfs_order,
                                        mol_from_graph, sanitize)}
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
