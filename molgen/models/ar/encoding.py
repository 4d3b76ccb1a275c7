"""Linearisation of molecular graphs for the autoregressive model (:mod:`molgen.models.ar`).

A molecule (heavy atoms, hydrogens implicit) becomes a sequence of *actions*:

- ``ATOM(type, parent, bond)``: add a new atom of ``type`` bonded to the earlier atom ``parent``
  with a single, double or triple bond (the first atom has no parent and bond 0);
- ``RING(target, bond)``: bond the most recently added atom to an earlier atom ``target``;
- ``STOP``.

The order is canonical (:func:`molgen.chem.order.canonical_bfs_order`: breadth-first from canonical
rank 0, neighbours in rank order); bonds are kekulised in rank numbering (so the Kekulé structure
does not depend on how the input was written). In BFS order
an atom's parent is its earliest-visited neighbour; its other earlier neighbours are ring closures,
emitted right after it in increasing order. Atom types are (element, formal charge) pairs such as
``"C"``, ``"N+"``, ``"O-"``.

The encoding of a whole dataset runs in parallel worker processes and is cached as ``.npz`` under
``molgen._cache.cache_dir("ar")`` (``<name>-<key>.npz``: the flat arrays of :class:`EncodedSet`),
keyed by a SHA-256 digest of every SMILES, :data:`ENCODING_VERSION` and the RDKit version.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from rdkit import Chem, rdBase

from ..._cache import cache_dir, cached_npz, digest_strings
from ...chem import elements
from ...chem.build import BOND_TYPES, quiet_rdkit
from ...chem.convert import to_mol
from ...chem.elements import atomic_number, symbol, token_name
from ...chem.order import canonical_bfs_order, canonical_ranks

ENCODING_VERSION = 1
ATOM, RING, STOP = 0, 1, 2
_CHARGE_OFFSET = 8  # atom code = Z * 16 + charge + 8, charges -8..7


# --- atom types ------------------------------------------------------------------------------------
def atom_code(z: int, charge: int) -> int:
    """Integer code of an (atomic number, formal charge) pair, independent of any vocabulary."""
    return int(z) * 16 + int(charge) + _CHARGE_OFFSET


def code_to_token(code: int) -> str:
    """Token name of an atom code: ``"C"``, ``"N+"``, ``"O-"``, ``"Fe+2"``."""
    z, c = divmod(int(code), 16)
    return token_name(symbol(z), c - _CHARGE_OFFSET)


def _z_charge(token: str) -> tuple[int, int]:
    """(atomic number, formal charge) of a token name such as ``"N+"`` or ``"O-"``."""
    sym, charge = elements.parse_token(token)
    return atomic_number(sym), charge


# --- one molecule ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Linearized:
    """The canonical action sequence of one molecule (STOP implicit at the end).

    ``codes[a]`` is the atom code of atom ``a`` in BFS order; ``kind``, ``ptr``, ``bond`` have one
    entry per action: ``kind`` ATOM (0) or RING (1); ``ptr`` the parent / ring target (-1 for the
    first atom); ``bond`` 1, 2 or 3 (0 for the first atom).
    """

    codes: np.ndarray
    kind: np.ndarray
    ptr: np.ndarray
    bond: np.ndarray


def prepare_mol(x: "str | Chem.Mol | None") -> "Chem.Mol | str":
    """A sanitised, hydrogen-free Mol, or the reason why the input cannot be linearised."""
    if x is None:
        return "no molecule (None, e.g. an invalid sample)"
    if isinstance(x, str) and not x.strip():
        return "empty SMILES"
    mol = to_mol(x.strip() if isinstance(x, str) else x)
    if mol is None:
        return (f"SMILES {x!r} does not parse" if isinstance(x, str)
                else "molecule does not sanitise in RDKit")
    if mol.GetNumAtoms() != mol.GetNumHeavyAtoms():  # explicit hydrogen atoms
        try:
            with quiet_rdkit():  # "not removing hydrogen atom without neighbors" is not the user's business
                mol = Chem.RemoveHs(mol)
        except Exception:  # RDKit raises several types
            return "hydrogens cannot be removed"
    if mol.GetNumAtoms() == 0:
        return "no heavy atoms"
    return mol


def linearize(x: "str | Chem.Mol | None") -> "Linearized | str":
    """Canonical action sequence of a molecule, or the reason why it has none (a string)."""
    mol = prepare_mol(x)
    if isinstance(mol, str):
        return mol
    n = mol.GetNumAtoms()
    if len(Chem.GetMolFrags(mol)) > 1:
        return "disconnected (several fragments); the model builds connected graphs"
    by_rank = canonical_ranks(mol)
    bfs = canonical_bfs_order(mol, by_rank)
    mol = Chem.RenumberAtoms(mol, by_rank.tolist())  # kekulised in rank numbering: canonical bond orders
    try:
        with quiet_rdkit():
            Chem.Kekulize(mol, clearAromaticFlags=True)
    except Exception:
        return "cannot be kekulised"
    codes = np.empty(n, dtype=np.int16)
    for k in range(n):
        a = mol.GetAtomWithIdx(k)
        if a.GetNumRadicalElectrons():
            return "has radical electrons (hydrogens are implicit, radicals cannot be represented)"
        codes[k] = atom_code(a.GetAtomicNum(), a.GetFormalCharge())
    adj = Chem.GetAdjacencyMatrix(mol, useBO=True)
    if np.any((adj != np.round(adj)) | (adj > 3)):
        return "has bonds other than single, double and triple after kekulisation"
    nbrs: list[list[int]] = [[] for _ in range(n)]  # ascending = canonical rank order
    for i, j in zip(*(x.tolist() for x in np.nonzero(adj))):
        nbrs[i].append(j)
    rank_of = np.empty(n, dtype=np.int64)
    rank_of[by_rank] = np.arange(n)
    order = rank_of[bfs].tolist()  # BFS order in rank numbering
    pos = {a: i for i, a in enumerate(order)}
    kind, ptr, bond = [ATOM], [-1], [0]
    for i in range(1, n):
        a = order[i]
        earlier = sorted((pos[nb], nb) for nb in nbrs[a] if pos[nb] < i)
        for k, (j, nb) in enumerate(earlier):
            kind.append(ATOM if k == 0 else RING)
            ptr.append(j)
            bond.append(int(adj[a, nb]))
    return Linearized(codes[order], np.asarray(kind, np.int8), np.asarray(ptr, np.int16),
                      np.asarray(bond, np.int8))


def delinearize(atom_tokens: Sequence[str], kind: Sequence[int], ptr: Sequence[int],
                bond: Sequence[int]) -> Chem.Mol:
    """The (unsanitised) Mol of an action sequence over atom types ``atom_tokens`` (one per atom)."""
    mol = Chem.RWMol()
    for tok in atom_tokens:
        z, c = _z_charge(tok)
        atom = Chem.Atom(z)
        if c:
            atom.SetFormalCharge(c)
        mol.AddAtom(atom)
    n = -1
    for k, p, b in zip(kind, ptr, bond):
        if k == ATOM:
            n += 1
            if n > 0:
                mol.AddBond(n, int(p), BOND_TYPES[int(b)])
        elif k == RING:
            mol.AddBond(n, int(p), BOND_TYPES[int(b)])
        else:
            break
    return mol.GetMol()


# --- many molecules --------------------------------------------------------------------------------
@dataclass
class EncodedSet:
    """Action sequences of many molecules in flat arrays (molecule ``i``: atoms
    ``atom_ptr[i]:atom_ptr[i+1]``, actions ``act_ptr[i]:act_ptr[i+1]``). ``failed`` maps input
    positions of molecules that could not be linearised to the reason."""

    codes: np.ndarray
    atom_ptr: np.ndarray
    kind: np.ndarray
    ptr: np.ndarray
    bond: np.ndarray
    act_ptr: np.ndarray
    source: np.ndarray  # input position of each encoded molecule
    failed: dict[int, str]

    def __len__(self) -> int:
        return self.source.size

    @classmethod
    def from_list(cls, items: Sequence["Linearized | str"], offset: int = 0) -> "EncodedSet":
        good = [(k, it) for k, it in enumerate(items) if isinstance(it, Linearized)]
        failed = {offset + k: it for k, it in enumerate(items) if isinstance(it, str)}
        cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
        return cls(
            codes=cat([it.codes for _, it in good], np.int16),
            atom_ptr=np.concatenate([[0], np.cumsum([it.codes.size for _, it in good])]).astype(np.int64),
            kind=cat([it.kind for _, it in good], np.int8),
            ptr=cat([it.ptr for _, it in good], np.int16),
            bond=cat([it.bond for _, it in good], np.int8),
            act_ptr=np.concatenate([[0], np.cumsum([it.kind.size for _, it in good])]).astype(np.int64),
            source=np.asarray([offset + k for k, _ in good], np.int64), failed=failed)

    @classmethod
    def concat(cls, parts: Sequence["EncodedSet"]) -> "EncodedSet":
        def offsets(key: str) -> np.ndarray:
            out, base = [np.zeros(1, np.int64)], 0
            for p in parts:
                out.append(getattr(p, key)[1:] + base)
                base += int(getattr(p, key)[-1])
            return np.concatenate(out)
        failed: dict[int, str] = {}
        for p in parts:
            failed.update(p.failed)
        return cls(np.concatenate([p.codes for p in parts]), offsets("atom_ptr"),
                   np.concatenate([p.kind for p in parts]), np.concatenate([p.ptr for p in parts]),
                   np.concatenate([p.bond for p in parts]), offsets("act_ptr"),
                   np.concatenate([p.source for p in parts]), failed)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The set as named arrays (no pickles): the fields, and ``failed`` as two arrays."""
        fk = np.asarray(list(self.failed), np.int64)
        fr = np.asarray(list(self.failed.values()), dtype=str) if self.failed else np.zeros(0, "<U1")
        return {"codes": self.codes, "atom_ptr": self.atom_ptr, "kind": self.kind, "ptr": self.ptr,
                "bond": self.bond, "act_ptr": self.act_ptr, "source": self.source, "failed_idx": fk,
                "failed_reason": fr}

    @classmethod
    def from_arrays(cls, f: "dict[str, np.ndarray]") -> "EncodedSet":
        failed = dict(zip(f["failed_idx"].tolist(), f["failed_reason"].tolist()))
        return cls(f["codes"], f["atom_ptr"], f["kind"], f["ptr"], f["bond"], f["act_ptr"], f["source"], failed)

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **self.to_arrays())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "EncodedSet":
        with np.load(path, allow_pickle=False) as f:
            return cls.from_arrays({k: f[k] for k in f.files})


def _encode_chunk(args: tuple[int, list[str]]) -> EncodedSet:
    offset, smiles = args
    return EncodedSet.from_list([linearize(s) for s in smiles], offset)


def encode(molecules: Sequence["str | Chem.Mol"], workers: int | None = None,
           chunk: int = 4000, progress: bool = False, desc: str = "linearise") -> EncodedSet:
    """Linearise many molecules (SMILES or Mols), in ``workers`` processes for SMILES lists
    (optionally with a progress bar)."""
    from tqdm import tqdm

    n = len(molecules)
    workers = min(workers if workers is not None else (os.cpu_count() or 1), max(n // chunk, 1))
    if workers <= 1 or not all(isinstance(s, str) for s in molecules):
        items = tqdm(molecules, disable=not progress, desc=desc, unit="mol", dynamic_ncols=True)
        return EncodedSet.from_list([linearize(m) for m in items])
    jobs = [(k, list(molecules[k:k + chunk])) for k in range(0, n, chunk)]
    parts = []
    with get_context("spawn" if torch.cuda.is_initialized() else "fork").Pool(workers) as pool, \
            tqdm(total=n, disable=not progress, desc=desc, unit="mol", dynamic_ncols=True) as bar:
        for part in pool.imap(_encode_chunk, jobs, chunksize=1):
            parts.append(part)
            bar.update(len(part) + len(part.failed))
    return EncodedSet.concat(parts)


def encoding_key(smiles: Sequence[str]) -> str:
    """SHA-256 of every SMILES, :data:`ENCODING_VERSION` and the RDKit version (canonical ranks may
    change between RDKit versions): the key of :func:`encode_cached`."""
    head = f"ar-encoding|{ENCODING_VERSION}|{rdBase.rdkitVersion}|{len(smiles)}|"
    return hashlib.sha256((head + digest_strings(list(smiles))).encode()).hexdigest()


def encode_cached(name: str, smiles: Sequence[str], workers: int | None = None,
                  verbose: bool = True) -> EncodedSet:
    """:func:`encode`, cached as ``cache_dir("ar")/<name>-<key>.npz`` with the key of
    :func:`encoding_key` (the full content of ``smiles``): any edited SMILES gives a new file."""
    key = encoding_key(smiles)
    path = cache_dir("ar") / f"{name}-{key[:16]}.npz"
    t0 = time.perf_counter()
    built = []

    def compute() -> dict[str, np.ndarray]:
        built.append(True)
        return encode(smiles, workers=workers, progress=verbose, desc=f"linearise {name}").to_arrays()

    enc = EncodedSet.from_arrays(cached_npz(path, key, compute))
    if verbose and built:
        print(f"linearised {len(smiles):,} {name} molecules in {time.perf_counter() - t0:.1f} s "
              f"({len(enc.failed)} failed); cached in {path}", flush=True)
    return enc


# --- batches for training ---------------------------------------------------------------------------
class ActionDataset:
    """Encoded molecules restricted to a vocabulary, collated into padded action tensors.

    ``batch(indices)`` returns ``kind`` (ATOM 0 / RING 1 / STOP 2, padding -1), ``typ`` (atom type
    index of ATOM actions, else 0), ``ptr`` (parent or ring target, 0 where unused) and ``bond`` (0
    where unused), each a ``(B, L)`` int64 tensor with L the longest sequence including STOP.
    """

    def __init__(self, encoded: EncodedSet, atom_types: Sequence[str], max_atoms: int,
                 max_actions: int) -> None:
        lut = np.full(16 * 128, -1, np.int64)
        for k, tok in enumerate(atom_types):
            z, c = _z_charge(tok)
            lut[atom_code(z, c)] = k
        atom_type = lut[encoded.codes.astype(np.int64)]
        n_atoms = np.diff(encoded.atom_ptr)
        n_act = np.diff(encoded.act_ptr)
        owner = np.repeat(np.arange(n_atoms.size), n_atoms)
        oov = np.bincount(owner[atom_type < 0], minlength=n_atoms.size) > 0
        keep = ~oov & (n_atoms <= max_atoms) & (n_act + 1 <= max_actions)
        self.dropped = {"out_of_vocabulary": int(oov.sum()), "too_large": int((~oov & ~keep).sum())}
        self.encoded = encoded
        self.index = np.flatnonzero(keep)
        typ = np.zeros(encoded.kind.size, np.int64)
        typ[encoded.kind == ATOM] = np.maximum(atom_type, 0)  # ATOM actions follow BFS atom order
        self._typ = typ
        self._kind = encoded.kind.astype(np.int64)
        self._ptr = np.maximum(encoded.ptr.astype(np.int64), 0)
        self._bond = encoded.bond.astype(np.int64)

    def __len__(self) -> int:
        return self.index.size

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        mol = self.index[np.asarray(indices, dtype=np.int64)]
        start = self.encoded.act_ptr[mol]
        length = self.encoded.act_ptr[mol + 1] - start
        cols = np.arange(int(length.max()) + 1)
        valid = cols[None, :] < length[:, None]
        flat = np.where(valid, start[:, None] + cols[None, :], 0)
        kind = np.where(valid, self._kind[flat], -1)
        kind[cols[None, :] == length[:, None]] = STOP
        out = {"kind": kind, "typ": np.where(valid, self._typ[flat], 0),
               "ptr": np.where(valid, self._ptr[flat], 0), "bond": np.where(valid, self._bond[flat], 0)}
        return {k: torch.from_numpy(v) for k, v in out.items()}


# --- vocabulary -------------------------------------------------------------------------------------
def vocabulary(encoded: EncodedSet) -> tuple[list[str], dict[str, int]]:
    """Atom types seen in an encoded set, most frequent first, with their counts."""
    codes, counts = np.unique(encoded.codes.astype(np.int64), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    tokens = [code_to_token(int(codes[k])) for k in order]
    return tokens, {t: int(counts[k]) for t, k in zip(tokens, order)}
