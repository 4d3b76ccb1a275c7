"""Per-molecule output of evaluate: ``evaluate(..., per_molecule=True).per_molecule`` and
``molgen evaluate FILE --per-molecule out.csv``: one row per input molecule, in input order, from the
same validity path as the set metrics."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from molgen import references as R
from molgen.chem.io import MoleculeFileError
from molgen.evaluation import evaluate
from molgen.samples import SampleSet

COLUMNS = ["index", "smiles", "valid", "connected", "stable", "QED", "SA", "logP", "weight", "novel", "reason"]
SMILES = ["CCO", "not-a-smiles", "OCC", "C(C)(C)(C)(C)C", "CC(=O)[O-].[Na+]", None, "c1ccccc1", ""]

_T = 1.09 / np.sqrt(3)
METHANE = ([6, 1, 1, 1, 1], [[0, 0, 0], [_T, _T, _T], [_T, -_T, -_T], [-_T, _T, -_T], [-_T, -_T, _T]])
WATER = ([8, 1, 1], [[0, 0, 0], [0.757, 0.586, 0], [-0.757, 0.586, 0]])
CLASH = ([8, 1, 1, 1], [[0, 0, 0], [0.757, 0.586, 0], [-0.757, 0.586, 0], [0.757, 0.586, 0]])
SODIUM_CHLORIDE = ([11, 17], [[0, 0, 0], [2.4, 0, 0]])
ETHANE_NO_H = ([6, 6], [[0, 0, 0], [1.54, 0, 0]])  # valid (implicit hydrogens), but not stable by EDM's rule
GEOMETRIES = [METHANE, CLASH, WATER, SODIUM_CHLORIDE, ETHANE_NO_H]


def test_one_row_per_molecule_in_input_order_with_the_set_metrics_validity():
    result = evaluate(SMILES, per_molecule=True)
    frame = result.per_molecule
    assert list(frame.columns) == COLUMNS and list(frame["index"]) == list(range(len(SMILES)))
    assert list(frame["smiles"]) == ["CCO", "", "CCO", "", "CC(=O)[O-].[Na+]", "", "c1ccccc1", ""]
    assert list(frame["valid"]) == [True, False, True, False, True, False, True, False]
    assert frame["valid"].mean() == result["validity"] and frame["connected"].mean() == result["validity_connected"]
    valid = frame[frame["valid"]]
    for column, key in (("QED", "qed_mean"), ("SA", "sa_mean"), ("logP", "logp_mean"), ("weight", "weight_mean")):
        assert valid[column].mean() == pytest.approx(result[key])
        assert frame.loc[~frame["valid"], column].isna().all()
    assert frame["stable"].isna().all() and frame["novel"].isna().all()  # 2D input, no training set
    reasons = dict(zip(frame["index"], frame["reason"]))
    assert reasons[1] == "RDKit cannot parse the SMILES" and reasons[5] == "no molecule"
    assert reasons[3].startswith("RDKit rejects it: Explicit valence") and reasons[7] == "empty SMILES"
    assert all(reasons[i] == "" for i in (0, 2, 4, 6))


def test_evaluate_without_per_molecule_builds_no_table():
    result = evaluate(SMILES)
    assert result.per_molecule is None
    with pytest.raises(ValueError, match="per_molecule=True"):
        result.per_molecule_csv("x.csv")


def test_3d_rows_carry_edms_stability_and_why_a_structure_is_invalid():
    samples = SampleSet.from_3d([np.array(z) for z, _ in GEOMETRIES], [np.array(x, float) for _, x in GEOMETRIES])
    result = evaluate(samples, per_molecule=True)
    frame = result.per_molecule
    assert list(frame["smiles"]) == ["C", "", "O", "", "CC"]
    assert list(frame["stable"]) == [True, False, True, False, False]
    assert frame["stable"].mean() == result["molecule_stability"]
    assert frame["valid"].mean() == result["validity"] == samples.validity
    assert frame.loc[1, "reason"].startswith("atoms closer than")
    assert "Na" in frame.loc[3, "reason"] and frame.loc[4, "reason"] == ""


def test_novel_against_the_references_training_set():
    ref = R.Reference("tiny", "Tiny", lambda: ["CCO", "CCN", "c1ccccc1O"], _training=lambda: ["CCO"],
                      _draw=lambda: ["CCO", "CCN", "c1ccccc1O"])
    frame = evaluate(["CCO", "CCCC", "xx", "OCC"], reference=ref, fcd=False, per_molecule=True).per_molecule
    assert list(frame["novel"].astype(object)) == [False, True, pd.NA, False]


def _run(*args, cache):
    env = {**os.environ, "MOLGEN_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "molgen", "evaluate", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_writes_the_per_molecule_csv(tmp_path):
    gen = tmp_path / "gen.smi"
    gen.write_text("smiles\nCCO\nC1CC\nc1ccccc1\n")
    out = tmp_path / "rows" / "molecules.csv"
    proc = _run(str(gen), "--per-molecule", str(out), "--no-progress", cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and "3 molecules (graphs / SMILES)" in proc.stdout
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert lines[2] == "1,,False,False,,,,,,,RDKit cannot parse the SMILES"  # the file's own text explains it
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame["smiles"]) == ["CCO", "", "c1ccccc1"] and list(frame["stable"]) == ["", "", ""]
    assert [p.name for p in out.parent.iterdir()] == ["molecules.csv"]  # no temporary file left


def test_cli_never_writes_the_table_over_its_input(tmp_path):
    gen = tmp_path / "gen.smi"
    gen.write_text("CCO\nCCN\n")
    proc = _run(str(gen), "--per-molecule", str(gen), cache=tmp_path / "cache")
    assert proc.returncode != 0 and "is the file evaluated itself" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and gen.read_text() == "CCO\nCCN\n"
    same = tmp_path / "out.csv"
    proc = _run(str(gen), "--json", str(same), "--per-molecule", str(same), cache=tmp_path / "cache")
    assert proc.returncode != 0 and "the same file" in proc.stderr
    proc = _run(str(gen), "--per-molecule", str(tmp_path / "rows.csv.gz"), cache=tmp_path / "cache")
    assert proc.returncode != 0 and "use .csv" in proc.stderr and not (tmp_path / "rows.csv.gz").exists()


def test_a_failed_write_leaves_the_old_table_whole(tmp_path, monkeypatch):
    import molgen.chem.files as files

    out = tmp_path / "molecules.csv"
    out.write_text("old\n")
    result = evaluate(["CCO", "CCN"], per_molecule=True)

    def no_rename(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", no_rename)
    with pytest.raises(MoleculeFileError, match="cannot write"):
        result.per_molecule_csv(out)
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["molecules.csv"]
