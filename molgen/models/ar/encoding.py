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
from multiprocessing import get_context
from typing import Sequence

import numpy as np
import torch
from rdkit import Chem, rdBase

from ..._cache import cache_dir, cached_npz, digest_strings
from ...chem.build import BOND_TYPES, quiet_rdkit
from ...chem.convert import to_mol
from ...chem.order import canonical_bfs_order, canonical_ranks
from .actions import (ATOM, RING, STOP, ActionDataset, EncodedSet, Linearized, _z_charge, atom_code,
                      code_to_token, vocabulary)

# the RDKit-free names live in .actions; imported from here too
__all__ = ["ATOM", "RING", "STOP", "ActionDataset", "EncodedSet", "Linearized", "atom_code", "code_to_token",
           "vocabulary", "ENCODING_VERSION", "prepare_mol", "linearize", "delinearize", "molecules_from_actions",
           "encode", "encoding_key", "encode_cached"]
ENCODING_VERSION = 1


# --- one molecule ----------------------------------------------------------------------------------
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


def molecules_from_actions(encoded: EncodedSet) -> list[Chem.Mol]:
    """The (unsanitised) Mols of an encoded set's action sequences, in its order (e.g. the samples of
    :meth:`molgen.models.ar.ARModel.sample_actions`; ``SampleSet.from_mols`` sanitises and scores them)."""
    out = []
    for i in range(len(encoded)):
        a, b = encoded.atom_ptr[i], encoded.atom_ptr[i + 1]
        s, e = encoded.act_ptr[i], encoded.act_ptr[i + 1]
        out.append(delinearize([code_to_token(c) for c in encoded.codes[a:b].tolist()], encoded.kind[s:e],
                               encoded.ptr[s:e], encoded.bond[s:e]))
    return out


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
