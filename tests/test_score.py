"""Density scores as a table (model.score, molgen score) and their percentiles."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import molgen
from molgen.models.scoring import COLUMNS, percentile


def test_score_keeps_every_row_and_says_why_one_has_no_score():
    table = molgen.load("ar-qm9").score(["CCO", "not_a_smiles", "C[Xe]C", "c1ccccc1"])
    assert list(table.columns) == list(COLUMNS) and len(table) == 4
    assert table["bound"].unique().tolist() == ["exact"]
    assert np.isfinite(table["nll"][[0, 3]]).all() and table["nll"][[1, 2]].isna().all()
    assert table["reason"][0] == "" and "does not parse" in table["reason"][1] and "Xe" in table["reason"][2]
    assert table["nll_per_atom"][0] == pytest.approx(table["nll"][0] / 3)


def test_percentiles_come_from_the_reference_quantiles():
    q = np.linspace(10, 20, 101)
    assert percentile(np.array([10.0, 15.0, 25.0, 5.0, np.nan]), q).tolist()[:4] == [0.0, 50.0, 100.0, 0.0]
    assert np.isnan(percentile(np.array([np.nan]), q)[0])


def test_score_cli_writes_the_csv_columns(tmp_path):
    src = tmp_path / "m.smi"
    src.write_text("CCO\nnot_a_smiles\n")
    out = tmp_path / "s.csv"
    proc = subprocess.run([sys.executable, "-m", "molgen", "score", str(src), "--model", "vae", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 3 and lines[1].startswith("CCO,")
    assert "scored 1 of 2 molecules (elbo)" in proc.stderr
    bad = subprocess.run([sys.executable, "-m", "molgen", "score", str(src), "--model", "nope"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown model" in bad.stderr


def test_edm_scores_3d_records_with_reasons():
    model = molgen.load("edm")
    water = (np.array([8, 1, 1]), np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0.0]]))
    table = model.score([water, (np.array([54]), np.zeros((1, 3)))], n_t=1)
    assert table["bound"][0] == "vlb" and np.isfinite(table["nll"][0]) and table["nll_per_atom"][0] == pytest.approx(table["nll"][0] / 3)
    assert "elements outside" in table["reason"][1]


def test_graph_models_score_a_3d_sample_set_by_its_molecules():
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from molgen.samples import SampleSet

    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    three_d = SampleSet.from_3d([z], [mol.GetConformer().GetPositions()])
    for name in ("ar-qm9", "vae-qm9"):
        table = molgen.load(name).score(three_d)
        assert table["smiles"][0] == "CCO" and np.isfinite(table["nll"][0]), name


def test_score_cli_keeps_a_row_for_an_unreadable_entry(tmp_path):
    from rdkit import Chem

    good = Chem.MolToMolBlock(Chem.MolFromSmiles("c1ccccc1"))
    src = tmp_path / "m.sdf"
    src.write_text(good + "$$$$\nbroken\n  no atoms here\n\nM  END\n$$$$\n" + good + "$$$$\n")
    out = tmp_path / "s.csv"
    proc = subprocess.run([sys.executable, "-m", "molgen", "score", str(src), "--model", "ar", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()[1:]
    assert len(lines) == 3 and lines[0].startswith("c1ccccc1,") and lines[2].startswith("c1ccccc1,")
    assert "unreadable" in lines[1] and "1 of them unreadable" in proc.stderr


def test_seed_none_draws_fresh_and_records_the_seed():
    model = molgen.load("ar-qm9")
    a, b = model.sample(8, seed=None), model.sample(8, seed=None)
    assert a.info["seed"] != b.info["seed"] and a.smiles != b.smiles
    assert model.sample(8, seed=a.info["seed"]).smiles == a.smiles
    vae = molgen.load("vae-qm9")
    c = vae.sample(8, seed=None)
    assert vae.sample(8, seed=c.info["seed"]).smiles == c.smiles
