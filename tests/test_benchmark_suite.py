"""The benchmark suite (benchmarks/): scoring any generator, the report, the range check, quoted rows."""
from __future__ import annotations

import json

import pytest
from rdkit import Chem

from benchmarks.published import PUBLISHED, TABLE_UNITS, PublishedRow, published_rows
from benchmarks.report import TABLES, check_run, render, write_report
from benchmarks.run import parse_args
from benchmarks.suite import Row, Run, as_sample_set, score

FIXED = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "OCCO", "CC#N", "C1CC1", "not a smiles", "CCOC", "c1ccncc1"]


class FixedGenerator:
    """A user's generator: sample(n) returns SMILES strings, no seed argument."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def sample(self, n: int) -> list[str]:
        self.calls.append(n)
        return [FIXED[i % len(FIXED)] for i in range(n)]


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "reference.smi"
    path.write_text("\n".join(["CCO", "CCC", "c1ccccc1O", "CC(C)O", "NCCO", "CCCl", "C1CCCC1", "CC=O"]) + "\n")
    return path


@pytest.fixture
def fake_row(reference):
    gen = FixedGenerator()
    row = score(gen, n=20, dataset=reference, name="fixed-fake", fcd=False, train_step=False)
    assert gen.calls == [20]
    return row


def test_fake_generator_is_scored_with_exact_fractions(fake_row):
    m = fake_row.metrics
    assert fake_row.n_molecules == 20 and fake_row.role == "model"
    assert m["validity"] == pytest.approx(18 / 20)          # 2 of 20 are "not a smiles"
    assert m["uniqueness"] == pytest.approx(9 / 18)         # 9 distinct valid SMILES, each drawn twice
    assert m["valid_and_unique"] == pytest.approx(9 / 20)
    assert 0 <= m["intdiv1"] <= 1 and 0 <= m["snn"] <= 1    # the suite's extras and evaluate's set metrics
    (entry,) = fake_row.speed                               # the sample call itself was timed
    assert entry["sample"]["n"] == 20 and entry["sample"]["molecules_per_second"] > 0
    assert "train_step" not in entry


def test_fake_generator_appears_in_every_table_of_the_report(fake_row, tmp_path):
    run = Run(name="test-run", dataset=fake_row.dataset).add(fake_row)
    text = render([run])
    for key in fake_row.tables:
        section = text.split(f"### {TABLES[key].title}")[1].split("###")[0]
        assert "| fixed-fake |" in section
    assert "90.0" in text  # validity in % in the quality table
    path = write_report([Run.from_dict(json.loads(json.dumps(run.to_dict())))], tmp_path / "R.md")
    assert "| fixed-fake |" in path.read_text()


def test_run_round_trips_through_json_without_nan(fake_row, tmp_path):
    fake_row.metrics["frag"] = float("nan")
    run = Run(name="r", dataset=fake_row.dataset).add(fake_row)
    back = Run.load(run.save(tmp_path / "r.json"))
    assert back.rows[0].metrics["frag"] is None
    assert back.rows[0].metrics["validity"] == pytest.approx(0.9)
    assert back.rows[0].molecules is None


def test_rows_of_another_dataset_are_refused(fake_row):
    with pytest.raises(ValueError, match="scored on"):
        Run(name="r", dataset="qm9").add(fake_row)


def test_samples_from_mols_smiles_and_sample_sets_agree():
    smiles = ["CCO", None, "c1ccccc1"]
    a = as_sample_set(smiles)
    b = as_sample_set([Chem.MolFromSmiles("CCO"), None, Chem.MolFromSmiles("c1ccccc1")])
    assert a.smiles == b.smiles == ["CCO", None, "c1ccccc1"]
    assert as_sample_set(a) is a
    with pytest.raises(TypeError, match="SMILES strings"):
        as_sample_set([1, 2])


def test_a_generator_without_sample_is_rejected(reference):
    with pytest.raises(TypeError, match="sample"):
        score(object(), n=5, dataset=reference)


def test_range_check_accepts_the_fake_row(fake_row):
    assert check_run(Run(name="r", dataset=fake_row.dataset).add(fake_row)) == []


@pytest.mark.parametrize("key, value, words", [
    ("validity", 1.2, "validity = 1.2 is outside [0, 1]"),
    ("fcd", -0.5, "fcd = -0.5 is outside [0, inf]"),
    ("snn", float("inf"), "snn = inf"),
    ("fcd", float("nan"), "fcd is undefined"),
    ("valid_and_unique", None, "valid_and_unique is missing"),
    ("sa_mean", 11.0, "sa_mean = 11.0 is outside [1, 10]"),
])
def test_range_check_rejects_out_of_range_metrics(fake_row, key, value, words):
    fake_row.metrics[key] = value
    problems = check_run(Run(name="r", dataset=fake_row.dataset).add(fake_row))
    assert len(problems) == 1 and words in problems[0] and problems[0].startswith("fixed-fake: ")


def test_range_check_rejects_a_non_finite_nll_and_a_zero_speed(fake_row):
    fake_row.nll = {"mean": float("nan"), "scored": 0}
    fake_row.speed[0]["sample"]["molecules_per_second"] = 0.0
    problems = check_run(Run(name="r", dataset=fake_row.dataset).add(fake_row))
    assert any("NLL" in p for p in problems) and any("sampling speed" in p for p in problems)


def test_every_published_row_has_a_source_and_numbers_as_printed():
    assert {row.table for row in PUBLISHED} == set(TABLE_UNITS)
    for row in PUBLISHED:
        assert row.values, row.model
        for key in row.values:
            columns = {c for t in TABLES.values() for c, _ in t.columns}
            assert key in columns, (row.model, key)
    edm = {r.model: r for r in published_rows("qm9_edm")}
    assert edm["EDM"].values == {"nll": "-110.7", "atom_stability": "98.7", "molecule_stability": "82.0",
                                 "validity": "91.9", "valid_and_unique": "90.7"}
    assert "nll" not in edm["G-SchNet"].values  # not given by the source: left empty, not invented
    assert {"EDM", "GeoLDM", "G-SchNet"} <= set(edm)
    assert {"CGVAE", "GraphAF", "GraphDF"} <= {r.model for r in published_rows("qm9_2d")}
    moses = {r.model: r for r in published_rows("moses")}
    assert {"CharRNN", "VAE", "JTN-VAE"} <= set(moses)
    # MOSES' README: CharRNN's Test / TestSF pairs as printed (FCD, SNN, Frag, Scaf), and every column filled
    assert [moses["CharRNN"].values[k] for k in ("fcd", "fcd_testsf", "snn", "snn_testsf", "frag", "frag_testsf",
                                                 "scaf", "scaf_testsf")] == \
        ["0.0732", "0.5204", "0.6015", "0.5649", "0.9998", "0.9983", "0.9242", "0.1101"]
    assert all(len(r.values) == 15 for r in moses.values())


def test_a_published_row_without_source_or_with_a_non_number_is_refused():
    with pytest.raises(ValueError, match="no source"):
        PublishedRow("moses", "X", {"fcd": "0.1"}, source=" ")
    with pytest.raises(ValueError):
        PublishedRow("moses", "X", {"fcd": "n/a"}, source="somewhere")


def test_quoted_rows_are_marked_with_their_source_in_the_report(fake_row):
    fake_row.dataset = "qm9"
    text = render([Run(name="r", dataset="qm9").add(fake_row)])
    quality = text.split("### Sample quality")[1].split("###")[0]
    assert "| EDM |  | -110.7 | 98.7 | 82.0 | 91.9 | 90.7 | quoted [" in quality
    assert "Hoogeboom et al." in quality
    assert "| fixed-fake |" in quality and "| — | — |" in quality  # no stability for a 2D generator
    assert "CharRNN" not in text  # MOSES' rows belong to MOSES runs only


def test_cli_quick_defaults_and_sample_files(tmp_path):
    args = parse_args(["--quick"])
    assert (args.dataset, args.n, args.edm_n, args.nll_n) == ("qm9", 200, 32, 32)
    assert args.name == "quick-qm9" and "molgen-benchmarks-quick" in str(args.out)
    f = tmp_path / "edm.xyz.gz"
    f.write_bytes(b"")
    args = parse_args(["--samples", f"edm={f}", "--sampled-by", "edm=H100 run", "--speed-n", "edm=8"])
    assert args.samples == {"edm": str(f)} and args.sampled_by == {"edm": "H100 run"}
    assert args.speed_n["edm"] == 8 and args.out.name == "benchmarks"
    with pytest.raises(SystemExit):
        parse_args(["--samples", "edm"])
    with pytest.raises(SystemExit):
        parse_args(["--samples", f"edm={tmp_path / 'missing.xyz'}"])


def test_row_dict_has_no_molecules(fake_row):
    d = fake_row.to_dict()
    assert "molecules" not in d and Row.from_dict(d).name == "fixed-fake"


def test_figures_are_small_pngs(tmp_path):
    from benchmarks.figures import MAX_BYTES, molecule_grid, property_histograms

    gen = as_sample_set(FIXED * 3)
    data = as_sample_set(["CCO", "CCC", "c1ccccc1O", "CC(C)O", "NCCO", "CCCl", "C1CCCC1", "CC=O"])
    grid = molecule_grid(gen, tmp_path / "grid.png")
    hist = property_histograms({"fake": gen}, {"data": data}, tmp_path / "props.png")
    for path in (grid, hist):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 1_000 < path.stat().st_size < MAX_BYTES
    assert molecule_grid(as_sample_set([None, "xyz"]), tmp_path / "none.png") is None


def test_qm9_novelty_breakdown_splits_novel_molecules_into_heldout_and_outside():
    from benchmarks.studies.qm9_novelty import breakdown

    got = breakdown(["CCO", "CCO", "CCN", "CCCl", None], train={"CCO"}, held={"CCN"})
    assert got["validity"] == 0.8 and got["uniqueness"] == 0.75
    assert got["novelty"] == pytest.approx(2 / 3)
    assert got["in_qm9_heldout"] == pytest.approx(1 / 3) and got["outside_qm9"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("argv, message", [(["--models", "foo"], "unknown model"), (["-n", "-5"], "-n must be positive"),
                                           (["--nll-n", "-1"], "--nll-n must be 0 or more")])
def test_run_rejects_bad_arguments_in_one_line(argv, message, capsys):
    from benchmarks import run

    with pytest.raises(SystemExit) as exc:
        run.main(["--quick", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def test_small_or_partial_runs_never_default_to_the_committed_report(tmp_path, monkeypatch):
    from benchmarks import run

    monkeypatch.chdir(tmp_path)
    committed = run.HERE
    small = parse_args(["--models", "ar", "-n", "5", "--no-fcd", "--no-data", "--nll-n", "0"])
    assert small.out.resolve() != committed and small.out.parts[0] == "runs"
    assert small.out.name.startswith("benchmarks-suite-qm9-") and not small.out.exists()
    assert {"models ar only", "--no-fcd", "--no-data"} <= set(small.partial)
    for argv in (["-n", "5000"], ["--nll-n", "10"], ["--no-fcd"], ["--models", "ar,vae"], ["--edm-n", "64"]):
        assert parse_args(argv).out.resolve() != committed, argv
    assert parse_args([]).out == committed and parse_args([]).partial == []   # the full run
    assert parse_args(["-n", "5", "--overwrite"]).out == committed             # asked for
    assert parse_args(["-n", "5", "--out", str(committed)]).out == committed
    assert "molgen-benchmarks-quick" in str(parse_args(["--quick"]).out)


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "--seed must be between 0 and 2**63 - 1"),
    (["--seed", str(2 ** 63)], "--seed must be between 0 and 2**63 - 1"),
    (["-n", "2000000"], "-n must be between 1 and 1,000,000"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--speed-n", "edm=0"], "--speed-n edm= must be between 1"),
    (["--name", "../x"], "--name must be a plain file name"),
])
def test_run_rejects_bad_values_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_run_rejects_an_out_file_and_a_samples_folder(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for argv, message in ((["--out", str(tmp_path / "afile")], "is a file; give a folder"),
                          (["--samples", f"edm={tmp_path}"], "is a folder; give a molecule file")):
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert message in capsys.readouterr().err


def test_report_only_over_a_broken_json_gives_one_line(tmp_path, capsys):
    from benchmarks import run

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "suite-qm9.json").write_text('{"name": "suite-qm9", "rows": [')
    assert run.main(["--report-only", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "suite-qm9.json is not valid JSON" in err[0]
    (tmp_path / "results" / "suite-qm9.json").write_text('{"name": "x", "dataset": "qm9", "rows": [{"nope": 1}]}')
    assert run.main(["--report-only", "--out", str(tmp_path)]) == 2
    assert "not a readable run JSON" in capsys.readouterr().err
    assert not (tmp_path / "RESULTS.md").exists()


def test_the_report_has_a_conditional_section_from_the_shipped_cards(tmp_path) -> None:
    import json
    import shutil

    from benchmarks.report import render_conditional
    from molgen.models.base import PRETRAINED_DIR

    assert render_conditional(tmp_path) == []
    shutil.copy(PRETRAINED_DIR / "ar-qm9-cond" / "metrics.json", tmp_path / "metrics.json")
    (tmp_path / "x-cond").mkdir()
    card = json.loads((tmp_path / "metrics.json").read_text())
    card["other_evaluations"]["conditional"]["figure"] = "benchmarks/results/conditional_x.png"
    (tmp_path / "x-cond" / "metrics.json").write_text(json.dumps(card))
    text = "\n".join(render_conditional(tmp_path))
    assert "## Conditional generation" in text and "### `x-cond`" in text
    assert "| logp=0.282, qed=0.473 |" in text and "(results/conditional_x.png)" in text


def test_requested_against_achieved_plot(tmp_path) -> None:
    import numpy as np

    from benchmarks.figures import MAX_BYTES, requested_achieved

    rng = np.random.default_rng(0)
    data = {"logp": {"unconditional": {t: rng.normal(0.3, 1, 200) for t in (-0.9, 0.3, 1.6)},
                     "guidance 2": {t: rng.normal(t, 0.3, 200) for t in (-0.9, 0.3, 1.6)}},
            "qed": {"unconditional": {0.47: rng.normal(0.47, 0.07, 200)}}}
    path = requested_achieved(data, tmp_path / "c.png", title="t")
    assert path is not None and 1_000 < path.stat().st_size < MAX_BYTES
    assert requested_achieved({"logp": {"guidance 2": {1.0: np.array([])}}}, tmp_path / "e.png") is None


def test_the_moses_table_shows_testsf_columns_for_moses_runs_only():
    moses = [h for _, h in TABLES["moses"].columns_for("moses")]
    qm9 = [h for _, h in TABLES["moses"].columns_for("qm9")]
    assert [h for h in moses if "TestSF" in h] == ["FCD/TestSF", "SNN/TestSF", "Frag/TestSF", "Scaf/TestSF"]
    assert not [h for h in qm9 if "TestSF" in h] and len(qm9) == len(moses) - 4
