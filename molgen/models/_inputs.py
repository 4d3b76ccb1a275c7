"""Checks of the arguments the models' public methods take: one ValueError line that names the
argument and its allowed range, raised before anything is sampled or written."""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

#: Seeds are 64-bit: torch.Generator.manual_seed takes 0 .. 2**64 - 1.
SEED_LIMIT = 2 ** 64


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1 (bools and non-integral numbers are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value!r}")
    return int(value)


def ring_size_limit(value: Any, name: str = "max_ring_size") -> int | None:
    """A ring-size limit: None (no limit) or an int >= 3 (the most atoms a ring may have)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 3:
        raise ValueError(f"{name} must be an integer >= 3 (or None: no limit), got {value!r}")
    return int(value)


def optional_positive_int(name: str, value: Any) -> int | None:
    return None if value is None else positive_int(name, value)


def positive_float(name: str, value: Any) -> float:
    """``value`` as a finite float > 0 (NaN, inf, zero and negatives are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def nonnegative_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def probability(name: str, value: Any) -> float:
    """``value`` as a float in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def seed_or_fresh(value: Any, name: str = "seed") -> int:
    """``value`` checked as :func:`seed`; None draws a fresh seed from the OS (record it to reproduce the draw)."""
    if value is None:
        import secrets

        return secrets.randbits(63)
    return seed(value, name)


def seed(value: Any, name: str = "seed") -> int:
    """``value`` as an int in [0, 2**64)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{name} must be an integer in [0, 2**64), got {value!r}")
    return int(value)


def finite_latents(z: Any, latent_dim: int) -> None:
    """A (B, latent_dim) tensor with finite entries."""
    import torch

    if not isinstance(z, torch.Tensor):
        raise ValueError(f"z must be a torch.Tensor of shape (B, {latent_dim}), got {type(z).__name__}")
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"z must have shape (B, {latent_dim}), got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise ValueError(f"z must be a floating-point tensor, got {z.dtype}")
    bad = ~torch.isfinite(z).all(-1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).squeeze(1).tolist()
        shown = ", ".join(map(str, rows[:5])) + (" ..." if len(rows) > 5 else "")
        raise ValueError(f"z must be finite; rows {shown} hold NaN or inf ({len(rows)} of {z.shape[0]})")


def molecule_list(molecules: Any) -> list:
    """The items of a models' molecule argument: one SMILES or Mol, a sequence of them, or a
    :class:`molgen.SampleSet` (its Mols, None where a sample is invalid). Anything else is a
    ValueError; the items themselves are checked (with a reason per item) by the featurisers."""
    from rdkit import Chem

    if isinstance(molecules, (str, Chem.Mol)):
        return [molecules]
    if hasattr(molecules, "mols") and hasattr(molecules, "smiles"):  # a SampleSet (duck-typed)
        return list(molecules.mols)
    if isinstance(molecules, np.ndarray):
        if molecules.ndim == 1:
            return molecules.tolist()
    elif not isinstance(molecules, (bytes, dict)) and hasattr(molecules, "__iter__"):
        return list(molecules)
    raise ValueError("molecules must be a SMILES string, an RDKit Mol, a list of them or a SampleSet, "
                     f"got {type(molecules).__name__}")
