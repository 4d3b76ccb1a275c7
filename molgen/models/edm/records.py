"""What EDM's ``log_likelihood`` accepts, as (atomic numbers, positions in Angstrom) records, the padded
batch it scores them in, and the atom counts of the molecules it samples."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

Record = tuple[np.ndarray, np.ndarray]


def as_records(molecules: Any) -> list[Record | None]:
    """A SampleSet, one RDKit Mol, one (atomic_numbers, positions) pair, or a list of Mols / pairs, as
    records; a Mol without a conformer or anything else unreadable becomes None (scored NaN)."""
    from rdkit import Chem

    if hasattr(molecules, "atomic_numbers") and getattr(molecules, "positions", None) is not None:
        return list(zip(molecules.atomic_numbers, molecules.positions))
    if isinstance(molecules, Chem.Mol):  # one molecule
        molecules = [molecules]
    elif (isinstance(molecules, tuple) and len(molecules) == 2 and np.ndim(molecules[0]) == 1
          and np.ndim(molecules[1]) == 2):  # one (atomic_numbers, positions) pair
        molecules = [molecules]
    elif isinstance(molecules, (str, bytes)) or not hasattr(molecules, "__iter__"):
        raise TypeError("log_likelihood takes a SampleSet, RDKit Mols with 3D conformers, or "
                        f"(atomic_numbers, positions) pairs, not {type(molecules).__name__}")
    out: list[Record | None] = []
    for m in molecules:
        if isinstance(m, Chem.Mol):
            if m.GetNumConformers() == 0:
                out.append(None)
                continue
            out.append((np.array([a.GetAtomicNum() for a in m.GetAtoms()]), m.GetConformer().GetPositions()))
        elif isinstance(m, tuple) and len(m) == 2:
            out.append((np.asarray(m[0]), np.asarray(m[1])))
        else:
            out.append(None)
    return out


def unscorable(record: Record | None, z_to_type: dict[int, int], max_atoms: int, atom_types: Sequence[str]) -> str | None:
    """Why EDM cannot score ``record`` (None when it can)."""
    if record is None:
        return "no 3D coordinates"
    z = record[0]
    if len(z) == 0 or len(z) > max_atoms:
        return f"{len(z)} atoms; this model scores 1 to {max_atoms}"
    outside = sorted({int(a) for a in z} - set(z_to_type))
    if outside:
        return f"elements outside {', '.join(atom_types)} (atomic numbers {outside})"
    return None


def collate(records: list[Record], z_to_type: dict[int, int], device: torch.device) -> dict[str, torch.Tensor]:
    """Pad records into the model's batch: ``types`` (B, N; -1 for padding), ``pos`` (B, N, 3), ``mask``."""
    n = max(len(r[0]) for r in records)
    types = torch.full((len(records), n), -1, dtype=torch.long)
    pos = torch.zeros(len(records), n, 3)
    for i, (z, x) in enumerate(records):
        types[i, :len(z)] = torch.tensor([z_to_type[int(a)] for a in z])
        pos[i, :len(z)] = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    return {"types": types.to(device), "pos": pos.to(device), "mask": (types >= 0).to(device)}


def count_generator(gen: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    """The generator atom counts are drawn with, on the CPU: ``gen`` itself there (one stream), a CPU
    twin seeded alike when ``gen`` is on a GPU."""
    from ..base import make_generator

    return gen if gen is None or gen.device.type == "cpu" else make_generator(seed, "cpu")


def atom_counts(probs: torch.Tensor, n: int, n_atoms: int | Sequence[int] | None,
                generator: torch.Generator | None) -> torch.Tensor:
    """Atom counts of n molecules: drawn from the histogram ``probs`` (index = atom count), or as given
    (an int for all, or one per molecule; each checked against the histogram's largest size)."""
    max_atoms = probs.numel() - 1
    if n_atoms is None:
        return torch.multinomial(probs.cpu(), n, replacement=True, generator=generator)
    if isinstance(n_atoms, int):
        if not 1 <= n_atoms <= max_atoms:
            raise ValueError(f"n_atoms must be between 1 and {max_atoms}, got {n_atoms}")
        return torch.full((n,), n_atoms)
    counts = torch.as_tensor(list(n_atoms), dtype=torch.long)
    if counts.numel() != n:
        raise ValueError(f"n_atoms lists {counts.numel()} sizes for n = {n} molecules")
    bad = counts[(counts < 1) | (counts > max_atoms)]
    if bad.numel():
        raise ValueError(f"n_atoms must be between 1 and {max_atoms}, got {int(bad[0])}")
    return counts
