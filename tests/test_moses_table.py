"""MOSES' own metric names (EvaluationResult.moses_table), the scaffold test set (TestSF) of the moses
reference and its cached statistics, and the progress bars shown while reference statistics are built.

Tiny MOSES files are written into a temporary cache, so these run in seconds; the check on the real
MOSES data is marked slow."""
import gzip
import math

import numpy as np
import pytest

from molgen import references as R
from molgen.datasets import moses as D
from molgen.evaluation import evaluate
from molgen.metrics import moses as M
from molgen.metrics.fingerprints import morgan_fingerprints
from molgen.metrics.result import MOSES_KEYS
from tests.conftest import DRUGS

#: The keys of MOSES' get_all_metrics (moses/metrics/metrics.py), in the order it fills its dict.
GET_ALL_METRICS = ["valid", "unique@1000", "unique@10000", "FCD/Test", "SNN/Test", "Frag/Test", "Scaf/Test",
                   "FCD/TestSF", "SNN/TestSF", "Frag/TestSF", "Scaf/TestSF", "IntDiv", "IntDiv2", "Filters",
                   "logP", "SA", "QED", "weight", "Novelty"]

TRAIN, TEST, TESTSF = DRUGS[:10], DRUGS[10:17], DRUGS[17:]
GEN = ["CCO", "c1ccccc1", "O=C(NCCc1ccccc1)C1CCC1", "Cc1ccc(S(=O)(=O)NCc2ccccc2)cc1", "CC1CCCN(C(=O)c2ccccc2)C1",
       "not a smiles"]


def _write_split(folder, split, smiles):
    text = "SMILES,SPLIT\n" + "".join(f"{s},{split}\n" for s in smiles)
    (folder / f"{split}.csv.gz").write_bytes(gzip.compress(text.encode()))


@pytest.fixture()
def tiny_moses(tmp_path, monkeypatch):
    """MOSES files of a few molecules in a fresh cache; the named-reference memo cleared around the test."""
    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path / "cache"))
    folder = D.moses_dir()
    for split, smiles in (("train", TRAIN), ("test", TEST), ("test_scaffolds", TESTSF)):
        _write_split(folder, split, smiles)
    R._named.cache_clear()
    yield folder
    R._named.cache_clear()


def test_moses_keys_are_get_all_metrics_names_in_its_order():
    assert list(MOSES_KEYS) == GET_ALL_METRICS


def test_moses_reference_compares_with_the_scaffold_test_set_too(tiny_moses):
    result = evaluate(GEN, reference="moses", fcd=False)
    valid = GEN[:-1]
    stats = M.moses_reference(TESTSF)
    assert result["snn_testsf"] == pytest.approx(M.snn(morgan_fingerprints(valid), stats))
    assert result["frag_testsf"] == pytest.approx(M.frag_similarity(valid, stats))
    assert result["scaf_testsf"] == pytest.approx(M.scaffold_similarity(valid, stats), nan_ok=True)
    assert result["snn"] == pytest.approx(M.snn(morgan_fingerprints(valid), M.moses_reference(TEST)))
    assert result["snn_testsf"] != result["snn"]
    table = result.moses_table()
    assert list(table) == GET_ALL_METRICS
    assert table["valid"] == 5 / 6 and table["SNN/TestSF"] == result["snn_testsf"]
    assert ((table["IntDiv"], table["logP"], table["Novelty"])
            == (result["intdiv1"], result["logp_w1"], result["novelty"]))
    # Not computed: NaN, never invented, and the notes say why.
    assert math.isnan(table["FCD/Test"]) and math.isnan(table["FCD/TestSF"]) and math.isnan(table["unique@1000"])
    assert "FCD not computed (fcd=False)" in result.notes
    assert any("unique@1k needs at least 1000" in n for n in result.notes)
    assert "fcd_testsf" not in result.metrics and "SNN/TestSF" in result.table()


def test_scaffold_test_statistics_are_cached_in_a_bundle_of_their_own(tiny_moses, monkeypatch):
    first = evaluate(GEN, reference="moses", fcd=False)
    bundles = {p.name.rsplit("-", 1)[0]: p for p in (tiny_moses.parent / "refstats").iterdir()}
    assert set(bundles) == {"moses", "moses-testsf"}
    assert {p.name for p in bundles["moses-testsf"].iterdir()} == {"comparison.txt.gz", "moses.npz"}  # no ChemNet

    def fail(*args, **kwargs):
        raise AssertionError("should have been read from the bundle")

    R._named.cache_clear()
    monkeypatch.setattr(M, "moses_reference", fail)
    again = evaluate(GEN, reference="moses", fcd=False)
    assert again.metrics == pytest.approx(first.metrics, nan_ok=True)
    # An edited scaffold test file gets another key; the Test / train bundle stays valid.
    _write_split(tiny_moses, "test_scaffolds", TESTSF[:-1])
    R._named.cache_clear()
    with pytest.raises(AssertionError, match="bundle"):
        evaluate(GEN, reference="moses", fcd=False)
    assert len(list((tiny_moses.parent / "refstats").glob("moses-testsf-*"))) == 2
    assert len(list((tiny_moses.parent / "refstats").glob("moses-????????????????"))) == 1


def test_fcd_against_the_scaffold_test_set_only_when_asked_for(tiny_moses, monkeypatch):
    import molgen.metrics.fcd as F

    # A stand-in for ChemNet (the wiring is under test, not ChemNet): mean = set size, unit covariance.
    monkeypatch.setattr(F, "chemnet_stats", lambda smiles, **kwargs: (np.full(2, float(len(smiles))), np.eye(2)))
    table = evaluate(GEN, reference="moses", fcd=True).moses_table()
    # |mu_gen - mu_ref|^2 with 5 valid generated molecules, 7 in Test and 8 in TestSF.
    assert (table["FCD/Test"], table["FCD/TestSF"]) == pytest.approx((2 * 2 ** 2, 2 * 3 ** 2))
    (testsf,) = R.resolve("moses").others
    assert (testsf.bundle.folder / "chemnet-comparison.npz").is_file()


def test_a_missing_scaffold_test_file_is_a_note_not_an_error(tiny_moses):
    (tiny_moses / "test_scaffolds.csv.gz").unlink()
    result = evaluate(GEN, reference="moses", fcd=False)
    assert "snn" in result.metrics and "snn_testsf" not in result.metrics
    assert math.isnan(result.moses_table()["SNN/TestSF"])
    assert any("TestSF metrics not computed" in n and D.FETCH_COMMAND in n for n in result.notes)


def test_other_references_have_no_testsf(tmp_path):
    ref = tmp_path / "ref.smi"
    ref.write_text("\n".join(TEST) + "\n")
    table = evaluate(GEN, reference=str(ref), fcd=False).moses_table()
    assert table["SNN/Test"] > 0 and math.isnan(table["SNN/TestSF"]) and math.isnan(table["Novelty"])


def test_unique_at_k_counts_stereoisomers_apart_as_moses_does(tmp_path, monkeypatch):
    import molgen.evaluation as E

    monkeypatch.setattr(E, "_UNIQUE_AT", (4,))  # unique@4 instead of @1000: four molecules suffice
    ref = tmp_path / "ref.smi"
    ref.write_text("\n".join(TEST) + "\n")
    result = evaluate(["C[C@H](N)O", "C[C@@H](N)O"] * 2, reference=str(ref), fcd=False)
    assert result["unique@4"] == 2 / 4
    assert result["uniqueness"] == 1 / 4  # molgen's uniqueness ignores stereo (GuacaMol's convention)


def test_building_the_statistics_shows_a_bar_per_stage(tiny_moses, monkeypatch, capsys):
    import molgen.metrics._progress as P

    monkeypatch.setattr(P, "CHUNK", 2)  # several chunks even for these tiny sets
    evaluate(GEN, reference="moses", fcd=False, progress=True)
    err = capsys.readouterr().err
    for stage in ("MOSES train: canonicalise", "Test: parse", "Test: fingerprints", "Test: fragments",
                  "Test: scaffolds", "Test: properties", "TestSF: fingerprints"):
        assert stage in err, stage
    R._named.cache_clear()
    evaluate(GEN, reference="moses", fcd=False, progress=True)  # all from the bundles: nothing to show
    assert "Test: fingerprints" not in capsys.readouterr().err


@pytest.mark.parametrize("progress", [False, None])  # None: only on a terminal, and pytest's stderr is none
def test_no_bars_with_progress_off_or_off_a_terminal(tiny_moses, monkeypatch, capsys, progress):
    import molgen.metrics._progress as P

    monkeypatch.setattr(P, "CHUNK", 2)
    evaluate(GEN, reference="moses", fcd=False, progress=progress)
    assert capsys.readouterr().err == ""


def test_chunked_statistics_equal_one_pass(monkeypatch):
    import molgen.metrics._progress as P
    from molgen.metrics.properties import property_table

    whole, table = M.moses_reference(DRUGS), property_table(DRUGS)
    monkeypatch.setattr(P, "CHUNK", 3)
    chunked = M.moses_reference(DRUGS, progress=True)
    assert (chunked.fingerprints == whole.fingerprints).all()
    assert (chunked.fragments, chunked.scaffolds) == (whole.fragments, whole.scaffolds)
    assert all((property_table(DRUGS, progress=True)[k] == v).all() for k, v in table.items())


@pytest.mark.slow
@pytest.mark.skipif(not all((D.moses_dir() / f"{s}.csv.gz").is_file() for s in D.SPLITS),
                    reason="MOSES files not fetched")
def test_real_moses_reference_gives_every_moses_key_but_fcd():
    """On the real MOSES sets (slow on a cold cache: it builds the Test and TestSF statistics)."""
    R._named.cache_clear()
    table = evaluate(D.load_moses("test")[:2000], reference="moses", fcd=False).moses_table()
    missing = {k for k, v in table.items() if math.isnan(v)}
    assert missing == {"FCD/Test", "FCD/TestSF", "unique@10000"}
    assert table["valid"] == 1.0 and table["Novelty"] == 1.0 and table["Frag/Test"] > 0.95
    assert table["SNN/Test"] > table["SNN/TestSF"] > 0.4
