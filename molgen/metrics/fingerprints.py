"""Molecules and Morgan fingerprints, and blockwise Tanimoto similarities (MOSES' and GuacaMol's
conventions): packed ``uint8`` bit vectors, Tanimoto of two empty vectors given by ``empty``."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from molgen.chem.convert import MolLike, to_mol

__all__ = ["to_mols", "morgan_fingerprints", "tanimoto_matrix", "max_tanimoto"]

# Block sizes for the Tanimoto matrix products: a (2048 x 4096) float32 block is 32 MiB.
_ROWS_PER_BLOCK = 2048
_COLS_PER_BLOCK = 4096


def to_mols(molecules: Iterable[MolLike]) -> list[Chem.Mol]:
    """RDKit Mols for a mix of SMILES and Mols; raises ``ValueError`` on an unparsable SMILES."""
    mols = []
    for i, item in enumerate(molecules):
        mol = item if isinstance(item, Chem.Mol) else to_mol(item) if isinstance(item, str) else None
        if mol is None:
            raise ValueError(f"invalid molecule at index {i}: {item!r} (remove invalid molecules first)")
        mols.append(mol)
    return mols


@lru_cache(maxsize=8)
def _morgan_generator(radius: int, n_bits: int):
    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def morgan_fingerprints(molecules: Iterable[MolLike], radius: int = 2, n_bits: int = 1024) -> np.ndarray:
    """Morgan bit vectors packed 8 bits per byte: a ``uint8`` array of shape ``(n, n_bits // 8)``.

    Bits are the same as RDKit's ``GetMorganFingerprintAsBitVect(mol, radius, nBits=n_bits)``.
    """
    if n_bits % 8:
        raise ValueError(f"n_bits must be a multiple of 8, got {n_bits}")
    generator = _morgan_generator(radius, n_bits)
    mols = to_mols(molecules)
    out = np.empty((len(mols), n_bits // 8), dtype=np.uint8)
    for i, mol in enumerate(mols):
        out[i] = np.packbits(generator.GetFingerprintAsNumPy(mol))
    return out


def _as_packed(fps: np.ndarray, n_bits: int | None = None) -> np.ndarray:
    """Packed ``uint8`` fingerprints from packed bytes or a 0/1 bit matrix.

    A bool array, or one ``n_bits`` wide, is a bit matrix; a ``uint8`` array ``n_bits // 8`` wide (or
    any ``uint8`` array when ``n_bits`` is None) is already packed.
    """
    fps = np.asarray(fps)
    if fps.ndim != 2:
        raise ValueError(f"fingerprints must be a 2-D array, got shape {fps.shape}")
    if fps.dtype == bool or (n_bits is not None and fps.shape[1] == n_bits):
        if fps.dtype != bool and fps.size and not np.isin(fps, (0, 1)).all():
            raise ValueError("a bit-matrix fingerprint array must hold only 0 and 1")
        return np.packbits(fps.astype(bool), axis=1)
    if fps.dtype == np.uint8 and (n_bits is None or fps.shape[1] * 8 == n_bits):
        return fps
    raise ValueError(f"fingerprints of shape {fps.shape} and dtype {fps.dtype} are neither packed "
                     f"uint8 bytes nor a 0/1 bit matrix" + (f" of {n_bits} bits" if n_bits else ""))


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.float32)


def _bit_counts(packed: np.ndarray) -> np.ndarray:
    """Number of set bits per row of packed fingerprints (float32, exact)."""
    return _POPCOUNT[packed].sum(axis=1, dtype=np.float32)


def _unpack(block: np.ndarray) -> np.ndarray:
    return np.unpackbits(block, axis=1).astype(np.float32)


def _tanimoto_blocks(a: np.ndarray, b: np.ndarray, empty: float) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(i0, j0, T)`` with ``T = tanimoto(a[i0:i0+r], b[j0:j0+c])`` over all blocks.

    ``a`` and ``b`` are packed fingerprints; one reference block is unpacked at a time, so memory
    stays bounded for reference sets of any size.
    """
    count_a, count_b = _bit_counts(a), _bit_counts(b)
    for j0 in range(0, len(b), _COLS_PER_BLOCK):
        bj = _unpack(b[j0:j0 + _COLS_PER_BLOCK])
        nb = count_b[j0:j0 + _COLS_PER_BLOCK]
        for i0 in range(0, len(a), _ROWS_PER_BLOCK):
            ai = _unpack(a[i0:i0 + _ROWS_PER_BLOCK])
            inter = ai @ bj.T  # exact: integer counts <= n_bits in float32
            union = count_a[i0:i0 + _ROWS_PER_BLOCK, None] + nb[None, :] - inter
            with np.errstate(invalid="ignore", divide="ignore"):
                sim = inter / union
            sim[union == 0] = empty
            yield i0, j0, sim


def tanimoto_matrix(a: np.ndarray, b: np.ndarray, empty: float = 1.0,
                    n_bits: int | None = None) -> np.ndarray:
    """Full Tanimoto matrix ``(len(a), len(b))`` of two fingerprint arrays (``empty`` for 0/0).

    Fingerprints are packed ``uint8`` (:func:`morgan_fingerprints`) or bool bit matrices; give
    ``n_bits`` to also accept 0/1 integer matrices of that width.
    """
    a, b = _as_packed(a, n_bits), _as_packed(b, n_bits)
    out = np.empty((len(a), len(b)), dtype=np.float32)
    for i0, j0, sim in _tanimoto_blocks(a, b, empty):
        out[i0:i0 + sim.shape[0], j0:j0 + sim.shape[1]] = sim
    return out


def max_tanimoto(query: np.ndarray, reference: np.ndarray, empty: float = 1.0,
                 exclude_self: bool = False, n_bits: int | None = None) -> np.ndarray:
    """For each query fingerprint, the highest Tanimoto similarity to any reference fingerprint.

    With ``exclude_self`` (``query`` and ``reference`` the same array) the pair ``(i, i)`` is
    skipped, i.e. the similarity to the nearest *other* molecule (0 for a set of one). Fingerprint
    formats as in :func:`tanimoto_matrix`.
    """
    query, reference = _as_packed(query, n_bits), _as_packed(reference, n_bits)
    if exclude_self and query.shape != reference.shape:
        raise ValueError("exclude_self needs query and reference to be the same set")
    best = np.zeros(len(query), dtype=np.float64)
    for i0, j0, sim in _tanimoto_blocks(query, reference, empty):
        if exclude_self:
            rows = np.arange(i0, i0 + sim.shape[0])
            inside = (rows >= j0) & (rows < j0 + sim.shape[1])
            sim[np.nonzero(inside)[0], rows[inside] - j0] = 0.0
        np.maximum(best[i0:i0 + sim.shape[0]], sim.max(axis=1), out=best[i0:i0 + sim.shape[0]])
    return best


def mean_power_tanimoto(fps: np.ndarray, ps: Sequence[float]) -> list[np.ndarray]:
    """Per row, for each p, ``(mean_j T_ij^p)^(1/p)`` over the set against itself, self-pairs
    included; one pass over the similarity blocks serves every p."""
    totals = [np.zeros(len(fps), dtype=np.float64) for _ in ps]
    for i0, _, sim in _tanimoto_blocks(fps, fps, 1.0):
        for p, total in zip(ps, totals):
            total[i0:i0 + sim.shape[0]] += (sim if p == 1 else sim ** p).sum(axis=1, dtype=np.float64)
    return [t / len(fps) if p == 1 else (t / len(fps)) ** (1.0 / p) for p, t in zip(ps, totals)]


def as_fingerprints(molecules: "Sequence[MolLike] | np.ndarray") -> np.ndarray:
    """Packed Morgan fingerprints, passed through when already computed."""
    return molecules if isinstance(molecules, np.ndarray) else morgan_fingerprints(molecules)
