"""Honest outputs: one row per sample in every format (same validity when evaluated again), titles and
properties on every record, files that parse as nothing, the 3D atom limit, interrupted writes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from molgen.chem.geometry import MAX_ATOMS_3D, bond_orders
from molgen.chem.io import INVALID_SMILES, MoleculeFileError, read_molecules
from molgen.chem.write import write_xyz
from molgen.evaluation import evaluate
from molgen.samples import SampleSet

_T = 1.09 / np.sqrt(3)
METHANE = ([6, 1, 1, 1, 1], [[0, 0, 0], [_T, _T, _T], [_T, -_T, -_T], [-_T, _T, -_T], [-_T, -_T, _T]])
WATER = ([8, 1, 1], [[0, 0, 0], [0.757, 0.586, 0], [-0.757, 0.586, 0]])
TWO_WATERS = ([8, 1, 1, 8, 1, 1], [[0, 0, 0], [0.757, 0.586, 0], [-0.757, 0.586, 0],
                                   [5, 0, 0], [5.757, 0.586, 0], [4.243, 0.586, 0]])
PENTAVALENT = ([6, 9, 9, 9, 9, 9], [[0, 0, 0], [1.35, 0, 0], [0, 1.35, 0], [0, 0, 1.35], [-1.35, 0, 0], [0, -1.35, 0]])
CLASH = ([8, 1, 1, 1], [[0, 0, 0], [0.757, 0.586, 0], [-0.757, 0.586, 0], [0.757, 0.586, 0]])
ROOT = Path(__file__).resolve().parents[1]
# Scripts run from a temporary folder must import this checkout's molgen.
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def samples_3d() -> SampleSet:
    mols = [METHANE, PENTAVALENT, TWO_WATERS, CLASH, WATER]
    return SampleSet.from_3d([np.array(z) for z, _ in mols], [np.array(x, float) for _, x in mols],
                             model="edm", seed=7)


def test_every_format_keeps_every_3d_sample_and_evaluates_to_the_same_validity(tmp_path, samples_3d):
    assert [m is not None for m in samples_3d.mols] == [True, False, True, False, True]
    expected = evaluate(samples_3d)["validity"]
    assert expected == samples_3d.validity == 3 / 5
    for ext in ("smi", "sdf", "xyz", "csv"):
        path = samples_3d.save(tmp_path / f"s.{ext}")
        result = evaluate(path)
        assert result.n_molecules == 5 and result.n_unreadable == 0, ext
        assert result["validity"] == expected, ext
    smi = (tmp_path / "s.smi").read_text().splitlines()
    assert smi[0] == "smiles name" and smi[2] == f"{INVALID_SMILES} edm_sample_1"
    assert smi[3].split()[0] == "O.O"  # the whole molecule, both fragments (SampleSet.smiles keeps the largest)
    assert samples_3d.smiles[2] == "O"


def test_records_carry_title_index_smiles_flags_model_and_seed(tmp_path, samples_3d):
    sdf = read_molecules(samples_3d.to_sdf(tmp_path / "s.sdf"))
    titles = [r.source for r in sdf]
    assert titles == [f"edm sample {i}" for i in range(5)]
    first, bad = sdf.records[0].mol, sdf.records[1].mol
    assert (first.GetProp("molgen_index"), first.GetProp("molgen_smiles"), first.GetProp("molgen_valid")) == ("0", "C", "1")
    assert (first.GetProp("molgen_stable"), first.GetProp("molgen_connected")) == ("1", "1")
    assert (first.GetProp("molgen_model"), first.GetProp("molgen_seed")) == ("edm", "7")
    assert (bad.GetProp("molgen_valid"), bad.GetProp("molgen_smiles")) == ("0", INVALID_SMILES)
    assert sdf.records[2].mol.GetProp("molgen_connected") == "0"
    xyz = read_molecules(samples_3d.to_xyz(tmp_path / "s.xyz"))
    assert [r.source for r in xyz][:2] == [
        "index=0 smiles=C valid=1 stable=1 implicit_h=0 added_h=0 complete_3d=1 model=edm seed=7",
        f"index=1 smiles={INVALID_SMILES} valid=0 stable=0 complete_3d=0 model=edm seed=7"]
    mol = samples_3d.mols[0]  # the Mols themselves carry the same
    assert mol.GetProp("_Name") == "edm sample 0" and mol.GetBoolProp("molgen_valid") and mol.GetIntProp("molgen_seed") == 7


def test_2d_samples_keep_invalid_placeholders_and_log_probabilities(tmp_path):
    bad = Chem.RWMol(Chem.MolFromSmiles("C", sanitize=False))
    for _ in range(5):
        bad.AddBond(0, bad.AddAtom(Chem.Atom(9)), Chem.BondType.SINGLE)  # pentavalent carbon
    mols = [Chem.MolFromSmiles("CCO"), bad.GetMol(), None, Chem.MolFromSmiles("c1ccccc1.O")]
    samples = SampleSet.from_mols(mols, log_prob=np.array([-1.5, -2.0, -3.0, -4.25]))
    assert samples.validity == 0.5
    for ext in ("smi", "sdf", "xyz"):
        path = samples.save(tmp_path / f"s.{ext}")
        read = read_molecules(path)
        assert len(read) == 4 and read.n_failed == 0, ext
        if ext != "xyz":  # XYZ of a graph model holds ETKDG conformers: bonds are inferred from them again
            assert evaluate(path)["validity"] == 0.5, ext
    sdf = read_molecules(tmp_path / "s.sdf")
    assert not sdf.is_3d  # ETKDG conformers: evaluated as graphs with the file's bonds
    assert [r.mol is None for r in sdf] == [False, True, True, False]
    assert sdf.records[0].mol.GetProp("molgen_log_prob") == "-1.5"
    assert sdf.records[3].mol.GetProp("molgen_embedded") == "1"
    xyz = read_molecules(tmp_path / "s.xyz")
    assert [r.atomic_numbers.size for r in xyz][1:3] == [0, 0]  # invalid samples: blocks of 0 atoms
    assert xyz.records[3].source.startswith("index=3 smiles=O.c1ccccc1 valid=1 log_prob=-4.25")
    lines = (tmp_path / "s.smi").read_text().splitlines()
    assert [ln.split()[0] for ln in lines[1:]] == ["CCO", INVALID_SMILES, INVALID_SMILES, "O.c1ccccc1"]


@pytest.mark.parametrize("name, text, message", [
    ("x.smi", None, "looks like an SDF file"),
    ("x.smi", "CCO,1\nCCN,2\nCCC,3\n", "comma-separated"),
    ("x.smi", "3\nwater\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n", "looks like an XYZ file"),
    ("x.csv", "id,mol,score\n1,CCO,0.5\n2,CCN,0.1\n", "the columns are 'id', 'mol', 'score'"),
    ("x.csv", "SMILES\nfoo\nbar\n", "0 of 2 rows parsed as SMILES"),
])
def test_files_that_parse_as_nothing_say_why(tmp_path, name, text, message):
    path = tmp_path / name
    if text is None:
        from molgen.chem.write import write_sdf

        write_sdf([Chem.MolFromSmiles("CCO")] * 12, tmp_path / "real.sdf")
        text = (tmp_path / "real.sdf").read_text()
    path.write_text(text)
    with pytest.raises(MoleculeFileError, match=message) as info:
        read_molecules(path)
    assert "\n" not in str(info.value) and name in str(info.value)


def test_a_file_of_placeholders_only_is_evaluated_as_all_invalid(tmp_path):
    path = tmp_path / "p.smi"
    path.write_text(f"smiles name\n{INVALID_SMILES} a\n{INVALID_SMILES} b\n")
    assert evaluate(path)["validity"] == 0.0


def test_3d_molecules_over_the_atom_limit_are_unreadable_not_out_of_memory(tmp_path):
    n = MAX_ATOMS_3D + 1
    rng = np.random.default_rng(0)
    big = (np.full(n, 6), rng.normal(scale=20.0, size=(n, 3)))
    path = write_xyz([np.array(WATER[0]), big[0]], [np.array(WATER[1], float), big[1]], tmp_path / "big.xyz")
    result = read_molecules(path)
    assert len(result) == 1 and result.n_failed == 1
    assert f"more than the limit of {MAX_ATOMS_3D}" in result.failures[0]
    only_big = write_xyz([big[0]], [big[1]], tmp_path / "only.xyz")
    with pytest.raises(ValueError, match="no molecule could be read.*more than the limit"):
        evaluate(only_big)
    with pytest.raises(ValueError, match="MAX_ATOMS_3D"):
        bond_orders(*big)


def test_intdiv_and_filters_without_a_training_set(tmp_path):
    smiles = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "C1CC1"]
    alone = evaluate(smiles)
    ref = tmp_path / "ref.smi"
    ref.write_text("CCO\nCCC\nc1ccccc1O\n")
    with_file = evaluate(smiles, reference=ref, fcd=False)
    for result in (alone, with_file):
        assert 0 < result["intdiv1"] <= 1 and 0 < result["intdiv2"] <= 1
        assert "filters" in result.metrics or any("Filters not computed" in n for n in result.notes)
    assert alone["intdiv1"] == with_file["intdiv1"]
    assert "intdiv1" not in evaluate(SampleSet.from_3d([np.array(METHANE[0])] * 2,
                                                       [np.array(METHANE[1], float)] * 2)).metrics


# --- complete 3D structures and 2D conformers ----------------------------------------------------
def _ethanol_heavy_atoms() -> tuple[np.ndarray, np.ndarray]:
    m = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(m, randomSeed=0)
    m = Chem.RemoveHs(m)
    return np.array([a.GetAtomicNum() for a in m.GetAtoms()]), m.GetConformer().GetPositions()


@pytest.fixture(scope="module")
def lacking_h() -> SampleSet:
    """Like EDM output: ethanol's heavy atoms alone (6 H implied), a lone carbon (4), a complete
    methane, and an invalid sample."""
    ethanol = _ethanol_heavy_atoms()
    mols = [ethanol, (np.array([6]), np.zeros((1, 3))), METHANE, PENTAVALENT]
    return SampleSet.from_3d([np.array(z) for z, _ in mols], [np.array(x, float) for _, x in mols],
                             model="edm", seed=1, molecule_stability=0.25)


def test_3d_records_flag_the_hydrogens_rdkit_added_without_coordinates(tmp_path, lacking_h):
    df = lacking_h.to_df()
    assert df["implicit_h"].tolist()[:3] == [6, 4, 0] and df["implicit_h"].isna().tolist() == [False] * 3 + [True]
    assert df["complete_3d"].tolist() == [False, False, True, False]
    assert df["added_h"].tolist()[:3] == [0, 0, 0]
    assert lacking_h.record_properties(0)["molgen_implicit_h"] == 6
    sdf = read_molecules(lacking_h.to_sdf(tmp_path / "s.sdf")).records
    assert [(r.mol.GetProp("molgen_implicit_h"), r.mol.GetProp("molgen_complete_3d")) for r in sdf[:3]] == [
        ("6", "0"), ("4", "0"), ("0", "1")]
    assert sdf[1].mol.GetProp("molgen_smiles") == "C"
    xyz = [r.source for r in read_molecules(lacking_h.to_xyz(tmp_path / "s.xyz"))]
    assert "implicit_h=6 added_h=0 complete_3d=0" in xyz[0] and "complete_3d=1" in xyz[2]
    assert "complete_3d=0" in xyz[3] and "implicit_h" not in xyz[3]
    with pytest.raises(ValueError, match="3D samples"):
        SampleSet.from_mols([Chem.MolFromSmiles("C")]).hydrogen_flags(0)


def test_with_hydrogens_adds_them_with_coordinates_and_leaves_the_models_numbers_alone(tmp_path, lacking_h):
    full = lacking_h.with_hydrogens()
    assert full.info == lacking_h.info and full.smiles == lacking_h.smiles
    assert evaluate(full).metrics == evaluate(lacking_h).metrics  # the model's output is what is scored
    assert all(np.array_equal(a, b) for a, b in zip(full.positions, lacking_h.positions))
    assert lacking_h.mols[0].GetNumAtoms() == 3  # the original set is not changed
    df = full.to_df()
    assert df["added_h"].tolist()[:3] == [6, 4, 0] and df["implicit_h"].tolist()[:3] == [6, 4, 0]
    assert df["complete_3d"].tolist() == [True, True, True, False]
    sdf = read_molecules(full.to_sdf(tmp_path / "h.sdf"))
    assert [r.mol.GetProp("molgen_added_h") for r in sdf.records[:3]] == ["6", "4", "0"]
    assert [len(r.atomic_numbers) for r in sdf.records] == [9, 5, 5, 6]
    xyz = read_molecules(full.to_xyz(tmp_path / "h.xyz"))
    for path_result, tol in ((sdf, 1e-4), (xyz, 1e-6)):  # the model's atoms first, where the model put them
        for r, z, x in zip(path_result.records, lacking_h.atomic_numbers, lacking_h.positions):
            assert np.array_equal(r.atomic_numbers[:len(z)], z)
            assert np.abs(r.positions[:len(z)] - x).max() < tol
    mol = full.mols[0]
    x = mol.GetConformer().GetPositions()
    ch = [np.linalg.norm(x[b.GetBeginAtomIdx()] - x[b.GetEndAtomIdx()]) for b in mol.GetBonds()
          if b.GetEndAtom().GetAtomicNum() == 1 or b.GetBeginAtom().GetAtomicNum() == 1]
    assert len(ch) == 6 and all(0.9 < d < 1.2 for d in ch)
    assert "added_h=6 complete_3d=1" in xyz.records[0].source
    with pytest.raises(ValueError, match="applies to 3D samples"):
        SampleSet.from_mols([Chem.MolFromSmiles("C")]).with_hydrogens()


def _two_d() -> SampleSet:
    return SampleSet.from_mols([Chem.MolFromSmiles("CCO"), None, Chem.MolFromSmiles("c1ccccc1")], model="ar", seed=3)


def test_2d_sdf_with_k_conformers_writes_k_records_per_molecule_and_keeps_placeholders(tmp_path):
    samples = _two_d()
    records = read_molecules(samples.to_sdf(tmp_path / "k.sdf", conformers=3)).records
    assert [r.source for r in records] == ["ar sample 0"] * 3 + ["ar sample 1"] + ["ar sample 2"] * 3
    assert [r.mol.GetProp("molgen_conformer") for r in records if r.mol is not None] == ["0", "1", "2"] * 2
    assert records[3].mol is None  # the invalid sample: one placeholder, not three
    x = [r.mol.GetConformer().GetPositions() for r in records[:3]]
    assert len(x[0]) == 9 and not np.allclose(x[0], x[1])  # hydrogens, and distinct conformers
    one = read_molecules(samples.save(tmp_path / "one.sdf")).records  # default: one conformer, as before
    assert len(one) == 3 and not one[0].mol.HasProp("molgen_conformer")
    assert one[0].mol.GetProp("molgen_embedded") == "1"


def test_2d_sdf_conformers_are_seeded(tmp_path):
    samples = _two_d()

    def coords(name: str, **kw) -> list:
        records = read_molecules(samples.to_sdf(tmp_path / name, conformers=2, **kw))
        return [r.mol.GetConformer().GetPositions() for r in records if r.mol]

    a, b, c = coords("a.sdf"), coords("b.sdf"), coords("c.sdf", seed=4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.allclose(a[0], c[0])


def test_2d_sdf_without_conformers_holds_2d_depictions(tmp_path):
    path = _two_d().to_sdf(tmp_path / "flat.sdf", conformers=0)
    text = path.read_text()
    assert "RDKit          2D" in text and "3D" not in text and "molgen_embedded" not in text
    records = read_molecules(path).records
    assert len(records) == 3 and records[0].mol.GetNumAtoms() == 3  # hydrogens implicit
    assert evaluate(path)["validity"] == 2 / 3


def test_a_molecule_that_cannot_be_embedded_is_kept_flagged_and_counted(tmp_path, monkeypatch):
    from molgen.chem import write

    monkeypatch.setattr(write, "embed_3d", lambda *a, **k: None)
    with pytest.warns(UserWarning, match="2 of 3 molecules could not be embedded"):
        path = _two_d().to_sdf(tmp_path / "f.sdf", conformers=4)
    records = read_molecules(path).records
    assert len(records) == 3 and [r.mol.GetProp("molgen_embedded") for r in records if r.mol] == ["0", "0"]


@pytest.mark.parametrize("value", [-1, 51, 1.5, True])
def test_bad_conformer_counts_and_misplaced_conformers_are_refused(tmp_path, value, lacking_h):
    with pytest.raises(ValueError, match="conformers must be a whole number from 0"):
        _two_d().to_sdf(tmp_path / "x.sdf", conformers=value)
    with pytest.raises(ValueError, match="conformers applies to .sdf files"):
        _two_d().save(tmp_path / "x.xyz", conformers=2)
    with pytest.raises(ValueError, match="model's own coordinates"):
        lacking_h.to_sdf(tmp_path / "x.sdf", conformers=2)


# --- command lines and signals -------------------------------------------------------------------
def _evaluate_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "molgen.evaluate", *args], capture_output=True, text=True,
                          env={**ENV, "MOLGEN_CACHE": str(cache)}, timeout=300, cwd=ROOT)


def test_evaluate_refuses_to_write_json_over_its_input(tmp_path):
    path = tmp_path / "x.smi"
    path.write_text("CCO\nCCN\n")
    (tmp_path / "sub").mkdir()
    proc = _evaluate_cli(str(path), "--json", str(tmp_path / "sub" / ".." / "x.smi"), cache=tmp_path / "c")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: --json {tmp_path / 'sub' / '..' / 'x.smi'} is the file evaluated itself; "
        "writing it would destroy it: choose another name"]
    assert path.read_text() == "CCO\nCCN\n"


def test_evaluate_of_a_file_that_parses_as_nothing_exits_non_zero(tmp_path):
    path = tmp_path / "x.smi"
    path.write_text("id,smiles\n1,CCO\n2,CCN\n")
    proc = _evaluate_cli(str(path), cache=tmp_path / "c")
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert "x.smi: 0 of 3 lines parsed as SMILES" in line and "comma-separated" in line


def _default_sigint() -> None:
    """Ctrl-C as a terminal delivers it: a test run started in the background (``cmd &``) ignores SIGINT,
    and its children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(code: str, tmp_path: Path, *args: str) -> subprocess.Popen:
    script = tmp_path / "script.py"
    script.write_text(code)
    return subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=ROOT, preexec_fn=_default_sigint)


def _wait_for(proc: subprocess.Popen, word: str) -> None:
    line = proc.stdout.readline()
    assert word in line, (line, proc.stderr.read() if proc.poll() is not None else "")


def test_sigterm_during_a_write_leaves_no_temporary_file_and_the_old_file_whole(tmp_path):
    target = tmp_path / "out.smi"
    target.write_text("old\n")
    proc = _start(f"""
import sys, time
from molgen.chem.files import write_atomic
def chunks():
    print("writing", flush=True)
    for _ in range(600):
        time.sleep(0.05)
        yield "CCO\\n"
write_atomic({str(target)!r}, chunks())
""", tmp_path)
    _wait_for(proc, "writing")
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 143
    assert target.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["out.smi", "script.py"]


def test_every_atomic_writer_keeps_the_old_file_on_an_error_and_leaves_no_temporary_file(tmp_path):
    from molgen._atomic import replace_atomically
    from molgen._cache import cached_npz
    from molgen.models.checkpoint import atomic_write_text

    target = tmp_path / "a.json"
    target.write_text("old")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        replace_atomically(target, broken, durable=True)
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["a.json"]
    with pytest.raises(IsADirectoryError):
        replace_atomically(tmp_path, lambda f: f.write(b"x"))
    assert cached_npz(tmp_path / "sub" / "c.npz", "d1", lambda: {"x": np.arange(3)})["x"].tolist() == [0, 1, 2]
    assert cached_npz(tmp_path / "sub" / "c.npz", "d1", lambda: pytest.fail("recomputed"))["x"].tolist() == [0, 1, 2]
    assert sorted(os.listdir(tmp_path / "sub")) == ["c.npz"]


def test_ctrl_c_during_sdf_embedding_is_not_swallowed(tmp_path):
    target = tmp_path / "out.sdf"
    proc = _start(f"""
import sys
from rdkit import Chem
from rdkit.Chem import AllChem
from molgen.chem.write import write_sdf
# No force-field clean-up: the time goes into ETKDG, where RDKit takes SIGINT for itself.
AllChem.MMFFHasAllMoleculeParams = AllChem.UFFHasAllMoleculeParams = lambda mol: False
mols = [Chem.MolFromSmiles("CC(C)CCc1ccc(O)cc1CCNC(=O)c1ccccc1CCCCCC" * 2)] * 40
def go():
    print("embedding", flush=True)
    return write_sdf(mols, {str(target)!r}, embed=True)
try:
    go()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
print("finished", flush=True)
""", tmp_path)
    _wait_for(proc, "embedding")
    time.sleep(2.0)  # well inside the embeddings (about 1 s each)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in out, (out, err)
    assert not target.exists() and sorted(os.listdir(tmp_path)) == ["script.py"]


def test_ctrl_c_in_evaluate_gives_one_line(tmp_path):
    path = tmp_path / "many.smi"
    path.write_text("\n".join(["CC(C)CCc1ccc(O)cc1CCN", "c1ccccc1CCO", "CC(=O)Nc1ccc(O)cc1"] * 20_000) + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "molgen.evaluate", str(path), "--no-fcd"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**ENV, "MOLGEN_CACHE": str(tmp_path / "c")},
                            cwd=ROOT, preexec_fn=_default_sigint)
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines() == ["error: interrupted"]


def test_an_empty_3d_sample_is_one_invalid_record_in_every_format(tmp_path):
    samples = SampleSet.from_3d([np.array(METHANE[0]), np.zeros(0, int)], [np.array(METHANE[1], float), np.zeros((0, 3))])
    assert samples.validity == 0.5
    for ext in ("sdf", "xyz", "smi"):
        result = evaluate(samples.save(tmp_path / f"e.{ext}"))
        assert (result.n_molecules, result.n_unreadable, result["validity"], result.notes) == (2, 0, 0.5, []), ext


def test_2d_xyz_and_sdf_hold_the_same_seeded_conformer(tmp_path):
    samples = _two_d()  # info["seed"] = 3 seeds both
    sdf = read_molecules(samples.to_sdf(tmp_path / "c.sdf")).records[0].mol.GetConformer().GetPositions()
    xyz = read_molecules(samples.to_xyz(tmp_path / "c.xyz")).records[0].positions
    assert np.abs(sdf - xyz).max() < 1e-4
