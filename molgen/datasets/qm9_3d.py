"""QM9 as dense padded tensors for the 3D models, with batches trimmed to their largest molecule."""
from __future__ import annotations

import numpy as np
import torch

from ..chem.elements import VOCABULARIES, atomic_number
from .qm9 import indices, load_qm9_arrays


class QM9Padded:
    """A split of QM9 as padded arrays: ``types`` (M, 29) vocabulary indices (-1 = padding) and
    ``pos`` (M, 29, 3) Angstrom. ``batch(idx)`` returns tensors trimmed to the batch's largest
    molecule (or kept at full size with ``fixed_size``). ``heavy_only`` drops hydrogens (they are
    implicit and added back by RDKit)."""

    def __init__(self, split: str = "train", heavy_only: bool = False, fixed_size: bool = False) -> None:
        self.fixed_size = fixed_size  # keep the full padding (static shapes for torch.compile)
        arr = load_qm9_arrays()
        idx = indices(split)
        self.atom_types = VOCABULARIES["qm9_heavy" if heavy_only else "qm9"]
        lookup = np.full(120, -1, dtype=np.int64)
        for k, s in enumerate(self.atom_types):
            lookup[atomic_number(s)] = k
        n_atoms = arr.n_atoms[idx]
        owner = np.repeat(np.arange(idx.size), n_atoms)
        starts = arr.ptr[idx]
        atom_idx = np.concatenate([np.arange(s, s + k) for s, k in zip(starts, n_atoms)])
        z = arr.z[atom_idx].astype(np.int64)
        pos = arr.pos[atom_idx]
        if heavy_only:
            keep = z != 1
            owner, z, pos = owner[keep], z[keep], pos[keep]
        counts = np.bincount(owner, minlength=idx.size)
        slot = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
        nmax = int(counts.max())
        self.types = np.full((idx.size, nmax), -1, dtype=np.int64)
        self.pos = np.zeros((idx.size, nmax, 3), dtype=np.float32)
        self.types[owner, slot] = lookup[z]
        self.pos[owner, slot] = pos
        self.n_atoms = counts
        self.atom_count_hist = np.bincount(counts, minlength=nmax + 1).astype(np.float64)
        self._types_t = torch.from_numpy(self.types)
        self._pos_t = torch.from_numpy(self.pos)

    def __len__(self) -> int:
        return self.types.shape[0]

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        n = self.types.shape[1] if self.fixed_size else int(self.n_atoms[idx].max())
        types = self._types_t[idx_t, :n]
        return {"types": types, "pos": self._pos_t[idx_t, :n], "mask": types >= 0}
