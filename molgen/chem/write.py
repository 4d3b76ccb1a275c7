"""Writing molecule files: SDF, XYZ, SMILES (.smi / .txt) and CSV, one row per sample.

Writers create parent folders and write atomically (:func:`molgen.chem.files.write_atomic`), so an
interrupted write never leaves a half-written or temporary file behind and the old file stays whole.
Round trips through :func:`molgen.chem.io.read_molecules` keep atoms, coordinates (to 1e-4 Angstrom
in SDF, 1e-6 in XYZ), bonds and formal charges; a sample that is no molecule is written as a
placeholder (:data:`~molgen.chem.io.INVALID_SMILES`, an empty SDF record, an XYZ block of 0 atoms).
"""
from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

from .elements import symbol
from .files import interruptible, write_atomic

__all__ = ["MAX_CONFORMERS", "check_conformers", "embed_3d", "write_sdf", "write_xyz", "write_smiles"]


def embed_3d(mol: Chem.Mol, seed: int = 0, n_conformers: int = 1) -> Chem.Mol | None:
    """A copy of ``mol`` with explicit hydrogens and ``n_conformers`` 3D conformers (Angstrom), or None.

    ETKDGv3 with a fixed random seed (the same seed gives the same coordinates), then an MMFF94
    clean-up of each conformer (UFF where MMFF has no parameters). Returns None when no conformer
    can be embedded; ETKDG may find fewer than ``n_conformers`` (conformers are not pruned, so
    this is rare). Ctrl-C raises KeyboardInterrupt (RDKit would otherwise take it as "cancel this
    embedding").
    """
    m = Chem.AddHs(mol, addCoords=False)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) % 2 ** 31  # RDKit's seed is a 32-bit int; -1 would mean "unseeded"
    with interruptible():
        if not AllChem.EmbedMultipleConfs(m, int(n_conformers), params):
            params.useRandomCoords = True
            if not AllChem.EmbedMultipleConfs(m, int(n_conformers), params):
                return None
        try:
            if AllChem.MMFFHasAllMoleculeParams(m):
                AllChem.MMFFOptimizeMoleculeConfs(m, maxIters=500)
            elif AllChem.UFFHasAllMoleculeParams(m):
                AllChem.UFFOptimizeMoleculeConfs(m, maxIters=500)
        except Exception:  # a failed clean-up still leaves the ETKDG conformers, which are usable
            pass
    return m


def _mol_block(mol: Chem.Mol, v3000: bool, conf_id: int = -1) -> str:
    """A mol block of conformer ``conf_id``; kekulised when possible (unsanitised molecules are
    written as they are)."""
    try:
        return Chem.MolToMolBlock(mol, forceV3000=v3000, confId=conf_id)
    except Exception:  # e.g. an unsanitised molecule with aromatic bonds that cannot be kekulised
        m = Chem.Mol(mol)
        m.UpdatePropertyCache(strict=False)
        return Chem.MolToMolBlock(m, kekulize=False, forceV3000=v3000, confId=conf_id)


def _prop_text(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value).replace("\n", " ")


def write_sdf(mols: Sequence[Chem.Mol | None], path: str | os.PathLike,
              valid: Sequence[bool] | None = None, embed: bool = False, seed: int = 0,
              v3000: bool = False, titles: Sequence[str] | None = None,
              properties: Sequence[Mapping[str, Any]] | None = None, conformers: int = 1) -> Path:
    """Write molecules to an SDF file, one record per entry, and return its path.

    Each Mol is written with its own atoms, bonds (kekulised), formal charges, conformer
    (Angstrom; V2000 keeps 4 decimals, ``v3000=True`` keeps 6) and properties. ``valid`` flags, if
    given, are stored as the SDF property ``molgen_valid`` (1 / 0); ``titles`` become the records'
    title lines and ``properties`` (one mapping per record) further SDF properties (booleans as
    1 / 0). A None entry is written as an empty record (no atoms) flagged ``molgen_valid=0``, which
    :func:`read_molecules` reads back as an invalid entry.

    With ``embed`` each molecule first gets hydrogens and ``conformers`` ETKDG conformers
    (:func:`embed_3d`, seeded by ``seed``) and the property ``molgen_embedded=1``. ``conformers``
    > 1 writes a molecule's conformers as consecutive records with the same title and properties
    plus ``molgen_conformer`` (0, 1, ...), as RDKit's SDWriter writes a multi-conformer Mol and
    OpenBabel's ``--readconformer`` joins it back. ``conformers=0`` writes 2D depiction
    coordinates and implicit hydrogens instead (a "2D" mol block; no ``molgen_embedded``). A
    molecule that cannot be embedded is kept, as one record with 2D depiction coordinates and
    ``molgen_embedded=0``; their number is reported by a :class:`UserWarning` after writing.
    """
    for name, seq in (("valid flags", valid), ("titles", titles), ("property sets", properties)):
        if seq is not None and len(seq) != len(mols):
            raise ValueError(f"{len(seq)} {name} for {len(mols)} molecules")
    check_conformers(conformers)
    failed = []

    def records(k: int, mol: Chem.Mol | None) -> Iterator[tuple[Chem.Mol, int]]:
        """(Mol, conformer id) of each record of entry ``k``."""
        m = Chem.Mol() if mol is None else Chem.Mol(mol)
        if not embed or mol is None:
            yield m, -1
        elif conformers == 0:
            AllChem.Compute2DCoords(m)
            yield m, -1
        elif (e := embed_3d(m, seed=seed, n_conformers=conformers)) is None:
            failed.append(k)
            AllChem.Compute2DCoords(m)
            m.SetProp("molgen_embedded", "0")
            yield m, -1
        else:
            e.SetProp("molgen_embedded", "1")
            for n, conf in enumerate(e.GetConformers()):
                if conformers > 1:
                    e.SetProp("molgen_conformer", str(n))
                yield e, conf.GetId()

    def blocks() -> Iterator[str]:
        for k, mol in enumerate(mols):
            for m, conf_id in records(k, mol):
                if titles is not None:
                    m.SetProp("_Name", str(titles[k]).replace("\n", " "))
                for name, value in (properties[k] if properties is not None else {}).items():
                    if value is not None:
                        m.SetProp(name, _prop_text(value))
                if valid is not None:
                    m.SetProp("molgen_valid", str(int(bool(valid[k]))))
                elif mol is None:
                    m.SetProp("molgen_valid", "0")
                block = _mol_block(m, v3000, conf_id)
                props = "".join(f">  <{name}>\n{m.GetProp(name)}\n\n" for name in m.GetPropNames())
                yield f"{block}{props}$$$$\n"

    out = write_atomic(path, blocks())
    if failed:
        warnings.warn(f"{len(failed)} of {len(mols)} molecules could not be embedded in 3D; written with "
                      "2D depiction coordinates and molgen_embedded=0", UserWarning, stacklevel=2)
    return out


#: The most ETKDG conformers per molecule :func:`write_sdf` writes.
MAX_CONFORMERS = 50


def check_conformers(conformers: object) -> None:
    """ValueError unless ``conformers`` is a whole number from 0 to :data:`MAX_CONFORMERS`."""
    if isinstance(conformers, bool) or not isinstance(conformers, (int, np.integer)) \
            or not 0 <= conformers <= MAX_CONFORMERS:
        raise ValueError(f"conformers must be a whole number from 0 (2D depiction) to {MAX_CONFORMERS}, "
                         f"got {conformers!r}")


def write_xyz(atomic_numbers_list: Sequence[Sequence[int]], positions_list: Sequence[np.ndarray],
              path: str | os.PathLike, comments: Sequence[str] | None = None) -> Path:
    """Write molecules as consecutive XYZ blocks (coordinates in Angstrom, 6 decimals).

    A molecule of 0 atoms is written as a block of 0 atoms (a placeholder for a sample that is no
    molecule, read back as an invalid entry).
    """
    if len(atomic_numbers_list) != len(positions_list):
        raise ValueError(f"{len(atomic_numbers_list)} atom lists for {len(positions_list)} coordinate arrays")
    if comments is not None and len(comments) != len(positions_list):
        raise ValueError(f"{len(comments)} comments for {len(positions_list)} molecules")

    def blocks() -> Iterator[str]:
        for k, (z, x) in enumerate(zip(atomic_numbers_list, positions_list)):
            z = np.asarray(z, dtype=np.int64).reshape(-1)
            x = np.asarray(x, dtype=np.float64).reshape(-1, 3)
            if z.size != x.shape[0]:
                raise ValueError(f"molecule {k}: {z.size} atoms but {x.shape[0]} positions")
            comment = "" if comments is None else str(comments[k]).replace("\n", " ")
            rows = "".join(f"{symbol(a):<2s} {p[0]:15.6f} {p[1]:15.6f} {p[2]:15.6f}\n"
                           for a, p in zip(z.tolist(), x.tolist()))
            yield f"{z.size}\n{comment}\n{rows}"

    return write_atomic(path, blocks())


def write_smiles(smiles: Sequence[str | None], path: str | os.PathLike,
                 titles: Sequence[str] | None = None, invalid: str | None = None) -> Path:
    """Write one SMILES per line; a .csv file gets a ``smiles`` header line.

    With ``titles`` each line is ``SMILES TITLE`` (``SMILES,name`` in a .csv file) under a header
    line ``smiles name``, as RDKit's SmilesMolSupplier expects. With ``invalid`` (e.g.
    :data:`~molgen.chem.io.INVALID_SMILES`) a None entry is written as that token, so that no row is dropped.
    Raises ValueError for a None entry without ``invalid`` or a string with whitespace (it would
    not read back).
    """
    rows = [invalid if s is None and invalid is not None else s for s in smiles]
    for k, s in enumerate(rows):
        if not isinstance(s, str) or not s or any(c.isspace() for c in s):
            raise ValueError(f"smiles[{k}] = {s!r} is not a SMILES string that can be written one per line")
    if titles is not None:
        if len(titles) != len(rows):
            raise ValueError(f"{len(titles)} titles for {len(rows)} SMILES")
        titles = [str(t).replace("\n", " ").strip() for t in titles]
    csv_file = Path(path).suffix.lower() == ".csv"
    if titles is None:
        header = "smiles\n" if csv_file else ""
        lines = (f"{s}\n" for s in rows)
    elif csv_file:
        header = "smiles,name\n"
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(zip(rows, titles))
        lines = iter([buf.getvalue()])
    else:
        header = "smiles name\n"
        lines = (f"{s} {t}\n" for s, t in zip(rows, titles))
    return write_atomic(path, [header, *lines])
