"""The autoregressive model's actions and their flat-array form, without RDKit (a bare GPU machine trains
from a pre-linearised set, :mod:`benchmarks.gpu_burst.moses_travel`; the linearisation of molecules that
fills these arrays is :mod:`molgen.models.ar.encoding`).

- ``ATOM(type, parent, bond)``: add a new atom of ``type`` bonded to the earlier atom ``parent`` with a
  single, double or triple bond (the first atom has no parent and bond 0);
- ``RING(target, bond)``: bond the most recently added atom to an earlier atom ``target``;
- ``STOP``.

Atom types are (element, formal charge) pairs such as ``"C"``, ``"N+"``, ``"O-"``, coded as integers
independent of any vocabulary (:func:`atom_code`). :class:`EncodedSet` holds many molecules' sequences in
flat arrays; :class:`ActionDataset` cuts padded training batches from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..._cache import write_npz
from ...chem import elements
from ...chem.elements import atomic_number, symbol, token_name

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

    def save(self, path: Path, compressed: bool = False) -> None:
        """Write the arrays to ``path`` (.npz, zip-compressed with ``compressed``), atomically."""
        write_npz(path, self.to_arrays(), compressed)

    @classmethod
    def load(cls, path: Path) -> "EncodedSet":
        with np.load(path, allow_pickle=False) as f:
            return cls.from_arrays({k: f[k] for k in f.files})


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
