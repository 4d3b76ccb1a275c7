"""benchmarks/studies: single-purpose scripts that share one timing helper, run as modules, and write
model cards only through molgen.models.card (static checks of their source; nothing is run)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "benchmarks" / "studies").glob("*.py"))
#: Private names the studies still use, waiting for public ones in the layers they measure (see
#: the redesign's merge notes); the list may only shrink.
PENDING_PRIVATE = {
    "bench_evaluate.py": {"molgen._cache", "_qm9_test_smiles"},
    "bench_fcd.py": {"_device", "_chemnet", "_canonical_smiles"},
    "bench_vae.py": {"_DATASET_DEFAULTS", "_dataset_smiles", "_has_valence"},
}


def _private_names(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.module and node.module != "__future__" and any(p.startswith("_") for p in node.module.split(".")):
                found.add(node.module)
            found |= {a.name for a in node.names if a.name.startswith("_")}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "F" \
                and node.attr.startswith("_"):
            found.add(node.attr)
    return found


def test_there_are_studies_and_the_old_script_paths_are_gone():
    names = {p.name for p in STUDIES}
    assert {"bench_edm.py", "bench_ar.py", "bench_vae.py", "edm_quality.py", "qm9_novelty.py"} <= names
    assert not list((ROOT / "benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_a_study_uses_the_shared_timer_patches_no_path_and_writes_cards_through_card(path: Path):
    text = path.read_text()
    assert "sys.path" not in text
    assert not re.search(r"\btime\.(perf_counter|process_time|monotonic)\(", text), "use benchmarks.timing"
    assert "atomic_write_text" not in text and "read_metrics" not in text, "model cards go through update_card"
    assert not re.search(r"def (timed|_time|_timer|_machine)\(", text)
    private = _private_names(ast.parse(text))
    assert private <= PENDING_PRIVATE.get(path.name, set()), private


def test_scaffold_generation_study_counts_presence_redraws_and_the_fcd_floor(tmp_path, monkeypatch):
    """The scaffold study end to end on a stand-in model and a 12-molecule 'MOSES test' (seconds)."""
    import molgen
    import molgen.references as references
    from benchmarks.studies import scaffold_generation as study
    from molgen.chem.convert import to_mol
    from molgen.samples import SampleSet

    test = ["Cc1ccc(C)cc1", "Oc1ccc(N)cc1", "Cc1ccccc1", "c1ccc2ccccc2c1", "CCc1ccc(CC)cc1", "Nc1ccc(O)cc1C",
            "c1ccncc1", "Cc1ccncc1", "CCN", "CCO", "C1CCNCC1", "OCc1ccc(CO)cc1"]
    drawn = ["Cc1ccc(C)cc1", "Cc1ccc(O)cc1", "Cc1ccc(O)cc1", None, "CCCC"]

    class Stand_in:
        def sample(self, n, seed=0, scaffold=None):
            mols = [to_mol(s) if s else None for s in drawn[:n]]
            return SampleSet.from_mols(mols, scaffold=scaffold, scaffold_redrawn=3, scaffold_missing=1)

    monkeypatch.setattr(references, "resolve", lambda name: type("Ref", (), {"comparison": test})())
    monkeypatch.setattr(references, "training_smiles", lambda name: frozenset({"Cc1ccc(C)cc1"}))
    monkeypatch.setattr(molgen, "load", lambda name: Stand_in())
    out = tmp_path / "table.txt"
    study.main(["-n", "5", "--models", "ar", "--scaffolds", "c1ccccc1", "*c1ccc(*)cc1", "--out", str(out)])
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# python") and "torch" in lines[1]
    ref = {line.split()[0]: line.split() for line in lines if line.startswith(("c1ccccc1 ", "*c1ccc(*)cc1 "))}
    # benzene: 7 test molecules hold it (naphthalene too); '*c1ccc(*)cc1' as marked: the four
    # para-disubstituted benzenes without a third substituent (not Nc1ccc(O)cc1C, not toluene)
    assert ref["c1ccccc1"][1:3] == ["7", "58.33%"] and ref["*c1ccc(*)cc1"][1:3] == ["4", "33.33%"]
    assert ref["*c1ccc(*)cc1"][3:5] == ["2", "2"]  # half drawn for the floor, the rest the FCD reference
    rows = {line.split()[1]: line.split() for line in lines if line.startswith("ar-moses")}
    # 5 samples: 4 valid, 3 hold benzene, 3 as marked
    assert rows["c1ccccc1"][2:6] == ["5", "80.00%", "60.00%", "-"]
    assert rows["*c1ccc(*)cc1"][5] == "60.00%"
    assert rows["c1ccccc1"][6:8] == ["75.00%", "66.67%"]  # 3 distinct of 4 valid; 2 of them not in train
    assert rows["c1ccccc1"][9:11] == ["3", "1"]  # the draw's redraw counts
    assert float(rows["c1ccccc1"][8]) >= 0
    # a '*' filled by an aromatic bond (an AR sample that bridges the para positions) is still as marked
    assert study.holder_test("*c1ccc(*)cc1")(to_mol("c1cc2ccc1[nH]c1nn(C)nc1s2"))
    assert not study.holder_test("*c1ccc(*)cc1")(to_mol("Cc1ccc(C)c(C)c1"))
