"""QM9 with DFT 3D coordinates (130,831 molecules), read from the ``qm9pack`` package's CSV files.

The raw CSVs are processed once into a compact ``.npz`` (``molgen._cache.cache_dir("qm9")``) that
loads in well under two seconds; it records the CSVs' digest and is rebuilt when their content changes. Coordinates are in Angstrom. The train / validation / test split
(100,000 / 17,748 / 13,083, EDM's sizes) is a seeded permutation shipped inside the package as
``molgen/data/qm9_split.npz``. For conditional generation the training split is cut in two halves as
EDM does (``train_first_half`` trains the property predictor, ``train_second_half`` the generator;
:data:`HALVES`), and :func:`qm9_properties` gives EDM's six conditioning properties in EDM's units.
Reading QM9 needs the ``qm9`` extra (``pip install 'molgen-models[qm9]'``).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from .._cache import cache_dir, digest_files, file_stamp, write_npz
from ..chem.elements import VOCABULARIES, atomic_number

N_MOLECULES = 130_831
SPLIT_SIZES = {"train": 100_000, "valid": 17_748, "test": 13_083}
SPLIT_SEED = 0
#: EDM's two halves of the training split: a seeded permutation of the training indices, cut in two
#: (``qm9_first_half`` / ``qm9_second_half`` in EDM's code, which permutes with seed 42 too)
HALVES = ("train_first_half", "train_second_half")
HALF_SEED = 42
_CACHE_VERSION = 1

#: Properties kept from the CSV, with their units.
PROPERTIES: dict[str, str] = {
    "Dipole_debye": "D", "Polarizability_bohr3": "bohr^3", "HOMO_au": "Ha", "LUMO_au": "Ha",
    "HOMO_LUMO_gap_au": "Ha", "R2_bohr2": "bohr^2", "ZPVE_au": "Ha", "InternalEnergy_0K_au": "Ha",
    "InternalEnergy_298K_au": "Ha", "Enthalphy_298K_au": "Ha", "GibbsFreeEnergy_298K_au": "Ha",
    "Heatcapacity_Cv_cal_mol_K": "cal/(mol K)", "RotA_GHz": "GHz", "RotB_GHz": "GHz", "RotC_GHz": "GHz",
}


#: Hartree to meV (CODATA 2018: 1 Ha = 27.211386246 eV)
HARTREE_TO_MEV = 27_211.386246
#: EDM's conditioning properties: name -> (column of :data:`PROPERTIES`, factor to EDM's unit, unit).
#: QM9's CSV already has alpha in Bohr^3, mu in Debye and Cv in cal/(mol K); the orbital energies come
#: in Hartree and EDM reports them in meV.
QM9_CONDITIONS: dict[str, tuple[str, float, str]] = {
    "alpha": ("Polarizability_bohr3", 1.0, "Bohr^3"), "gap": ("HOMO_LUMO_gap_au", HARTREE_TO_MEV, "meV"),
    "homo": ("HOMO_au", HARTREE_TO_MEV, "meV"), "lumo": ("LUMO_au", HARTREE_TO_MEV, "meV"),
    "mu": ("Dipole_debye", 1.0, "D"), "Cv": ("Heatcapacity_Cv_cal_mol_K", 1.0, "cal/(mol K)"),
}


#: How to install the QM9 data (the ``qm9`` extra); named by every error about missing QM9 files.
INSTALL_QM9 = "pip install 'molgen-models[qm9]'"


class DataMissingError(RuntimeError):
    """A data file that molgen needs is not installed."""


def qm9pack_data_dir() -> Path:
    """The ``qm9pack`` data folder, found without importing the package (it needs pkg_resources)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise DataMissingError(f"QM9 needs the qm9pack package (224 MB): {INSTALL_QM9}")
    path = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not (path / "qm9_part1.csv").exists():
        raise DataMissingError(f"qm9pack is installed but has no CSV files in {path}")
    return path


def _parse_floats(strings: "list[str]") -> np.ndarray:
    """Parse '[[x,y,z],...]' strings, concatenated, into one flat float array."""
    joined = ",".join(strings).replace("[", "").replace("]", "")
    return np.array(joined.split(","), dtype=np.float64)


def raw_files() -> list[Path]:
    """qm9pack's CSV files, the raw data that :func:`load_qm9_arrays` processes once."""
    src = qm9pack_data_dir()
    return [src / f"qm9_part{k}.csv" for k in (1, 2, 3)]


def _build_cache(path: Path) -> None:
    import pandas as pd

    raw = raw_files()
    cols = ["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang", *PROPERTIES]
    df = pd.concat([pd.read_csv(f, usecols=cols) for f in raw],
                   ignore_index=True).sort_values("Index", kind="stable").reset_index(drop=True)
    n_atoms = df["N_atoms"].to_numpy(np.int64)
    symbols = ",".join(df["Elements"]).replace("[", "").replace("]", "").replace("'", "").split(",")
    table = {s: atomic_number(s) for s in set(symbols)}
    z = np.array([table[s] for s in symbols], dtype=np.int8)
    pos = _parse_floats(df["XYZ_Ang"].tolist()).reshape(-1, 3).astype(np.float32)
    if z.size != n_atoms.sum() or pos.shape[0] != z.size:
        raise DataMissingError("qm9pack CSVs are inconsistent (atom counts do not match)")
    ptr = np.concatenate([[0], np.cumsum(n_atoms)])
    props = np.stack([df[c].to_numpy(np.float64) for c in PROPERTIES], axis=1)
    write_npz(path, dict(z=z, pos=pos, ptr=ptr, smiles=df["SMILES"].to_numpy(dtype=str),
                         index=df["Index"].to_numpy(np.int64), props=props, version=_CACHE_VERSION,
                         raw_digest=digest_files(raw), raw_stamp=file_stamp(raw)))


def _is_stale(f: "np.lib.npyio.NpzFile") -> bool:
    """True when the processed file is of another version, or was built from other raw CSVs (checked
    by their digest when their sizes or times changed; a file without a digest, or raw CSVs that are not
    installed, are taken as they are)."""
    if int(f["version"]) != _CACHE_VERSION:
        return True
    if "raw_digest" not in f.files:
        return False
    try:
        raw = raw_files()
    except DataMissingError:
        return False
    return file_stamp(raw) != str(f["raw_stamp"]) and digest_files(raw) != str(f["raw_digest"])


@dataclass(frozen=True)
class QM9Arrays:
    """All of QM9 as flat arrays: molecule i has atoms ``ptr[i]:ptr[i+1]``."""

    z: np.ndarray        # (n_atoms_total,) int8 atomic numbers
    pos: np.ndarray      # (n_atoms_total, 3) float32, Angstrom
    ptr: np.ndarray      # (n_molecules + 1,) int64 offsets
    smiles: np.ndarray   # (n_molecules,) str, as shipped by QM9
    index: np.ndarray    # (n_molecules,) QM9 (GDB) index
    props: np.ndarray    # (n_molecules, len(PROPERTIES)) float64

    def __len__(self) -> int:
        return self.ptr.size - 1

    def molecule(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Atomic numbers and coordinates (Angstrom) of molecule ``i``."""
        a, b = self.ptr[i], self.ptr[i + 1]
        return self.z[a:b].astype(np.int64), self.pos[a:b].astype(np.float64)

    @property
    def n_atoms(self) -> np.ndarray:
        return np.diff(self.ptr)


@lru_cache(maxsize=2)
def load_qm9_arrays(cache: str | None = None) -> QM9Arrays:
    """Load QM9 from the cache, parsing the qm9pack CSVs on first use (about a minute)."""
    folder = Path(cache) if cache else cache_dir("qm9")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "qm9.npz"
    if path.exists():
        with np.load(path) as f:
            stale = _is_stale(f)
        if stale:
            path.unlink()
    if not path.exists():
        _build_cache(path)
    with np.load(path) as f:
        return QM9Arrays(z=f["z"], pos=f["pos"], ptr=f["ptr"], smiles=f["smiles"], index=f["index"],
                         props=f["props"])


def content_digest() -> str:
    """A digest of QM9's full content: the raw CSVs (or, where qm9pack is not installed, the processed
    file) and the shipped split. It keys every statistic computed from QM9 (:mod:`molgen.references`)."""
    try:
        files = raw_files()
    except DataMissingError:
        load_qm9_arrays()
        files = [cache_dir("qm9") / "qm9.npz"]
    return digest_files([*files, _split_file()])


def make_split(n: int = N_MOLECULES, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """The seeded split: a permutation cut into EDM's sizes, each part sorted."""
    if n != sum(SPLIT_SIZES.values()):
        raise ValueError(f"split sizes are defined for {sum(SPLIT_SIZES.values())} molecules, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    a = SPLIT_SIZES["train"]
    b = a + SPLIT_SIZES["valid"]
    return {"train": np.sort(perm[:a]), "valid": np.sort(perm[a:b]), "test": np.sort(perm[b:])}


def _split_file() -> Path:
    """The split shipped in the package (``molgen/data/qm9_split.npz``), in a source tree or a wheel."""
    from importlib.resources import files

    return Path(str(files("molgen") / "data" / "qm9_split.npz"))


@lru_cache(maxsize=1)
def split_indices() -> dict[str, np.ndarray]:
    """Train / valid / test indices, read from the shipped ``molgen/data/qm9_split.npz``.

    The file is part of the package; a missing one is an incomplete install (DataMissingError), not
    something to regenerate silently. :func:`make_split` gives the same indices, and a test checks that.
    """
    path = _split_file()
    if not path.exists():
        raise DataMissingError(f"the QM9 split file {path} is missing: reinstall molgen-models")
    with np.load(path) as f:
        return {k: f[k].astype(np.int64) for k in SPLIT_SIZES}


def check_split(split: str) -> str:
    if split not in (*SPLIT_SIZES, "all", *HALVES):
        raise ValueError(f"unknown split {split!r}; choose from {', '.join([*SPLIT_SIZES, 'all', *HALVES])}")
    return split


def indices(split: str) -> np.ndarray:
    """Molecule indices (rows of :func:`load_qm9_arrays`) of a split, or all of them. The halves of
    the training split (:data:`HALVES`) are 50,000 molecules each, disjoint, each sorted."""
    check_split(split)
    if split in HALVES:
        train = split_indices()["train"]
        perm = np.random.default_rng(HALF_SEED).permutation(train.size)
        half = perm[:train.size // 2] if split == HALVES[0] else perm[train.size // 2:]
        return np.sort(train[half])
    return np.arange(N_MOLECULES) if split == "all" else split_indices()[split]


def check_conditions(names: "str | Sequence[str]") -> tuple[str, ...]:
    """QM9 property names (:data:`QM9_CONDITIONS`), distinct and at least one; one error line listing
    the choices."""
    names = tuple(n.strip() for n in names.split(",")) if isinstance(names, str) else tuple(names)
    bad = [k for k in names if k not in QM9_CONDITIONS]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(f"QM9 conditions must be distinct names from {', '.join(QM9_CONDITIONS)}; "
                         f"got {', '.join(names) or 'none'}")
    return names


def qm9_properties(rows: "str | np.ndarray", names: "Sequence[str]" = tuple(QM9_CONDITIONS)) -> np.ndarray:
    """(M, K) float64 DFT properties in EDM's units (:data:`QM9_CONDITIONS`: alpha Bohr^3, gap / homo /
    lumo meV, mu D, Cv cal/(mol K)) of a split's molecules (in the order of :func:`indices`) or of the
    given rows of :func:`load_qm9_arrays`."""
    names = check_conditions(names)
    arr = load_qm9_arrays()
    cols = list(PROPERTIES)
    idx = indices(rows) if isinstance(rows, str) else np.asarray(rows, dtype=np.int64)
    out = np.stack([arr.props[idx, cols.index(QM9_CONDITIONS[k][0])] * QM9_CONDITIONS[k][1] for k in names], axis=1)
    if not np.isfinite(out).all():  # QM9 has every property: a copy without them (a travel pack) is not QM9
        raise DataMissingError(f"this copy of QM9 lacks the properties {', '.join(names)} (NaN in the processed "
                               "file); conditional models need a copy that carries them")
    return out


def qm9_smiles(split: str = "train") -> list[str]:
    """QM9's own SMILES strings for a split."""
    return load_qm9_arrays().smiles[indices(split)].tolist()


@dataclass(frozen=True)
class DatasetStatistics:
    """Statistics computed from a split, used for sampling atom counts and as reference."""

    atom_count_hist: np.ndarray      # (max_atoms + 1,) number of molecules with k atoms
    atom_type_counts: dict[str, int]  # element symbol -> count over all atoms
    charge_counts: dict[int, int]     # formal charge -> count (QM9: all neutral)

    def atom_count_probs(self) -> np.ndarray:
        return self.atom_count_hist / self.atom_count_hist.sum()


@lru_cache(maxsize=4)
def statistics(split: str = "train", heavy_only: bool = False) -> DatasetStatistics:
    """Atom-count histogram, atom-type counts and charge counts of a split, computed from the data."""
    arr = load_qm9_arrays()
    idx = indices(split)
    counts = np.zeros(120, dtype=np.int64)
    sel = np.concatenate([np.arange(arr.ptr[i], arr.ptr[i + 1]) for i in idx]) if idx.size else np.array([], int)
    z = arr.z[sel].astype(np.int64)
    owner = np.repeat(np.arange(idx.size), arr.n_atoms[idx])
    if heavy_only:
        owner, z = owner[z != 1], z[z != 1]
    np.add.at(counts, z, 1)
    per_mol = np.bincount(owner, minlength=idx.size)
    hist = np.bincount(per_mol)
    vocab = VOCABULARIES["qm9_heavy" if heavy_only else "qm9"]
    types = {s: int(counts[atomic_number(s)]) for s in vocab}
    return DatasetStatistics(hist, types, {0: int(z.size)})
