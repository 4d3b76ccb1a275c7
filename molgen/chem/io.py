"""Reading molecule files: SDF, XYZ, SMILES (.smi / .txt) and CSV (writing: :mod:`molgen.chem.write`).

Readers never crash on a bad entry: an entry that cannot be parsed is skipped, counted in
:attr:`ReadResult.n_failed` and a few reasons are kept. A missing, empty or unsupported file raises
:class:`MoleculeFileError` with a one-line message, and so does a SMILES / CSV file of which not one
line parses (it is usually another format under the wrong name). Coordinates are in Angstrom
throughout. 3D entries (XYZ blocks, SDF entries with 3D coordinates) of more than
:data:`MAX_ATOMS_3D` atoms are counted as unreadable: inferring their bonds needs a dense
N x N distance matrix.

One row per sample. A sample that is no molecule is kept as a placeholder, so that a file
evaluated again gives the same validity: the SMILES token :data:`INVALID_SMILES` in .smi / .csv
files, an empty record flagged ``molgen_valid=0`` in SDF files, a block of 0 atoms in XYZ files.
The readers return these as invalid entries (``mol=None``), not as unreadable ones.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from rdkit import Chem

from .build import quiet_rdkit
from .geometry import MAX_ATOMS_3D

#: File extensions understood by :func:`read_molecules`.
READ_FORMATS: dict[str, str] = {".sdf": "sdf", ".sd": "sdf", ".mol": "sdf", ".xyz": "xyz",
                                ".smi": "smiles", ".smiles": "smiles", ".txt": "smiles",
                                ".csv": "csv"}
#: Column names taken as the SMILES column of a CSV file (compared case-insensitively).
SMILES_COLUMNS = ("smiles", "canonical_smiles")
#: The SMILES token of a sample that is no molecule (one row per sample: nothing is dropped).
INVALID_SMILES = "<invalid>"
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
    #: every unreadable entry as (its position among all entries of the file, the reason)
    unreadable: list[tuple[int, str]] = field(default_factory=list)
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
        self.unreadable.append((len(self.records) + self.n_failed, reason))
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
    kept); an entry written by molgen for a graph model (property ``molgen_embedded``: its
    coordinates are an ETKDG conformer, not the model's) is read as a graph, without positions.
    XYZ: one or more blocks of a count line, a comment line and that many atom lines (element
    symbol or atomic number, then x y z in Angstrom); a garbled block is counted and reading resumes
    at the next plausible block. SMILES files: the first whitespace-separated token of each line (a
    header line ``smiles ...`` and lines starting with ``#`` are skipped). CSV: the column named
    smiles / canonical_smiles (any case), else the one column whose name contains "smiles"; a
    file whose first row is itself a SMILES has no header and its first column is read. SMILES that
    RDKit cannot parse are kept as entries with ``mol=None``: they are invalid molecules, not
    unreadable entries. Any of these may be gzip-compressed (``samples.xyz.gz``).

    Raises :class:`MoleculeFileError` for a missing, empty, binary or unknown file, a CSV file
    without a SMILES column, and a SMILES / CSV file in which no line parses as SMILES (the message
    says what the file looks like instead: SDF, XYZ, comma-separated).
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
    try:
        with quiet_rdkit():  # bad entries are counted and explained, not logged by RDKit
            result = reader(text)
    except _NoSmiles as err:
        raise MoleculeFileError(f"{p.name}: {err}") from None
    result.path, result.format = p, kind
    return result


class _NoSmiles(ValueError):
    """A SMILES / CSV file with nothing that parses as SMILES (the message says why)."""


def _too_many_atoms(n: int) -> str:
    return f"{n} atoms, more than the limit of {MAX_ATOMS_3D} for 3D molecules (molgen.chem.geometry.MAX_ATOMS_3D)"


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
        name = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
        if z.size == 0:
            if mol.HasProp("molgen_valid") and mol.GetProp("molgen_valid").strip() == "0":
                # A placeholder for an invalid sample: no atoms, so no coordinates either (it does not make a
                # file of 3D samples a mixed one).
                out.records.append(MoleculeRecord(z, np.zeros((0, 3)), None, name))
            else:
                out._fail(f"SDF entry {i + 1}: no atoms")
            continue
        pos = None
        if mol.GetNumConformers() and mol.GetConformer().Is3D() and not mol.HasProp("molgen_embedded"):
            pos = mol.GetConformer().GetPositions().astype(np.float64)
            if not np.isfinite(pos).all():
                out._fail(f"SDF entry {i + 1}: coordinates are not finite numbers")
                continue
            if z.size > MAX_ATOMS_3D:
                out._fail(f"SDF entry {i + 1}: {_too_many_atoms(z.size)}")
                continue
        out.records.append(MoleculeRecord(z, pos, mol, name))
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
    """The atom count of an XYZ count line (0 for a placeholder block), or -1 if the line is not a
    lone non-negative integer."""
    s = line.strip()
    return int(s) if s.isdigit() else -1


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
        pos = np.array([r[1:4] for r in rows], dtype=np.float64).reshape(n, 3)
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
        if n > MAX_ATOMS_3D:
            # Skipped without parsing: bonds of so many atoms would need a dense n x n array.
            out._fail(f"XYZ block at line {i + 1}: {_too_many_atoms(n)}")
            i, in_garbage = i + n + 2, False
            continue
        if n >= 0 and i + 1 < len(lines):
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
    mol = None if smiles == INVALID_SMILES else Chem.MolFromSmiles(smiles)
    return MoleculeRecord(None, None, mol, smiles)


def _looks_like(text: str) -> tuple[str, str]:
    """What a text that is not a SMILES list seems to be ("sdf", "xyz", "columns" or ""), and
    advice for an error message."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if "$$$$" in text or "M  END" in text or "V2000" in text or "V3000" in text:
        return "sdf", "it looks like an SDF file (it has 'M  END' / '$$$$' lines): name it .sdf"
    if lines and _count(lines[0]) > 0 and len(lines) > 2 and len(lines[2].split()) >= 4:
        return "xyz", "it looks like an XYZ file (an atom count, a comment, then 'element x y z' lines): name it .xyz"
    first = lines[0] if lines else ""
    for sep, name in ((",", "comma"), (";", "semicolon"), ("\t", "tab")):
        if sep in first:
            return "columns", (f"it looks like {name}-separated columns ({first.strip()[:60]!r}): a .smi file holds "
                               "one SMILES per line, then optional whitespace-separated text; name a comma-separated "
                               "file .csv with a 'smiles' column")
    return "", f"the first line is {first.strip()[:60]!r}"


def _check_parsed(records: list[MoleculeRecord], text: str, what: str) -> None:
    """Raise _NoSmiles when not one entry (placeholders aside) parses as SMILES, or when the text is
    plainly an SDF or XYZ file (a few of its lines may happen to parse, e.g. an element symbol)."""
    real = [r for r in records if r.source != INVALID_SMILES]
    parsed = sum(r.mol is not None for r in real)
    kind, advice = _looks_like(text)
    if (real and not parsed) or kind in ("sdf", "xyz"):
        raise _NoSmiles(f"{parsed} of {len(real)} {what} parsed as SMILES; {advice}")


def _read_smiles_lines(text: str) -> ReadResult:
    tokens = [ln.split(None, 1)[0] for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if tokens and tokens[0].lower() in SMILES_COLUMNS:
        tokens = tokens[1:]
    records = [_smiles_record(t) for t in tokens]
    _check_parsed(records, text, "lines")
    return ReadResult(records)


def _smiles_column(header: list[str]) -> int | None:
    """Index of the SMILES column in a CSV header (see :func:`read_molecules`), or None."""
    names = [c.strip().lower() for c in header]
    exact = next((names.index(name) for name in SMILES_COLUMNS if name in names), None)
    if exact is not None:
        return exact
    partial = [k for k, name in enumerate(names) if "smiles" in name]
    return partial[0] if len(partial) == 1 else None


def _read_csv(text: str) -> ReadResult:
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        return ReadResult([])
    col = _smiles_column(rows[0])
    if col is None:
        if Chem.MolFromSmiles(rows[0][0].strip()) is None and rows[0][0].strip() != INVALID_SMILES:
            columns = ", ".join(repr(c.strip()) for c in rows[0][:12]) + (", ..." if len(rows[0]) > 12 else "")
            raise _NoSmiles(f"no SMILES column: looked for a column named {' or '.join(SMILES_COLUMNS)} (any case) "
                            f"or one whose name contains 'smiles'; the columns are {columns}")
        col = 0  # no header: the first row is itself a molecule
    else:
        rows = rows[1:]
    out = ReadResult([])
    for k, r in enumerate(rows):
        cell = r[col].strip() if col < len(r) else ""
        if cell:
            out.records.append(_smiles_record(cell))
        else:
            out._fail(f"CSV row {k + 2}: empty SMILES cell")
    _check_parsed(out.records, text, "rows")
    return out
