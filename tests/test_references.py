"""The reference registry (molgen.references), the one 3D-validity rule, and RDKit's log left alone."""
import subprocess
import sys

import numpy as np
import pytest
from rdkit import rdBase

from molgen import references as R
from molgen.chem.build import quiet_rdkit
from molgen.chem.convert import canonicalize, mols_from_3d, to_mol, to_smiles
from molgen.evaluation import evaluate
from molgen.samples import SampleSet

REF = ["CCO", "CCN", "c1ccccc1O", "CC(=O)O", "CCCl", "C1CCCC1", "CC(C)O", "NCCO", "OCCO", "c1ccncc1"]
WATER = (np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]))
METHANE = (np.array([6, 1, 1, 1, 1]),
           np.array([[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]],
                    dtype=float))
CLASH = (np.array([6, 6]), np.array([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0]]))
NO_TABLE = (np.array([26, 1]), np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]]))  # Fe: not in EDM's bond tables
APART = (np.array([8, 1, 1, 6]), np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [9.0, 9.0, 9.0]], dtype=float))


def test_importing_molgen_leaves_rdkits_log_as_it_was():
    code = ("from rdkit import rdBase\n"
            "before = rdBase.LogStatus()\n"
            "import molgen, molgen.chem.build, molgen.chem.convert, molgen.chem.io, molgen.chem.write\n"
            "import molgen.metrics.core, molgen.metrics.moses, molgen.evaluation, molgen.references, molgen.samples\n"
            "molgen.chem.convert.to_mol('C1CC')\n"
            "assert rdBase.LogStatus() == before, (before, rdBase.LogStatus())\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_quiet_rdkit_silences_only_inside_and_restores_the_log():
    before = rdBase.LogStatus()
    with quiet_rdkit():
        assert "rdApp.error:disabled" in rdBase.LogStatus()
    assert rdBase.LogStatus() == before


def test_to_smiles_states_its_convention():
    mol = to_mol("C[C@H](N)O.[Na+].[Cl-]")
    assert to_smiles(mol) == "CC(N)O.[Cl-].[Na+]"
    assert to_smiles(mol, isomeric=True) == "C[C@H](N)O.[Cl-].[Na+]"
    assert to_smiles(mol, largest_fragment=True) == "CC(N)O"
    assert to_smiles(to_mol("c1ccccc1"), kekule=True) == "C1=CC=CC=C1"
    assert to_smiles(None) is None and to_mol("") is None and to_mol("C1CC") is None
    assert canonicalize("OCC") == "CCO" and canonicalize("not a smiles") is None


def test_sample_set_validity_is_evaluates_validity_on_3d_samples():
    samples = [WATER, METHANE, CLASH, NO_TABLE, APART, (np.zeros(0, int), np.zeros((0, 3)))]
    zs, xs = [z for z, _ in samples], [x for _, x in samples]
    out = SampleSet.from_3d(zs, xs)
    assert [m is not None for m in out.mols] == [True, True, False, False, True, False]
    assert [m is not None for m in mols_from_3d(zs, xs)] == [m is not None for m in out.mols]
    metrics = evaluate(out, fcd=False).metrics
    assert out.validity == metrics["validity"] == 3 / 6
    assert metrics["validity_connected"] == 2 / 6


def test_unknown_reference_lists_the_choices():
    with pytest.raises(ValueError, match="qm9, moses"):
        R.resolve("zinc")
    assert R.resolve(None) is None and R.resolve("none") is None


def test_a_file_reference_is_cached_once_in_a_bundle_keyed_on_its_content(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(R, "CACHE_FILE_REFERENCES_FROM", 1)
    ref_file = tmp_path / "ref.smi"
    ref_file.write_text("\n".join(REF) + "\n")
    gen = ["CCO", "CCCO", "c1ccccc1", "CC(=O)N"]
    first = evaluate(gen, reference=str(ref_file), fcd=False)
    bundles = list((tmp_path / "cache" / "refstats").iterdir())
    assert len(bundles) == 1 and {p.name for p in bundles[0].iterdir()} >= {"comparison.txt.gz", "moses.npz",
                                                                              "properties.npz"}

    def fail(*args, **kwargs):
        raise AssertionError("should have been read from the bundle")

    import molgen.metrics.moses as M

    monkeypatch.setattr(M, "moses_reference", fail)
    again = evaluate(gen, reference=str(ref_file), fcd=False)
    assert again.metrics == pytest.approx(first.metrics, nan_ok=True)
    assert first["snn"] > 0 and "novelty" not in first.metrics and "kl_score" not in first.metrics
    ref_file.write_text("\n".join(REF[:-1]) + "\n")  # edited: another key, never the stale bundle
    with pytest.raises(AssertionError, match="bundle"):
        evaluate(gen, reference=str(ref_file), fcd=False)


def test_any_reference_gives_the_set_metrics_for_3d_input_too(tmp_path):
    ref_file = tmp_path / "ref.smi"
    ref_file.write_text("\n".join(REF) + "\n")
    out = SampleSet.from_3d([WATER[0], METHANE[0]], [WATER[1], METHANE[1]])
    with_ref = evaluate(out, reference=str(ref_file), fcd=False).metrics
    without = evaluate(out, fcd=False).metrics
    assert {"intdiv1", "intdiv2", "snn"} <= set(with_ref) and "intdiv1" not in without


def test_metrics_import_only_chem_and_the_cache():
    import ast
    from pathlib import Path

    import molgen.metrics

    folder = Path(molgen.metrics.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                inside = name.startswith("molgen.") or name.startswith("..")
                allowed = ("molgen.chem", "molgen._cache", "molgen.metrics", "..chem", ".._cache")
                assert not inside or name.startswith(allowed), f"{path.name} imports {name}"


def test_statistics_cached_before_the_bundles_are_adopted_only_for_the_same_set(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path))
    from molgen._cache import cache_dir, digest_strings
    from molgen.metrics.moses import moses_reference

    old = moses_reference(REF[:3])  # distinguishable from what the bundle would compute
    np.savez(cache_dir("refstats") / "old.moses.npz", digest=np.array(digest_strings(REF)), **old.to_arrays())
    ref = R.Reference("x", "X", lambda: list(REF), bundle=R._bundle("x", "key"), legacy=("old", "old-draw"))
    assert len(ref.moses_stats()) == 3 and (ref.bundle.folder / "moses.npz").is_file()
    other = R.Reference("y", "Y", lambda: list(REF[:5]), bundle=R._bundle("y", "key"), legacy=("old", "old-draw"))
    assert len(other.moses_stats()) == 5  # another set: computed, not adopted


def test_canonicalising_in_parallel_chunks_keeps_the_order_and_shows_a_bar(capsys):
    smiles = REF * 4 + ["not a smiles"]
    with R.showing_progress(True):
        got = R._canonical_parallel(smiles, chunk=5, desc="canonicalise test")
    assert got == [canonicalize(s) for s in smiles] and got[-1] is None
    assert "canonicalise test" in capsys.readouterr().err
