"""Reading and writing molecule files: SDF, XYZ, SMILES (.smi / .txt) and CSV.

Readers never crash on a bad entry: an entry that cannot be parsed is skipped, counted in
:attr:`ReadResult.n_failed` and a few reasons are kept. A missing, empty or unsupported file raises
:class:`MoleculeFileError` with a one-line message. Coordinates are in Angstrom throughout.

Writers create parent folders and write atomically (a temporary file renamed over the target), so
an interrupted write never leaves a half-written file behind. Round trips keep atoms, coordinates
(to 1e-4 Angstrom in SDF, 1e-6 in XYZ), bonds and formal charges.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

from . import build as _build  # noqa: F401  (imported for its side effect: RDKit logging off)
from .elements import symbol

#: File extensions understood by :func:`read_molecules`.
READ_FORMATS: dict[str, str] = {".sdf": "sdf", ".sd": "sdf", ".mol": "sdf", ".xyz": "xyz",
                                ".smi": "smiles", ".smiles": "smiles", ".txt": "smiles",
                                ".csv": "csv"}
#: Column names taken as the SMILES column of a CSV file (compared case-insensitively).
SMILES_COLUMNS = ("smiles", "canonical_smiles")
_MAX_REASONS = 5


class MoleculeFileError(ValueError):
    """A molecule file is missing, empty, of an unknown kind, or cannot be written."""


@dataclass
class MoleculeRecord:
    """One entry of a molecule file.

    ``atomic_numbers`` and ``positions`` (Angstrom, shape (n, 3)) are set for SDF and XYZ entries
    (``positions`` only when the SDF entry is 3D); ``mol`` is the Mol read from the file: unsanitised
    with the file's own bonds for SDF, sanitised (or None if RDKit rejects it) for SMILES, None for
    XYZ. ``source`` is the entry's text: the SMILES, the XYZ comment line or the SDF title.
    """

    atomic_numbers: np.ndarray | None
    positions: np.ndarray | None
    mol: Chem.Mol | None
    source: str


@dataclass
class ReadResult:
    """The entries read from a file, and how many could not be read (with example reasons)."""

    records: list[MoleculeRecord]
    n_failed: int = 0
    failures: list[str] = field(default_factory=list)
    path: Path | None = None
    format: str = ""

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[MoleculeRecord]:
        return iter(self.records)

    @property
    def is_3d(self) -> bool:
        """True when every entry has atom types and 3D coordinates."""
        return bool(self.records) and all(r.positions is not None for r in self.records)

    @property
    def atomic_numbers(self) -> list[np.ndarray]:
        return [r.atomic_numbers for r in self.records]

    @property
    def positions(self) -> list[np.ndarray]:
        return [r.positions for r in self.records]

    @property
    def mols(self) -> list[Chem.Mol | None]:
        return [r.mol for r in self.records]

    @property
    def smiles(self) -> list[str]:
        return [r.source for r in self.records]

    def _fail(self, reason: str) -> None:
        self.n_failed += 1
        if len(self.failures) < _MAX_REASONS:
            self.failures.append(reason)

    def summary(self) -> str:
        """One line: how many entries were read and how many failed, with the first reason."""
        line = f"{len(self.records)} entries read"
        if self.n_failed:
            line += f"; {self.n_failed} could not be read (first: {self.failures[0]})"
        return line


# --- reading ---------------------------------------------------------------------------------
def read_molecules(path: str | os.PathLike) -> ReadResult:
    """Read an .sdf, .xyz, .smi / .txt or .csv file into a :class:`ReadResult`.

    SDF: atoms, coordinates and the file's bonds are kept as written (no sanitising, hydrogens
    kept). XYZ: one or more blocks of a count line, a comment line and that many atom lines
    (element symbol or atomic number, then x y z in Angstrom); a garbled block is counted and
    reading resumes at the next plausible block. SMILES files: the first whitespace-separated token
    of each line (a header line ``smiles`` is skipped). CSV: the column named smiles /
    canonical_smiles (any case), else the first column. SMILES that RDKit cannot parse are kept as
    entries with ``mol=None``: they are invalid molecules, not unreadable entries. Any of these may be
    gzip-compressed (``samples.xyz.gz``).
    """
    p = Path(path)
    gz = p.suffix.lower() == ".gz"
    kind = READ_FORMATS.get((p.with_suffix("").suffix if gz else p.suffix).lower())
    if kind is None:
        ext = (p.with_suffix("").suffix + p.suffix) if gz else p.suffix
        raise MoleculeFileError(f"cannot read {p.name}: unknown extension {ext or '(none)'!r}; "
                                f"use one of {', '.join(sorted(set(READ_FORMATS)))} (optionally gzipped: .gz)")
    if not p.exists():
        raise MoleculeFileError(f"file not found: {p}")
    if p.is_dir():
        raise MoleculeFileError(f"{p} is a folder, not a molecule file")
    try:
        if gz:
            with gzip.open(p, "rt", encoding="utf-8") as f:
                text = f.read()
        else:
            text = p.read_text(encoding="utf-8")
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise MoleculeFileError(f"{p} is not a readable gzip file ({err or err.__class__.__name__})") from None
    except UnicodeDecodeError:
        raise MoleculeFileError(f"{p} is not a text file (it is not valid UTF-8)") from None
    except OSError as err:
        raise MoleculeFileError(f"cannot read {p}: {err.strerror or err}") from None
    if not text.strip():
        raise MoleculeFileError(f"{p} is empty")
    reader = {"sdf": _read_sdf, "xyz": _read_xyz, "smiles": _read_smiles_lines, "csv": _read_csv}[kind]
    result = reader(text)
    result.path, result.format = p, kind
    return result


def _read_sdf(text: str) -> ReadResult:
    out = ReadResult([])
    supplier = Chem.SDMolSupplier()
    supplier.SetData(text, sanitize=False, removeHs=False)
    for i in range(len(supplier)):
        mol = supplier[i]
        if mol is None:
            title = supplier.GetItemText(i).split("\n", 1)[0].strip()
            out._fail(f"SDF entry {i + 1}{f' ({title[:40]!r})' if title else ''}: RDKit cannot parse it")
            continue
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
        pos = None
        if mol.GetNumConformers() and mol.GetConformer().Is3D():
            pos = mol.GetConformer().GetPositions().astype(np.float64)
            if not np.isfinite(pos).all():
                out._fail(f"SDF entry {i + 1}: coordinates are not finite numbers")
                continue
        if z.size == 0:
            out._fail(f"SDF entry {i + 1}: no atoms")
            continue
        out.records.append(MoleculeRecord(z, pos, mol, mol.GetProp("_Name") if mol.HasProp("_Name") else ""))
    return out


def _element(token: str) -> int:
    """Atomic number from an XYZ element token (symbol in any case, or a number); 0 if unknown."""
    if token.isdigit():
        z = int(token)
        return z if 1 <= z <= 118 else 0
    try:
        return Chem.GetPeriodicTable().GetAtomicNumber(token[:1].upper() + token[1:].lower())
    except RuntimeError:
        return 0


def _count(line: str) -> int:
    """The atom count of an XYZ count line, or -1 if the line is not a lone positive integer."""
    s = line.strip()
    return int(s) if s.isdigit() and int(s) > 0 else -1


def _xyz_block(lines: list[str], start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``n`` atom lines from ``lines[start]``; raises ValueError with a reason."""
    if start + n > len(lines):
        raise ValueError(f"expected {n} atom lines, the file ends after {len(lines) - start}")
    rows = [ln.split() for ln in lines[start:start + n]]
    bad = next((k for k, r in enumerate(rows) if len(r) < 4), None)
    if bad is not None:
        raise ValueError(f"line {start + bad + 1} is not 'element x y z': {lines[start + bad].strip()[:40]!r}")
    z = np.array([_element(r[0]) for r in rows], dtype=np.int64)
    if (z == 0).any():
        k = int(np.argmax(z == 0))
        raise ValueError(f"line {start + k + 1}: unknown element {rows[k][0][:10]!r}")
    try:
        pos = np.array([r[1:4] for r in rows], dtype=np.float64)
    except ValueError:
        raise ValueError(f"lines {start + 1}-{start + n}: coordinates are not numbers") from None
    if not np.isfinite(pos).all():
        raise ValueError(f"lines {start + 1}-{start + n}: coordinates are not finite numbers")
    return z, pos


def _read_xyz(text: str) -> ReadResult:
    out = ReadResult([])
    lines = text.splitlines()
    i, in_garbage = 0, False  # in_garbage: inside a stretch already counted as a failure
    while i < len(lines):
        if not lines[i].strip():
            i += 1  # blank lines between blocks are harmless
            continue
        n = _count(lines[i])
        if n > 0:
            try:
                z, pos = _xyz_block(lines, i + 2, n)
            except ValueError as err:  # a broken block is one failed entry; skip to the next count line
                out._fail(f"XYZ block at line {i + 1}: {err}")
                in_garbage = True
                i += 1
                continue
            out.records.append(MoleculeRecord(z, pos, None, lines[i + 1].strip()))
            i, in_garbage = i + n + 2, False
            continue
        if not in_garbage:
            out._fail(f"line {i + 1}: expected an atom count, found {lines[i].strip()[:40]!r}")
            in_garbage = True
        i += 1
    return out


def _smiles_record(smiles: str) -> MoleculeRecord:
    return MoleculeRecord(None, None, Chem.MolFromSmiles(smiles), smiles)


def _read_smiles_lines(text: str) -> ReadResult:
    tokens = [ln.split(None, 1)[0] for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if tokens and tokens[0].lower() in SMILES_COLUMNS:
        tokens = tokens[1:]
    return ReadResult([_smiles_record(t) for t in tokens])


def _read_csv(text: str) -> ReadResult:
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        return ReadResult([])
    header = [c.strip().lower() for c in rows[0]]
    col = next((header.index(name) for name in SMILES_COLUMNS if name in header), None)
    if col is None:
        # No named column: the first row is a header unless its first cell is itself a SMILES.
        col = 0
        if Chem.MolFromSmiles(rows[0][0].strip()) is None:
            rows = rows[1:]
    else:
        rows = rows[1:]
    out = ReadResult([])
    for k, r in enumerate(rows):
        cell = r[col].strip() if col < len(r) else ""
        if cell:
            out.records.append(_smiles_record(cell))
        else:
            out._fail(f"CSV row {k + 2}: empty SMILES cell")
    return out


# --- writing ---------------------------------------------------------------------------------
def _write_atomic(path: str | os.PathLike, chunks: Iterable[str]) -> Path:
    """Write text to ``path`` through a temporary file in the same folder, then rename it."""
    p = Path(path)
    tmp = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes owner-only files; give the usual permissions
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, p)
    except OSError as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise MoleculeFileError(f"cannot write {p}: {err.strerror or err}") from None
    return p


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically, creating parent folders (MoleculeFileError if impossible)."""
    return _write_atomic(path, [text])


def embed_3d(mol: Chem.Mol, seed: int = 0) -> Chem.Mol | None:
    """A copy of ``mol`` with explicit hydrogens and one 3D conformer (Angstrom), or None.

    ETKDGv3 with a fixed random seed, then an MMFF94 clean-up (UFF where MMFF has no parameters).
    Returns None when no conformer can be embedded.
    """
    m = Chem.AddHs(mol, addCoords=False)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(m, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(m, params) != 0:
            return None
    try:
        if AllChem.MMFFHasAllMoleculeParams(m):
            AllChem.MMFFOptimizeMolecule(m, maxIters=500)
        elif AllChem.UFFHasAllMoleculeParams(m):
            AllChem.UFFOptimizeMolecule(m, maxIters=500)
    except Exception:  # a failed clean-up still leaves the ETKDG conformer, which is usable
        pass
    return m


def _mol_block(mol: Chem.Mol, v3000: bool) -> str:
    """A mol block; kekulised when possible (unsanitised molecules are written as they are)."""
    try:
        return Chem.MolToMolBlock(mol, forceV3000=v3000)
    except Exception:  # e.g. an unsanitised molecule with aromatic bonds that cannot be kekulised
        m = Chem.Mol(mol)
        m.UpdatePropertyCache(strict=False)
        return Chem.MolToMolBlock(m, kekulize=False, forceV3000=v3000)


def write_sdf(mols: Sequence[Chem.Mol | None], path: str | os.PathLike,
              valid: Sequence[bool] | None = None, embed: bool = False, seed: int = 0,
              v3000: bool = False) -> Path:
    """Write molecules to an SDF file and return its path.

    Each Mol is written with its own atoms, bonds (kekulised), formal charges and conformer
    (Angstrom; V2000 keeps 4 decimals, ``v3000=True`` keeps 6). ``valid`` flags, if given, are stored as the SDF property ``molgen_valid`` (1 / 0).
    With ``embed`` each molecule first gets hydrogens and a 3D conformer (:func:`embed_3d`); a
    molecule that cannot be embedded is written with 2D depiction coordinates and the property
    ``molgen_embedded=0``, so no molecule is dropped. A None entry is written as an empty record
    (no atoms) flagged ``molgen_valid=0``.
    """
    if valid is not None and len(valid) != len(mols):
        raise ValueError(f"{len(valid)} valid flags for {len(mols)} molecules")

    def blocks() -> Iterator[str]:
        for k, mol in enumerate(mols):
            m = Chem.Mol() if mol is None else Chem.Mol(mol)
            if embed and mol is not None:
                e = embed_3d(m, seed=seed)
                if e is None:
                    AllChem.Compute2DCoords(m)
                    m.SetProp("molgen_embedded", "0")
                else:
                    m = e
            if valid is not None:
                m.SetProp("molgen_valid", str(int(bool(valid[k]))))
            elif mol is None:
                m.SetProp("molgen_valid", "0")
            block = _mol_block(m, v3000)
            props = "".join(f">  <{name}>\n{m.GetProp(name)}\n\n" for name in m.GetPropNames())
            yield f"{block}{props}$$$$\n"

    return _write_atomic(path, blocks())


def write_xyz(atomic_numbers_list: Sequence[Sequence[int]], positions_list: Sequence[np.ndarray],
              path: str | os.PathLike, comments: Sequence[str] | None = None) -> Path:
    """Write molecules as consecutive XYZ blocks (coordinates in Angstrom, 6 decimals)."""
    if len(atomic_numbers_list) != len(positions_list):
        raise ValueError(f"{len(atomic_numbers_list)} atom lists for {len(positions_list)} coordinate arrays")
    if comments is not None and len(comments) != len(positions_list):
        raise ValueError(f"{len(comments)} comments for {len(positions_list)} molecules")

    def blocks() -> Iterator[str]:
        for k, (z, x) in enumerate(zip(atomic_numbers_list, positions_list)):
            z = np.asarray(z, dtype=np.int64)
            x = np.asarray(x, dtype=np.float64).reshape(-1, 3)
            if z.size != x.shape[0]:
                raise ValueError(f"molecule {k}: {z.size} atoms but {x.shape[0]} positions")
            comment = "" if comments is None else str(comments[k]).replace("\n", " ")
            rows = "".join(f"{symbol(a):<2s} {p[0]:15.6f} {p[1]:15.6f} {p[2]:15.6f}\n"
                           for a, p in zip(z.tolist(), x.tolist()))
            yield f"{z.size}\n{comment}\n{rows}"

    return _write_atomic(path, blocks())


def write_smiles(smiles: Sequence[str], path: str | os.PathLike) -> Path:
    """Write one SMILES per line; a .csv file gets a ``smiles`` header line.

    Raises ValueError for a None entry or a string with whitespace (it would not read back).
    """
    for k, s in enumerate(smiles):
        if not isinstance(s, str) or not s or any(c.isspace() for c in s):
            raise ValueError(f"smiles[{k}] = {s!r} is not a SMILES string that can be written one per line")
    header = "smiles\n" if Path(path).suffix.lower() == ".csv" else ""
    return _write_atomic(path, [header, *(f"{s}\n" for s in smiles)])
