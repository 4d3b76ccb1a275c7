"""The structured result of sampling: RDKit molecules (None where invalid), SMILES and, for 3D
models, atom types and coordinates in Angstrom."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence, overload

import numpy as np
from rdkit import Chem

from .chem.build import canonical_smiles, largest_fragment, mol_from_3d, sanitize


@dataclass
class SampleSet:
    """Generated molecules.

    ``mols[i]`` is the sanitised RDKit Mol of sample i (all fragments kept) or None if RDKit rejects
    it; ``smiles[i]`` is the canonical SMILES of its largest fragment (None if invalid). For 3D
    models ``atomic_numbers[i]`` and ``positions[i]`` (Angstrom) hold the raw output, including
    invalid samples, so nothing is lost on writing.
    """

    mols: list[Chem.Mol | None]
    smiles: list[str | None]
    atomic_numbers: list[np.ndarray] | None = None
    positions: list[np.ndarray] | None = None
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.mols)

    @property
    def validity(self) -> float:
        return sum(m is not None for m in self.mols) / max(len(self.mols), 1)

    # --- list-like access ----------------------------------------------------------------------
    def __iter__(self) -> Iterator[Chem.Mol | None]:
        """The molecules in sample order: an RDKit Mol, or None where the sample is invalid."""
        return iter(self.mols)

    @overload
    def __getitem__(self, key: int) -> Chem.Mol | None: ...

    @overload
    def __getitem__(self, key: slice) -> "SampleSet": ...

    def __getitem__(self, key: int | slice) -> "Chem.Mol | None | SampleSet":
        """``out[i]``: the Mol of sample i (None if invalid), like a list. ``out[a:b:c]``: a SampleSet
        of those samples with their SMILES, atom types and positions; ``info`` is the draw's (its
        set-level values describe the whole draw) plus ``info["index"]``, the samples' indices in it."""
        if isinstance(key, slice):
            rows = range(len(self.mols))[key]
            index = self.info.get("index", range(len(self.mols)))
            return SampleSet(
                [self.mols[i] for i in rows], [self.smiles[i] for i in rows],
                None if self.atomic_numbers is None else [self.atomic_numbers[i] for i in rows],
                None if self.positions is None else [self.positions[i] for i in rows],
                info={**self.info, "index": [int(index[i]) for i in rows]})
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return self.mols[key]
        raise TypeError(f"SampleSet indices must be integers or slices, not {type(key).__name__}")

    def to_df(self):
        """A pandas DataFrame, one row per sample, indexed by sample index: ``smiles`` (largest
        fragment, None if invalid), ``valid``, ``connected`` (one fragment), ``n_atoms`` (with
        hydrogens: the model's atoms for 3D models, implicit ones counted for 2D),
        ``n_heavy_atoms``, ``formula`` and ``mol`` (the RDKit Mol or None)."""
        import pandas as pd
        from rdkit.Chem.rdMolDescriptors import CalcMolFormula

        rows = []
        for i, (mol, smi) in enumerate(zip(self.mols, self.smiles)):
            if self.atomic_numbers is not None:
                z = np.asarray(self.atomic_numbers[i])
                n_atoms, n_heavy = int(z.size), int((z != 1).sum())
            elif mol is not None:
                n_heavy = mol.GetNumHeavyAtoms()
                n_atoms = mol.GetNumAtoms() + sum(a.GetTotalNumHs() for a in mol.GetAtoms())
            else:
                n_atoms = n_heavy = None
            rows.append({"smiles": smi, "valid": mol is not None,
                         "connected": mol is not None and len(Chem.GetMolFrags(mol)) == 1,
                         "n_atoms": n_atoms, "n_heavy_atoms": n_heavy,
                         "formula": CalcMolFormula(mol) if mol is not None else None, "mol": mol})
        index = pd.Index(list(self.info.get("index", range(len(self.mols)))), name="index")
        df = pd.DataFrame(rows, index=index,
                          columns=["smiles", "valid", "connected", "n_atoms", "n_heavy_atoms", "formula", "mol"])
        return df.astype({"n_atoms": "Int64", "n_heavy_atoms": "Int64"})

    @classmethod
    def from_mols(cls, mols: Sequence[Chem.Mol | None], **info: object) -> "SampleSet":
        """From (possibly unsanitised) molecules of a 2D model."""
        clean = [sanitize(m) for m in mols]
        smiles = [canonical_smiles(largest_fragment(m)) if m is not None else None for m in clean]
        return cls(list(clean), smiles, info=dict(info))

    @classmethod
    def from_3d(cls, atomic_numbers: Sequence[np.ndarray], positions: Sequence[np.ndarray],
                **info: object) -> "SampleSet":
        """From atom types and coordinates (Angstrom); bonds inferred with EDM's tables."""
        zs = [np.asarray(z, dtype=np.int64) for z in atomic_numbers]
        xs = [np.asarray(x, dtype=np.float64) for x in positions]
        mols = [sanitize(mol_from_3d(z, x)) for z, x in zip(zs, xs)]
        smiles = [canonical_smiles(largest_fragment(m)) if m is not None else None for m in mols]
        return cls(mols, smiles, zs, xs, info=dict(info))

    # --- writers -------------------------------------------------------------------------------
    def to_sdf(self, path: str | Path) -> Path:
        """SDF with 3D coordinates: the model's own for 3D models (invalid samples written with
        their inferred bonds, flagged ``molgen_valid=0``); an ETKDG conformer for 2D models."""
        from .chem.io import write_sdf

        if self.positions is not None:
            raw = [m if m is not None else mol_from_3d(z, x)
                   for m, z, x in zip(self.mols, self.atomic_numbers, self.positions)]
            return write_sdf(raw, path, valid=[m is not None for m in self.mols])
        return write_sdf([m for m in self.mols if m is not None], path, embed=True)

    def to_xyz(self, path: str | Path) -> Path:
        from .chem.io import write_xyz

        if self.positions is not None:
            return write_xyz(self.atomic_numbers, self.positions, path)
        from .chem.io import embed_3d

        zs, xs = [], []
        for m in self.mols:
            if m is None:
                continue
            e = embed_3d(m)
            if e is not None:
                zs.append(np.array([a.GetAtomicNum() for a in e.GetAtoms()]))
                xs.append(e.GetConformer().GetPositions())
        return write_xyz(zs, xs, path)

    def to_smiles(self, path: str | Path) -> Path:
        from .chem.io import write_smiles

        return write_smiles([s for s in self.smiles if s is not None], path)

    def save(self, path: str | Path) -> Path:
        """Write by extension: .sdf, .xyz, .smi / .txt / .csv."""
        suffix = Path(path).suffix.lower()
        if suffix == ".sdf":
            return self.to_sdf(path)
        if suffix == ".xyz":
            return self.to_xyz(path)
        if suffix in (".smi", ".txt", ".csv"):
            return self.to_smiles(path)
        raise ValueError(f"cannot write {suffix or 'files without an extension'}; use .sdf, .xyz or .smi")
