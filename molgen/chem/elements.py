"""Atom vocabularies, allowed valences and EDM's bond-length tables.

Bond lengths are in picometres (pm), as in EDM (Hoogeboom et al. 2022), so that stability and
validity computed here compare with the published numbers.
"""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

#: Atomic numbers of the elements in molgen's vocabularies and bond tables; RDKit's periodic table
#: answers for any other symbol. Kept here so that the 3D path (QM9 arrays, EDM training, stability)
#: runs without importing RDKit, e.g. on a GPU machine that has no RDKit wheel.
ATOMIC_NUMBERS: dict[str, int] = {
    "H": 1, "B": 5, "C": 6, "N": 7, "O": 8, "F": 9, "Al": 13, "Si": 14, "P": 15, "S": 16, "Cl": 17,
    "As": 33, "Br": 35, "I": 53, "Hg": 80, "Bi": 83,
}
_SYMBOLS = {z: s for s, z in ATOMIC_NUMBERS.items()}


@lru_cache(maxsize=1)
def _periodic_table():
    from rdkit import Chem

    return Chem.GetPeriodicTable()

#: Heavy-atom and hydrogen vocabularies per dataset, as element symbols in a fixed order.
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "qm9": ("H", "C", "N", "O", "F"),
    "qm9_heavy": ("C", "N", "O", "F"),
    "moses": ("C", "N", "O", "S", "F", "Cl", "Br", "H"),
    "drug": ("H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Br", "I"),
}

#: Allowed (neutral) valences, EDM's table. P may be 3 or 5.
ALLOWED_VALENCES: dict[str, tuple[int, ...]] = {
    "H": (1,), "C": (4,), "N": (3,), "O": (2,), "F": (1,), "B": (3,), "Al": (3,), "Si": (4,),
    "P": (3, 5), "S": (4,), "Cl": (1,), "As": (3,), "Br": (1,), "I": (1,), "Hg": (1, 2), "Bi": (3, 5),
}

#: Valences allowed together with the formal charge they imply (charge-aware variant).
CHARGED_VALENCES: dict[str, dict[int, int]] = {
    "H": {1: 0}, "C": {4: 0, 3: -1}, "N": {3: 0, 4: 1, 2: -1}, "O": {2: 0, 1: -1, 3: 1},
    "F": {1: 0}, "B": {3: 0, 4: -1}, "Si": {4: 0}, "P": {3: 0, 5: 0, 4: 1}, "S": {2: 0, 4: 0, 6: 0, 1: -1, 3: 1},
    "Cl": {1: 0}, "Br": {1: 0}, "I": {1: 0},
}

# EDM's reference bond lengths (pm). Single bonds: the full table used by EDM for QM9 and GEOM.
_BONDS1 = {
    "H": {"H": 74, "C": 109, "N": 101, "O": 96, "F": 92, "B": 119, "Si": 148, "P": 144, "As": 152,
          "S": 134, "Cl": 127, "Br": 141, "I": 161},
    "C": {"C": 154, "N": 147, "O": 143, "F": 135, "Si": 185, "P": 184, "S": 182, "Cl": 177, "Br": 194,
          "I": 214},
    "N": {"N": 145, "O": 140, "F": 136, "Cl": 175, "Br": 214, "S": 168, "I": 222, "P": 177},
    "O": {"O": 148, "F": 142, "Si": 163, "P": 163, "S": 151, "Cl": 164, "Br": 172, "I": 194},
    "F": {"F": 142, "S": 158, "Si": 160, "Cl": 166, "Br": 178, "P": 156, "I": 187},
    "Cl": {"Cl": 199, "Si": 203, "S": 207, "Br": 214, "P": 203, "I": 243},
    "Br": {"Br": 228, "S": 225, "Si": 233, "I": 248},
    "I": {"I": 266, "Si": 240, "S": 234},
    "S": {"S": 204, "P": 210},
    "P": {"P": 221, "Si": 227},
    "Si": {"Si": 233},
    "B": {"B": 171, "C": 156, "N": 158, "O": 147, "F": 140, "Cl": 175, "Br": 188},
}
_BONDS2 = {
    "C": {"C": 134, "N": 129, "O": 120, "S": 160},
    "N": {"N": 125, "O": 121},
    "O": {"O": 121, "P": 150},
    "P": {"S": 186},
}
_BONDS3 = {"C": {"C": 120, "N": 116, "O": 113}, "N": {"N": 110}, "O": {}}

#: EDM's margins (pm) for single, double and triple bonds.
MARGINS_PM = (10.0, 5.0, 3.0)

#: Elements with a row/column in the bond tables, in atomic-number order.
TABLE_ELEMENTS: tuple[str, ...] = tuple(sorted(
    {e for t in (_BONDS1, _BONDS2, _BONDS3) for a, row in t.items() for e in (a, *row)},
    key=lambda s: ATOMIC_NUMBERS[s]))
#: Their atomic numbers; a 3D molecule with any other element is invalid.
TABLE_Z: frozenset[int] = frozenset(ATOMIC_NUMBERS[s] for s in TABLE_ELEMENTS)


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol (raises ValueError for an unknown symbol)."""
    z = ATOMIC_NUMBERS.get(symbol)
    if z is None:
        try:
            z = _periodic_table().GetAtomicNumber(symbol)
        except RuntimeError:
            z = 0
    if z <= 0:
        raise ValueError(f"unknown element symbol {symbol!r}")
    return z


def symbol(z: int) -> str:
    """Element symbol of an atomic number."""
    known = _SYMBOLS.get(int(z))
    return known if known is not None else _periodic_table().GetElementSymbol(int(z))


def _table(bonds: dict[str, dict[str, int]]) -> np.ndarray:
    """Dense (119 x 119) symmetric table indexed by atomic number; NaN where there is no entry."""
    out = np.full((119, 119), np.nan)
    for a, row in bonds.items():
        for b, length in row.items():
            za, zb = atomic_number(a), atomic_number(b)
            out[za, zb] = out[zb, za] = length
    return out


#: Reference bond lengths (pm) indexed [Z1, Z2]; NaN where the pair has no such bond.
BOND1_PM = _table(_BONDS1)
BOND2_PM = _table(_BONDS2)
BOND3_PM = _table(_BONDS3)

#: EDM's first allowed valence indexed by atomic number (0 where the element is unknown).
VALENCE_BY_Z = np.zeros(119, dtype=np.int64)
for _s, _v in ALLOWED_VALENCES.items():
    VALENCE_BY_Z[atomic_number(_s)] = _v[0]


# --- atom tokens: an element with its formal charge ("C", "N+", "O-", "Fe+2") -----------------------
def token_name(symbol: str, charge: int) -> str:
    """``("N", 1) -> "N+"``, ``("O", -1) -> "O-"``, ``("Fe", 2) -> "Fe+2"``."""
    if charge == 0:
        return symbol
    sign = "+" if charge > 0 else "-"
    return f"{symbol}{sign}{abs(charge) if abs(charge) > 1 else ''}"


def parse_token(token: str) -> tuple[str, int]:
    """``"N+" -> ("N", 1)``; raises ValueError for a malformed token."""
    m = re.fullmatch(r"([A-Z][a-z]?)(?:([+-])(\d*))?", token)
    if m is None:
        raise ValueError(f"malformed atom token {token!r} (expected e.g. 'C', 'N+', 'O-')")
    charge = 0 if m.group(2) is None else (1 if m.group(2) == "+" else -1) * int(m.group(3) or 1)
    return m.group(1), charge


def max_valence(token: str) -> int:
    """Largest total bond order (heavy-atom bonds plus implicit hydrogens) of an atom token.

    From ``CHARGED_VALENCES`` (e.g. C 4, N 3, N+ 4, O- 1, S 6). Any total bond order up to this
    value sanitises in RDKit, since RDKit adds implicit hydrogens up to the next allowed valence.
    """
    symbol, charge = parse_token(token)
    valences = [v for v, c in CHARGED_VALENCES.get(symbol, {}).items() if c == charge]
    if not valences:
        raise ValueError(f"no allowed valence is known for atom token {token!r}")
    return max(valences)
