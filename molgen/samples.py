"""The structured result of sampling: RDKit molecules (None where invalid), SMILES and, for 3D
models, atom types and coordinates in Angstrom."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence, overload

import numpy as np
from rdkit import Chem

from .chem.build import is_connected, mol_from_3d, sanitize
from .chem.convert import mols_from_3d, to_mol, to_smiles


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
        ``n_heavy_atoms``, ``formula`` and ``mol`` (the RDKit Mol or None); for 3D models also
        ``implicit_h``, ``added_h`` and ``complete_3d`` (:meth:`hydrogen_flags`)."""
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
            if self.positions is not None:
                rows[-1].update(self.hydrogen_flags(i))
        index = pd.Index(list(self.info.get("index", range(len(self.mols)))), name="index")
        columns = ["smiles", "valid", "connected", "n_atoms", "n_heavy_atoms", "formula", "mol"]
        types = {"n_atoms": "Int64", "n_heavy_atoms": "Int64"}
        if self.positions is not None:
            columns[-1:-1] = ["implicit_h", "added_h", "complete_3d"]
            types.update(implicit_h="Int64", added_h="Int64", complete_3d=bool)
        return pd.DataFrame(rows, index=index, columns=columns).astype(types)

    @classmethod
    def from_mols(cls, mols: Sequence[Chem.Mol | None], **info: object) -> "SampleSet":
        """From (possibly unsanitised) molecules of a 2D model.

        Each sanitised Mol gets the title ``sample <i>`` (``<model> sample <i>`` when ``info`` names
        the model) and the properties of :meth:`record_properties`.
        """
        clean = [sanitize(m) for m in mols]
        smiles = [to_smiles(m, largest_fragment=True) for m in clean]
        out = cls(list(clean), smiles, info=dict(info))
        out._label_mols()
        return out

    @classmethod
    def from_3d(cls, atomic_numbers: Sequence[np.ndarray], positions: Sequence[np.ndarray],
                **info: object) -> "SampleSet":
        """From atom types and coordinates (Angstrom); bonds inferred with EDM's tables.

        A sample is valid exactly when :func:`molgen.evaluate` counts it valid (one rule,
        :func:`molgen.chem.convert.mols_from_3d`: RDKit sanitises the Mol, every element is in EDM's
        bond tables, no two atoms closer than 0.1 Angstrom), so that
        the .xyz, .sdf and .smi files written from it evaluate to the same validity. Molecules of
        more than :data:`molgen.chem.geometry.MAX_ATOMS_3D` atoms raise ValueError.
        """
        zs = [np.asarray(z, dtype=np.int64).reshape(-1) for z in atomic_numbers]
        xs = [np.asarray(x, dtype=np.float64).reshape(-1, 3) for x in positions]
        if len(zs) != len(xs):
            raise ValueError(f"{len(zs)} atom-type arrays for {len(xs)} coordinate arrays")
        mols = mols_from_3d(zs, xs)
        smiles = [to_smiles(m, largest_fragment=True) for m in mols]
        out = cls(mols, smiles, zs, xs, info=dict(info))
        out._label_mols()
        return out

    def hydrogen_flags(self, i: int) -> dict[str, object]:
        """How complete 3D sample ``i`` is: ``implicit_h``, the hydrogens RDKit had to add to the
        model's atoms (no coordinates; None if invalid), ``added_h``, how many of them
        :meth:`with_hydrogens` added with coordinates (0 otherwise; None if invalid), and
        ``complete_3d``, True when the sample is valid and every hydrogen is an atom with
        coordinates (a reader such as OpenBabel otherwise sees a radical). Raises ValueError for
        a set of 2D samples."""
        from .chem.hydrogens import missing_hydrogens

        if self.positions is None:
            raise ValueError("hydrogen flags describe 3D samples; this SampleSet holds 2D molecules")
        mol = self.mols[i]
        if mol is None:
            return {"implicit_h": None, "added_h": None, "complete_3d": False}
        missing = missing_hydrogens(mol)
        added = mol.GetNumAtoms() - int(np.asarray(self.atomic_numbers[i]).size)  # appended by with_hydrogens
        return {"implicit_h": missing + added, "added_h": added, "complete_3d": missing == 0}

    def with_hydrogens(self) -> "SampleSet":
        """A copy in which every valid 3D molecule has all its hydrogens as atoms with coordinates.

        The hydrogens RDKit implied (``implicit_h``) are added after the model's atoms by
        :func:`molgen.chem.hydrogens.add_hydrogens` (RDKit's placement, then an MMFF94 / UFF
        relaxation in which the model's atoms are fixed: they do not move). Only the Mols and the
        files written from them change: :attr:`atomic_numbers`, :attr:`positions`, :attr:`info`
        (the model's stability and other metrics) and :func:`molgen.evaluate` of the SampleSet stay
        those of the model's own output, and every record says ``added_h``. Invalid samples are
        kept as they are. Raises ValueError for a set of 2D samples (their SDF conformers already
        have every hydrogen).
        """
        from .chem.hydrogens import add_hydrogens

        if self.positions is None:
            raise ValueError("with_hydrogens() applies to 3D samples; the SDF conformers of 2D samples "
                             "already have every hydrogen")
        mols = [None if m is None else add_hydrogens(m)[0] for m in self.mols]
        out = SampleSet(mols, list(self.smiles), list(self.atomic_numbers), list(self.positions),
                        info=dict(self.info))
        out._label_mols()
        return out

    # --- writers -------------------------------------------------------------------------------
    # One row / record / block per sample, invalid ones included and marked (see molgen.chem.write).
    def title(self, i: int) -> str:
        """The title of sample ``i`` in every file: ``sample <i>`` or ``<model> sample <i>``."""
        model = self.info.get("model")
        return f"{model} sample {i}" if model else f"sample {i}"

    def whole_smiles(self, i: int) -> str | None:
        """Canonical SMILES of sample ``i`` with all its fragments (None if invalid); the .smi
        convention. Kekulé form where the aromatic one would not parse back."""
        mol = self.mols[i]
        s = to_smiles(mol)
        if s and to_mol(s) is None:
            s = to_smiles(mol, kekule=True) or s  # keep the aromatic SMILES where Kekulé fails too
        return s or None

    def _per_sample(self, key: str) -> np.ndarray | None:
        values = self.info.get(key)
        if values is None or isinstance(values, (str, bytes)) or np.ndim(values) != 1 or len(values) != len(self):
            return None
        return np.asarray(values, dtype=np.float64)

    def record_properties(self, i: int) -> dict[str, object]:
        """What every file and Mol records of sample ``i``, as SDF property names.

        ``molgen_index``, ``molgen_smiles`` (whole molecule, :data:`~molgen.chem.io.INVALID_SMILES`
        if invalid), ``molgen_valid``, ``molgen_connected`` (one fragment), ``molgen_stable`` (3D:
        EDM's molecule stability), ``molgen_model`` and ``molgen_seed`` (from :attr:`info`, when
        known) and ``molgen_log_prob`` (nats, when ``info["log_prob"]`` holds one per sample); 3D
        models also ``molgen_implicit_h``, ``molgen_added_h`` (valid samples) and
        ``molgen_complete_3d`` (:meth:`hydrogen_flags`).
        """
        from .chem.io import INVALID_SMILES

        mol = self.mols[i]
        props: dict[str, object] = {"molgen_index": i, "molgen_smiles": self.whole_smiles(i) or INVALID_SMILES,
                                    "molgen_valid": mol is not None,
                                    "molgen_connected": mol is not None and is_connected(mol)}
        if self.positions is not None:
            from .chem.geometry import bond_orders, stability

            z, x = self.atomic_numbers[i], self.positions[i]
            props["molgen_stable"] = stability(z, bond_orders(z, x)).molecule_stable
            props.update({f"molgen_{k}": v for k, v in self.hydrogen_flags(i).items() if v is not None})
        for key in ("model", "seed"):
            if self.info.get(key) is not None and np.ndim(self.info[key]) == 0:
                props[f"molgen_{key}"] = self.info[key]
        log_prob = self._per_sample("log_prob")
        if log_prob is not None:
            props["molgen_log_prob"] = float(log_prob[i])
        return props

    def _label_mols(self) -> None:
        """Give each valid Mol its title and :meth:`record_properties` (typed RDKit properties)."""
        for i, mol in enumerate(self.mols):
            if mol is None:
                continue
            mol.SetProp("_Name", self.title(i))
            for key, value in self.record_properties(i).items():
                if isinstance(value, (bool, np.bool_)):
                    mol.SetBoolProp(key, bool(value))
                elif isinstance(value, (int, np.integer)) and abs(int(value)) < 2 ** 31:
                    mol.SetIntProp(key, int(value))
                elif isinstance(value, (float, np.floating)):
                    mol.SetDoubleProp(key, float(value))
                else:
                    mol.SetProp(key, str(value))

    def _comment(self, i: int, **extra: object) -> str:
        props = self.record_properties(i)
        fields = {"index": i, "smiles": props["molgen_smiles"], "valid": int(bool(props["molgen_valid"]))}
        for key in ("stable", "implicit_h", "added_h", "complete_3d"):
            if f"molgen_{key}" in props:
                value = props[f"molgen_{key}"]
                fields[key] = int(value) if isinstance(value, (bool, np.bool_)) else value
        fields.update(extra)
        for key in ("model", "seed", "log_prob"):
            if f"molgen_{key}" in props:
                value = props[f"molgen_{key}"]
                fields[key] = f"{value:.6g}" if isinstance(value, float) else value
        return " ".join(f"{k}={v}" for k, v in fields.items())

    def to_sdf(self, path: str | Path, conformers: int | None = None, seed: int | None = None) -> Path:
        """SDF, one record per sample, titled :meth:`title`, with :meth:`record_properties`.

        3D models: the model's own coordinates (with the hydrogens of :meth:`with_hydrogens`, if it
        made this set); invalid samples are written with the bonds inferred from them and flagged
        ``molgen_valid=0``. ``conformers`` does not apply (ValueError).

        2D models: ``conformers`` (default 1, at most 50) ETKDG conformers with hydrogens per
        molecule (``molgen_embedded=1``), seeded by ``seed`` (default: ``info["seed"]``, else 0; the
        same seed gives the same coordinates); K > 1 are K consecutive records with the same title
        and ``molgen_conformer`` 0..K-1, as RDKit and OpenBabel (``--readconformer``) read
        conformers. ``conformers=0`` writes 2D depictions without hydrogens. A molecule that cannot
        be embedded is one record with 2D depiction coordinates and ``molgen_embedded=0`` (a
        :class:`UserWarning` counts them). An invalid sample is one empty record flagged
        ``molgen_valid=0``.
        """
        from .chem.write import write_sdf

        n = len(self)
        titles = [self.title(i) for i in range(n)]
        props = [self.record_properties(i) for i in range(n)]
        valid = [m is not None for m in self.mols]
        if self.positions is not None:
            if conformers is not None:
                raise ValueError("conformers applies to 2D models' samples; 3D samples are written with "
                                 "the model's own coordinates")
            raw = [m if m is not None else mol_from_3d(z, x)
                   for m, z, x in zip(self.mols, self.atomic_numbers, self.positions)]
            return write_sdf(raw, path, valid=valid, titles=titles, properties=props)
        return write_sdf(self.mols, path, valid=valid, embed=True, seed=self._embed_seed(seed), titles=titles,
                         properties=props, conformers=1 if conformers is None else conformers)

    def _embed_seed(self, seed: int | None = None) -> int:
        """The ETKDG seed of 2D samples' conformers: ``seed``, else ``info["seed"]``, else 0."""
        if seed is None:
            seed = self.info.get("seed") if isinstance(self.info.get("seed"), (int, np.integer)) else 0
        return int(seed)

    def to_xyz(self, path: str | Path) -> Path:
        """XYZ, one block per sample; the comment line holds ``index=<i> smiles=<SMILES> valid=0|1``
        (and ``stable``, ``implicit_h``, ``added_h``, ``complete_3d``, ``model``, ``seed``,
        ``log_prob`` where known).

        3D models: the model's atoms and coordinates, invalid samples too (and after them the
        hydrogens of :meth:`with_hydrogens`, if it made this set). 2D models: an ETKDG conformer
        with hydrogens, seeded as in :meth:`to_sdf` (``embedded=0`` and 2D depiction coordinates
        where embedding fails); an invalid sample is a block of 0 atoms.
        """
        from .chem.write import write_xyz

        if self.positions is not None:
            comments = [self._comment(i) for i in range(len(self))]
            zs, xs = list(self.atomic_numbers), list(self.positions)
            for i, m in enumerate(self.mols):
                if m is not None and m.GetNumAtoms() > zs[i].size:  # hydrogens added with coordinates
                    zs[i] = np.array([a.GetAtomicNum() for a in m.GetAtoms()], dtype=np.int64)
                    xs[i] = m.GetConformer().GetPositions()
            return write_xyz(zs, xs, path, comments=comments)
        from rdkit.Chem import AllChem

        from .chem.write import embed_3d

        zs, xs, comments = [], [], []
        for i, m in enumerate(self.mols):
            extra: dict[str, object] = {}
            if m is None:
                z, x = np.zeros(0, dtype=np.int64), np.zeros((0, 3))
            else:
                e = embed_3d(m, seed=self._embed_seed())
                if e is None:
                    e = Chem.Mol(m)
                    AllChem.Compute2DCoords(e)
                    extra["embedded"] = 0
                z = np.array([a.GetAtomicNum() for a in e.GetAtoms()], dtype=np.int64)
                x = e.GetConformer().GetPositions()
            zs.append(z)
            xs.append(x)
            comments.append(self._comment(i, **extra))
        return write_xyz(zs, xs, path, comments=comments)

    def to_smiles(self, path: str | Path) -> Path:
        """SMILES, one line per sample: ``<SMILES> <title>`` under a header line ``smiles name``
        (``smiles,name`` columns for .csv). The SMILES is the whole molecule, all fragments
        (:meth:`whole_smiles`; :attr:`smiles` holds the largest fragment only), and
        :data:`~molgen.chem.io.INVALID_SMILES` (``<invalid>``) for a sample that is no molecule,
        which :func:`molgen.evaluate` counts as invalid."""
        from .chem.io import INVALID_SMILES
        from .chem.write import write_smiles

        return write_smiles([self.whole_smiles(i) for i in range(len(self))], path,
                            titles=[self.title(i).replace(" ", "_") for i in range(len(self))],
                            invalid=INVALID_SMILES)

    def save(self, path: str | Path, conformers: int | None = None) -> Path:
        """Write by extension: .sdf, .xyz, .smi / .txt / .csv. ``conformers``: see :meth:`to_sdf`
        (.sdf of 2D samples only; ValueError otherwise)."""
        suffix = Path(path).suffix.lower()
        if suffix == ".sdf":
            return self.to_sdf(path, conformers=conformers)
        if conformers is not None and suffix in (".xyz", ".smi", ".txt", ".csv"):
            raise ValueError(f"conformers applies to .sdf files, not {suffix}")
        if suffix == ".xyz":
            return self.to_xyz(path)
        if suffix in (".smi", ".txt", ".csv"):
            return self.to_smiles(path)
        raise ValueError(f"cannot write {suffix or 'files without an extension'}; use .sdf, .xyz or .smi")
