"""QM9 as dense padded tensors for the 3D models, with batches trimmed to their largest molecule."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..chem.elements import VOCABULARIES, atomic_number
from .qm9 import indices, load_qm9_arrays


class QM9Padded:
    """A split of QM9 as padded arrays: ``types`` (M, 29) vocabulary indices (-1 = padding) and
    ``pos`` (M, 29, 3) Angstrom. ``batch(idx)`` returns tensors trimmed to the batch's largest
    molecule (or kept at full size with ``fixed_size``). ``heavy_only`` drops hydrogens (they are
    implicit and added back by RDKit). ``subset``: positions within the split to keep (e.g. a fixed
    random subset for tests and small runs, :func:`molgen.training.data_order.fixed_subset`). ``rows``
    are the molecules' rows of :func:`~molgen.datasets.qm9.load_qm9_arrays` (for their properties)."""

    def __init__(self, split: str = "train", heavy_only: bool = False, fixed_size: bool = False,
                 subset: np.ndarray | None = None) -> None:
        self.fixed_size = fixed_size  # keep the full padding (static shapes for torch.compile)
        arr = load_qm9_arrays()
        idx = indices(split)
        if subset is not None:
            idx = idx[np.asarray(subset, dtype=np.int64)]
        self.rows = idx
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
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return self.types.shape[0]

    def to(self, device: str | torch.device) -> "QM9Padded":
        """Keep the arrays on ``device`` (a few MB for QM9), so that batches are cut there."""
        self.device = torch.device(device)
        self._types_t = self._types_t.to(self.device)
        self._pos_t = self._pos_t.to(self.device)
        return self

    def _width(self, idx: np.ndarray) -> int:
        return self.types.shape[1] if self.fixed_size else int(self.n_atoms[idx].max())

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        idx_t = torch.as_tensor(idx, dtype=torch.long).to(self.device)
        n = self._width(idx)
        types = self._types_t[idx_t, :n]
        return {"types": types, "pos": self._pos_t[idx_t, :n], "mask": types >= 0}


class QM9Bucketed(QM9Padded):
    """QM9Padded whose epochs are planned by molecule size: :meth:`plan` groups each epoch's
    molecules into buckets of atom counts (e.g. ``(12, 16, 20, 24, 29)``) and ``batch`` pads to the
    bucket's edge, so that ``torch.compile`` sees a few static shapes and little padding is computed
    (QM9's mean molecule has 18 atoms, the largest 29). The trainer uses ``plan`` when a dataset has
    one. ``budget="atoms"`` gives smaller buckets proportionally more molecules per batch (the same
    padded atoms per batch); ``"molecules"`` keeps ``batch_size`` molecules in every bucket."""

    def __init__(self, split: str = "train", heavy_only: bool = False,
                 buckets: Sequence[int] = (12, 16, 20, 24, 29), budget: str = "atoms",
                 subset: np.ndarray | None = None) -> None:
        super().__init__(split, heavy_only=heavy_only, subset=subset)
        if budget not in ("atoms", "molecules"):
            raise ValueError(f"budget must be 'atoms' or 'molecules', got {budget!r}")
        self.bucket_budget = budget
        self.buckets = self._check_buckets(buckets, self.types.shape[1])

    @staticmethod
    def _check_buckets(buckets: Sequence[int], nmax: int) -> tuple[int, ...]:
        edges = tuple(sorted({int(b) for b in buckets}))
        if not edges or edges[0] < 1:
            raise ValueError(f"buckets must be positive atom counts, got {list(buckets)}")
        if edges[-1] < nmax:
            edges = (*edges, nmax)  # the largest molecules always have a bucket
        return edges

    def bucket_of(self, n_atoms: np.ndarray) -> np.ndarray:
        """Index of the smallest bucket edge >= each atom count."""
        return np.searchsorted(np.asarray(self.buckets), n_atoms, side="left")

    def bucket_batch_sizes(self, batch_size: int) -> list[int]:
        """Molecules per batch in each bucket: ``batch_size`` in the largest; with the ``atoms``
        budget, smaller buckets take proportionally more molecules (batch_size x largest edge /
        edge, the same number of padded atoms per batch)."""
        top = self.buckets[-1]
        if self.bucket_budget == "molecules":
            return [batch_size] * len(self.buckets)
        return [max(1, int(batch_size * top // e)) for e in self.buckets]

    def plan(self, epoch: int, seed: int, batch_size: int) -> list[np.ndarray]:
        """The batches of one epoch, in order: molecules shuffled with a generator seeded by
        (seed, epoch), grouped by bucket, cut into full batches (each bucket's remainder, under one
        batch, waits for another epoch), and the batches shuffled."""
        rng = np.random.default_rng([seed, epoch])
        perm = rng.permutation(len(self))
        which = self.bucket_of(self.n_atoms[perm])
        batches: list[np.ndarray] = []
        for b, size in enumerate(self.bucket_batch_sizes(batch_size)):
            members = perm[which == b]
            batches += [members[i * size:(i + 1) * size] for i in range(len(members) // size)]
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    def _width(self, idx: np.ndarray) -> int:
        return self.buckets[int(self.bucket_of(np.array([int(self.n_atoms[idx].max())]))[0])]
