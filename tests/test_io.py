"""Molecule file readers and writers: lossless round trips and bad files."""
import os

import numpy as np
import pytest
from rdkit import Chem

from molgen.chem.build import mol_from_graph, sanitize
from molgen.chem.convert import to_smiles
from molgen.chem.io import MoleculeFileError, read_molecules
from molgen.chem.write import (embed_3d, write_sdf, write_smiles,
                            write_xyz)
from molgen.samples import SampleSet

SMILES = ["CCO", "c1ccc2[nH]ccc2c1", "C[N+](=O)[O-]", "OC(=O)C#N", "C/C=C/Cl", "CC.O"]


def _bonds(mol: Chem.Mol) -> set[tuple[int, int, int]]:
    """Bonds as (i, j, order) with i < j, after kekulisation (SDF stores Kekule bonds)."""
    m = Chem.Mol(mol)
    m.UpdatePropertyCache(strict=False)
    if any(b.GetIsAromatic() for b in m.GetBonds()):
        Chem.Kekulize(m, clearAromaticFlags=True)
    return {(min(b.GetBeginAtomIdx(), b.GetEndAtomIdx()), max(b.GetBeginAtomIdx(), b.GetEndAtomIdx()),
             int(b.GetBondTypeAsDouble())) for b in m.GetBonds()}


@pytest.fixture(scope="module")
def embedded() -> list[Chem.Mol]:
    mols = [embed_3d(Chem.MolFromSmiles(s), seed=0) for s in SMILES]
    assert all(m is not None for m in mols)
    return mols


def _random_molecules(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    zs = [rng.choice([1, 6, 7, 8, 9, 16, 17], size=k) for k in rng.integers(1, 12, size=n)]
    xs = [rng.normal(scale=3.0, size=(z.size, 3)) for z in zs]
    return zs, xs


def test_embed_3d_adds_hydrogens_and_is_deterministic():
    a = embed_3d(Chem.MolFromSmiles("CCO"), seed=3)
    b = embed_3d(Chem.MolFromSmiles("CCO"), seed=3)
    assert a.GetNumAtoms() == 9 and a.GetConformer().Is3D()
    np.testing.assert_array_equal(a.GetConformer().GetPositions(), b.GetConformer().GetPositions())


def test_sdf_round_trip_keeps_atoms_coordinates_bonds_charges_and_flags(tmp_path, embedded):
    # An unsanitisable molecule (pentavalent C) with coordinates must survive as written too.
    z = np.array([6, 9, 9, 9, 9, 9])
    order = np.zeros((6, 6), dtype=int)
    order[0, 1:] = order[1:, 0] = 1
    x = np.vstack([np.zeros(3), 1.35 * np.vstack([np.eye(3), -np.eye(3)[:2]])])
    bad = mol_from_graph(z, order, positions=x)
    mols = [*embedded, bad]
    path = write_sdf(mols, tmp_path / "sub" / "out.sdf", valid=[True] * len(embedded) + [False])
    result = read_molecules(path)
    assert (len(result), result.n_failed, result.format, result.is_3d) == (len(mols), 0, "sdf", True)
    for original, record in zip(mols, result):
        assert record.atomic_numbers.tolist() == [a.GetAtomicNum() for a in original.GetAtoms()]
        np.testing.assert_allclose(record.positions, original.GetConformer().GetPositions(), atol=1e-4)
        assert _bonds(record.mol) == _bonds(original)
        assert [a.GetFormalCharge() for a in record.mol.GetAtoms()] == \
               [a.GetFormalCharge() for a in original.GetAtoms()]
    assert [r.mol.GetProp("molgen_valid") for r in result] == ["1"] * len(embedded) + ["0"]
    # The sanitised molecules read back are the same molecules.
    assert [to_smiles(sanitize(r.mol)) for r in result.records[:-1]] == \
           [to_smiles(Chem.MolFromSmiles(s)) for s in SMILES]


def test_sdf_v3000_keeps_six_decimals(tmp_path, embedded):
    result = read_molecules(write_sdf(embedded, tmp_path / "v3.sdf", v3000=True))
    assert "V3000" in (tmp_path / "v3.sdf").read_text()
    for original, record in zip(embedded, result):
        np.testing.assert_allclose(record.positions, original.GetConformer().GetPositions(), atol=1e-6)
        assert _bonds(record.mol) == _bonds(original)


def test_sdf_embed_writes_3d_conformers_with_hydrogens(tmp_path):
    path = write_sdf([Chem.MolFromSmiles(s) for s in SMILES], tmp_path / "e.sdf", embed=True)
    result = read_molecules(path)
    assert len(result) == len(SMILES)
    assert all(r.mol.GetConformer().Is3D() and r.mol.GetProp("molgen_embedded") == "1" for r in result)
    # ETKDG conformers are not a model's coordinates: the entries are read (and evaluated) as graphs.
    assert not result.is_3d and all(r.positions is None for r in result)
    assert [to_smiles(sanitize(r.mol)) for r in result] == \
           [to_smiles(Chem.MolFromSmiles(s)) for s in SMILES]
    assert result.records[0].atomic_numbers.tolist().count(1) == 6


def test_xyz_round_trip_keeps_atoms_coordinates_and_comments(tmp_path):
    zs, xs = _random_molecules(20)
    comments = [f"molecule {k}" for k in range(20)]
    result = read_molecules(write_xyz(zs, xs, tmp_path / "a.xyz", comments=comments))
    assert (len(result), result.n_failed, result.is_3d) == (20, 0, True)
    for z, x, record in zip(zs, xs, result):
        np.testing.assert_array_equal(record.atomic_numbers, z)
        np.testing.assert_allclose(record.positions, x, atol=1e-6)
    assert [r.source for r in result] == comments


def test_xyz_accepts_atomic_numbers_any_case_and_extra_columns(tmp_path):
    path = tmp_path / "b.xyz"
    path.write_text("2\n\n8 0 0 0\nh 0.96 0 0 0.1\n\n\n1\nlast\nCL 1 2 3\n")
    result = read_molecules(path)
    assert [r.atomic_numbers.tolist() for r in result] == [[8, 1], [17]]
    np.testing.assert_array_equal(result.records[1].positions, [[1.0, 2.0, 3.0]])


def test_sampleset_writers_round_trip(tmp_path):
    zs, xs = _random_molecules(8, seed=1)
    samples = SampleSet.from_3d(zs, xs)
    sdf = read_molecules(samples.to_sdf(tmp_path / "s.sdf"))
    xyz = read_molecules(samples.to_xyz(tmp_path / "s.xyz"))
    for z, x, a, b in zip(zs, xs, sdf, xyz):
        np.testing.assert_array_equal(a.atomic_numbers, z)
        np.testing.assert_array_equal(b.atomic_numbers, z)
        np.testing.assert_allclose(a.positions, x, atol=1e-4)
        np.testing.assert_allclose(b.positions, x, atol=1e-6)
    assert [r.mol.GetProp("molgen_valid") for r in sdf] == [str(int(m is not None)) for m in samples.mols]


def test_smiles_round_trip_smi_and_csv(tmp_path):
    smiles = ["C[C@H](N)C(=O)O", "C/C=C/Cl", "[NH4+].[Cl-]", "c1ccccc1"]
    for name in ("a.smi", "a.csv", "a.txt"):
        result = read_molecules(write_smiles(smiles, tmp_path / name))
        assert result.smiles == smiles and result.n_failed == 0
        assert all(r.mol is not None and r.positions is None for r in result)
    assert (tmp_path / "a.csv").read_text().splitlines()[0] == "smiles"


def test_write_smiles_rejects_entries_that_would_not_read_back(tmp_path):
    with pytest.raises(ValueError, match="smiles\\[1\\]"):
        write_smiles(["CCO", None], tmp_path / "x.smi")
    assert not (tmp_path / "x.smi").exists()


def test_smi_reader_takes_first_token_and_skips_header_and_blank_lines(tmp_path):
    path = tmp_path / "m.smi"
    path.write_text("SMILES name\nCCO ethanol\n\n  c1ccccc1\tbenzene\nnot_a_smiles\n")
    result = read_molecules(path)
    assert result.smiles == ["CCO", "c1ccccc1", "not_a_smiles"]
    assert result.mols[2] is None  # kept as an invalid molecule, not an unreadable entry
    assert result.n_failed == 0


@pytest.mark.parametrize("text, expected", [
    ("id,Canonical_SMILES,score\n1,CCO,0.5\n2,\"c1ccccc1\",0.1\n", ["CCO", "c1ccccc1"]),
    ("name,Smiles_in\nx,CCO\ny,CCN\n", ["CCO", "CCN"]),   # the one column whose name contains "smiles"
    ("CCO,1\nCCN,2\n", ["CCO", "CCN"]),                      # no header at all
])
def test_csv_reader_finds_the_smiles_column(tmp_path, text, expected):
    path = tmp_path / "m.csv"
    path.write_text(text)
    assert read_molecules(path).smiles == expected


def test_garbled_sdf_entry_is_counted_and_the_rest_is_read(tmp_path, embedded):
    path = write_sdf(embedded[:3], tmp_path / "g.sdf")
    blocks = path.read_text().split("$$$$\n")
    blocks[1] = "broken\n  nonsense\n\n  x  y  V2000\nM  END\n"
    path.write_text("$$$$\n".join(blocks))
    result = read_molecules(path)
    assert (len(result), result.n_failed) == (2, 1)
    assert "SDF entry 2" in result.failures[0]
    assert "could not be read" in result.summary()


def test_garbled_xyz_blocks_are_counted_and_parsing_resumes(tmp_path):
    good = "3\nwater\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n"
    text = (good
            + "2\nbad element\nXx 0 0 0\nH 1 0 0\n"     # unknown element
            + good
            + "some junk line\nmore junk\n"              # text where a block should start
            + "4\ntoo short\nC 0 0 0\nH 1 0 0\n"         # count says 4, next block follows after 2
            + good
            + "2\ncut off\nC 0 0 0\n")                   # file ends inside a block
    path = tmp_path / "g.xyz"
    path.write_text(text)
    result = read_molecules(path)
    assert [r.source for r in result] == ["water", "water", "water"]
    assert result.n_failed == 4
    assert "unknown element 'Xx'" in result.failures[0]


@pytest.mark.parametrize("name, content, message", [
    ("empty.sdf", "", "is empty"),
    ("blank.xyz", "\n  \n", "is empty"),
    ("mols.pdb", "ATOM", "unknown extension"),
    ("binary.smi", b"\xff\xfe\x00garbage", "not a text file"),
])
def test_bad_files_raise_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(MoleculeFileError, match=message) as info:
        read_molecules(path)
    assert "\n" not in str(info.value)


def test_missing_file_raises_molecule_file_error(tmp_path):
    with pytest.raises(MoleculeFileError, match="file not found"):
        read_molecules(tmp_path / "nothing.sdf")
    assert issubclass(MoleculeFileError, ValueError)


def test_unwritable_path_raises_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(MoleculeFileError, match="cannot write"):
        write_smiles(["CCO"], tmp_path / "afile" / "out.smi")
    target = tmp_path / "out.smi"
    write_smiles(["CCO"], target)
    write_smiles(["CCN"], target)  # overwriting replaces the file whole
    assert target.read_text() == "CCN\n"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not the owner-only mode of a temp file
    assert set(os.listdir(tmp_path)) == {"afile", "out.smi"}


def test_gzipped_files_are_read_like_plain_ones(tmp_path) -> None:
    import gzip

    from molgen.chem.io import MoleculeFileError, read_molecules

    text = "3\nwater\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n"
    with gzip.open(tmp_path / "w.xyz.gz", "wt") as f:
        f.write(text)
    got = read_molecules(tmp_path / "w.xyz.gz")
    assert got.format == "xyz" and len(got.records) == 1 and list(got.records[0].atomic_numbers) == [8, 1, 1]
    (tmp_path / "bad.xyz.gz").write_text(text)  # not compressed
    with pytest.raises(MoleculeFileError, match="not a readable gzip file"):
        read_molecules(tmp_path / "bad.xyz.gz")
    whole = (tmp_path / "w.xyz.gz").read_bytes()
    (tmp_path / "cut.xyz.gz").write_bytes(whole[: len(whole) // 2])  # truncated
    with pytest.raises(MoleculeFileError, match="not a readable gzip file"):
        read_molecules(tmp_path / "cut.xyz.gz")
    (tmp_path / "w.pdb.gz").write_bytes(whole)
    with pytest.raises(MoleculeFileError, match="unknown extension '.pdb.gz'"):
        read_molecules(tmp_path / "w.pdb.gz")
