"""``python -m molgen.evaluate`` on small files (subprocess runs) and the ``evaluate`` API behind it."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from molgen.chem.write import write_xyz
from molgen.evaluation import EvaluationResult, evaluate
from molgen.samples import SampleSet

SMILES = ["CCO", "OCC", "C(C)(C)(C)(C)C", "c1ccccc1", "CC(=O)[O-].[Na+]"]

_T = 1.09 / np.sqrt(3)
METHANE = ([6, 1, 1, 1, 1], [[0, 0, 0], [_T, _T, _T], [_T, -_T, -_T], [-_T, _T, -_T], [-_T, -_T, _T]])
WATER = ([8, 1, 1], [[0, 0, 0], [0.757, 0.586, 0], [-0.757, 0.586, 0]])
CLASH = ([8, 1, 1, 1], [[0, 0, 0], [0.757, 0.586, 0], [-0.757, 0.586, 0], [0.757, 0.586, 0]])
SODIUM_CHLORIDE = ([11, 17], [[0, 0, 0], [2.4, 0, 0]])
GEOMETRIES = [METHANE, WATER, WATER, CLASH, SODIUM_CHLORIDE]


def run_cli(*args: str, cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOLGEN_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "molgen.evaluate", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture()
def smi_file(tmp_path):
    path = tmp_path / "gen.smi"
    path.write_text("smiles\n" + "\n".join(SMILES) + "\n")
    return path


@pytest.fixture()
def xyz_file(tmp_path):
    path = tmp_path / "gen.xyz"
    write_xyz([np.array(z) for z, _ in GEOMETRIES], [np.array(x, float) for _, x in GEOMETRIES], path)
    with path.open("a") as f:
        f.write("2\ngarbled: unknown element\nQq 0 0 0\nH 1 0 0\n")
    return path


def test_cli_prints_a_table_and_writes_json_for_smiles(tmp_path, smi_file):
    out_json = tmp_path / "out" / "metrics.json"
    proc = run_cli(str(smi_file), "--json", str(out_json), cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert "5 molecules (graphs / SMILES)" in proc.stdout
    assert "validity (connected)" in proc.stdout and "80.00 %" in proc.stdout
    data = json.loads(out_json.read_text())
    m = data["metrics"]
    # Valid: CCO, OCC (same), benzene, acetate salt -> 4 of 5, 3 distinct, 3 connected.
    assert (m["validity"], m["validity_connected"], m["uniqueness"], m["valid_and_unique"]) == (0.8, 0.6, 0.75, 0.6)
    assert data["input"] == "2d" and data["n_molecules"] == 5 and data["reference"] is None


def test_cli_on_xyz_counts_unreadable_blocks_clashes_and_unsupported_elements(tmp_path, xyz_file):
    out_json = tmp_path / "m.json"
    proc = run_cli(str(xyz_file), "--json", str(out_json), cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert "1 entries could not be read" in proc.stdout
    assert "atoms on top of each other" in proc.stdout and "(Na)" in proc.stdout
    m = json.loads(out_json.read_text())["metrics"]
    # Stable atoms: 5 + 3 + 3 + 1 (CLASH: only O) + 0 (Na, Cl: no bonds) of 5 + 3 + 3 + 4 + 2 = 17.
    assert m["atom_stability"] == 12 / 17
    assert m["molecule_stability"] == 3 / 5
    assert (m["validity"], m["uniqueness"], m["valid_and_unique"]) == (3 / 5, 2 / 3, 2 / 5)


def test_cli_with_a_file_reference(tmp_path, smi_file):
    ref = tmp_path / "ref.csv"
    ref.write_text("id,SMILES\n1,CCO\n2,CCN\n3,c1ccccc1O\n")
    proc = run_cli(str(smi_file), "--reference", str(ref), "--no-fcd", "--json", str(tmp_path / "r.json"),
                   cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert "SNN/ref.csv" in proc.stdout
    m = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert "novelty" not in m and "fcd" not in m  # a plain file has no training set; FCD was skipped
    assert 0 < m["snn"] <= 1 and "qed_w1" in m


@pytest.mark.parametrize("name, content, args, message", [
    ("missing.sdf", None, [], "file not found"),
    ("empty.xyz", "", [], "is empty"),
    ("junk.xyz", "1\nx\nQq 0 0 0\n", [], "no molecule could be read"),       # only an unsupported element
    ("a.smi", "CCO\n", ["--reference", "zinc"], "qm9, moses, none"),          # unknown reference
    ("a.smi", "CCO\n", ["--reference", "nothere.sdf"], "reference file not found"),
    ("a.pdb", "ATOM\n", [], "unknown extension"),
])
def test_cli_bad_input_gives_one_line_and_nonzero_exit(tmp_path, name, content, args, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    proc = run_cli(str(path), *args, cache=tmp_path / "cache")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error:")


# --- the API ---------------------------------------------------------------------------------
def test_evaluate_accepts_smiles_mols_and_none():
    from rdkit import Chem

    result = evaluate(["CCO", Chem.MolFromSmiles("OCC"), None, "C1CC"])
    assert isinstance(result, EvaluationResult)
    assert (result["validity"], result["uniqueness"]) == (0.5, 0.5)
    assert result.input_kind == "2d" and "molecule_stability" not in result.metrics
    assert result.as_dict()["metrics"]["validity"] == 0.5
    assert "validity" in str(result)


def test_evaluate_sampleset_from_3d_uses_edm_rules():
    zs = [np.array(z) for z, _ in GEOMETRIES[:3]]
    xs = [np.array(x, float) for _, x in GEOMETRIES[:3]]
    result = evaluate(SampleSet.from_3d(zs, xs))
    assert result.input_kind == "3d"
    assert (result["atom_stability"], result["molecule_stability"], result["validity"]) == (1.0, 1.0, 1.0)
    assert result["uniqueness"] == 2 / 3


def test_evaluate_nan_becomes_null_in_json():
    result = evaluate([None, "C1CC"])
    assert math.isnan(result["uniqueness"])
    assert json.loads(json.dumps(result.as_dict()))["metrics"]["uniqueness"] is None


def test_evaluate_fcd_against_a_file_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path / "cache"))
    ref = tmp_path / "ref.smi"
    ref.write_text("\n".join(["CCO", "c1ccccc1", "CC(=O)O", "CCN", "OCCO"]) + "\n")
    same = evaluate(["OCC", "c1ccccc1", "CC(O)=O", "NCC", "C(O)CO"], reference=ref)
    other = evaluate(["CCCCCCCCCC", "FC(F)(F)F", "ClCCl", "C#N", "O=C=O"], reference=ref)
    assert same["fcd"] == pytest.approx(0.0, abs=1e-3)  # the same molecules written differently
    assert other["fcd"] > 1.0
    assert same["snn"] == pytest.approx(1.0) and same["frag"] == pytest.approx(1.0)


def test_evaluate_errors():
    with pytest.raises(ValueError, match="qm9, moses, none"):
        evaluate(["CCO"], reference="zinc")
    with pytest.raises(ValueError, match="no molecule"):
        evaluate([])
    with pytest.raises(TypeError, match="int"):
        evaluate([1, 2])
