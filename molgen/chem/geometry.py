"""Bonds from 3D geometry and EDM's atom / molecule stability, vectorised with numpy."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .elements import BOND1_PM, BOND2_PM, BOND3_PM, CHARGED_VALENCES, MARGINS_PM, VALENCE_BY_Z, atomic_number

#: The most atoms of one 3D molecule whose bonds are inferred: the rule compares all pairs, a dense
#: N x N array (8 N^2 bytes per array, several arrays: 1,000 atoms take about 50 MB, 20,000 atoms
#: would take over 15 GB). Readers count larger 3D entries as unreadable.
MAX_ATOMS_3D = 1000
#: Atoms closer than this (Angstrom) are "on top of each other": the molecule is invalid.
CLASH_DISTANCE = 0.1


def check_atom_count(n: int) -> None:
    """ValueError when a 3D molecule has more than :data:`MAX_ATOMS_3D` atoms."""
    if n > MAX_ATOMS_3D:
        raise ValueError(f"a 3D molecule of {n} atoms is more than the limit of {MAX_ATOMS_3D} "
                         "(molgen.chem.geometry.MAX_ATOMS_3D): its bonds would need a dense N x N array")


def bond_orders(atomic_numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Bond-order matrix (0 none, 1 single, 2 double, 3 triple) from coordinates in Angstrom.

    EDM's rule: with d the distance in pm and b1, b2, b3 the reference single/double/triple
    lengths of the element pair, no bond if d >= b1 + 10; else triple if d < b2 + 5 and d < b3 + 3,
    double if d < b2 + 5, single otherwise. Pairs missing from the single-bond table never bond.
    Raises ValueError above :data:`MAX_ATOMS_3D` atoms.
    """
    z = np.asarray(atomic_numbers, dtype=np.int64)
    x = np.asarray(positions, dtype=np.float64)
    n = z.shape[0]
    if n == 0:
        return np.zeros((0, 0), dtype=np.int64)
    check_atom_count(n)
    d = 100.0 * np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    zi, zj = z[:, None], z[None, :]
    m1, m2, m3 = MARGINS_PM
    with np.errstate(invalid="ignore"):
        single = d < BOND1_PM[zi, zj] + m1  # NaN compares False: unknown pairs never bond
        double = single & (d < BOND2_PM[zi, zj] + m2)
        triple = double & (d < BOND3_PM[zi, zj] + m3)
    order = single.astype(np.int64) + double + triple
    np.fill_diagonal(order, 0)
    return order


def has_clash(positions: np.ndarray, threshold: float = CLASH_DISTANCE) -> bool:
    """True when two atoms are closer than ``threshold`` Angstrom."""
    x = np.asarray(positions, dtype=np.float64)
    if x.shape[0] < 2:
        return False
    check_atom_count(x.shape[0])  # the pairwise distances below are a dense N x N array
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    return bool(d2.min() < threshold ** 2)


@dataclass(frozen=True)
class Stability:
    """Per-molecule stability counts."""

    n_atoms: int
    n_stable: int
    charge_aware_stable: bool

    @property
    def molecule_stable(self) -> bool:
        return self.n_atoms > 0 and self.n_atoms == self.n_stable


_MAX_Z = 119
# Charge-aware lookup: implied charge for (Z, valence), or a sentinel where not allowed.
NOT_ALLOWED = 99
CHARGE_BY_Z_VALENCE = np.full((_MAX_Z, 16), NOT_ALLOWED, dtype=np.int64)
for _sym, _table in CHARGED_VALENCES.items():
    for _val, _chg in _table.items():
        CHARGE_BY_Z_VALENCE[atomic_number(_sym), _val] = _chg
_P = atomic_number("P")


def atom_valences(order: np.ndarray) -> np.ndarray:
    """Sum of bond orders per atom."""
    return order.sum(axis=1)


def stability(atomic_numbers: np.ndarray, order: np.ndarray) -> Stability:
    """EDM stability of one molecule given its bond-order matrix.

    An atom is stable when its summed bond order equals its allowed valence (EDM's table; P may be
    3 or 5). Formal charges are ignored, as in EDM. ``charge_aware_stable`` instead lets each atom
    take a charged valence (N+ with 4 bonds, O- with 1, ...) and asks the implied charges to sum to 0.
    """
    z = np.asarray(atomic_numbers, dtype=np.int64)
    val = atom_valences(order)
    ok = VALENCE_BY_Z[z] == val
    ok |= (z == _P) & (val == 5)
    ok &= VALENCE_BY_Z[z] > 0
    charges = CHARGE_BY_Z_VALENCE[z, np.clip(val, 0, 15)]
    aware = bool(np.all(charges != NOT_ALLOWED) and charges.sum() == 0) if z.size else False
    return Stability(int(z.size), int(ok.sum()), aware)
