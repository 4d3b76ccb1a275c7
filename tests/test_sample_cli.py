"""`python -m molgen.sample`: outputs, and one clear line for each kind of bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from molgen.models.edm import EDM


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = EDM(hidden=16, n_layers=2, atom_count_hist=[0, 0, 0, 1, 2, 3, 2, 1], default_sampling_steps=5)
    folder = tmp_path_factory.mktemp("ck") / "edm"
    model.save_pretrained(folder, metrics={})
    return folder


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "molgen.sample", *args], capture_output=True, text=True, timeout=300)


def _one_error_line(r: subprocess.CompletedProcess, text: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], r.stderr


def test_sample_writes_sdf_xyz_and_smiles(tiny_ckpt: Path, tmp_path: Path) -> None:
    for ext in ("sdf", "xyz", "smi"):
        out = tmp_path / f"s.{ext}"
        r = _run("--model", "edm", "--checkpoint", str(tiny_ckpt), "-n", "4", "--output", str(out), "--no-progress")
        assert r.returncode == 0, r.stderr
        assert out.exists() and out.stat().st_size > 0
        assert "4 molecules in" in r.stderr
    xyz = (tmp_path / "s.xyz").read_text().split("\n")
    assert int(xyz[0]) >= 3


def test_sample_prints_smiles_to_stdout(tiny_ckpt: Path) -> None:
    r = _run("--model", "edm", "--checkpoint", str(tiny_ckpt), "-n", "3", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 3


def test_unknown_model_lists_choices() -> None:
    _one_error_line(_run("--model", "gan"), "choose from")


@pytest.mark.parametrize("args,text", [(("-n", "0"), "-n must be a positive number"), (("--steps", "0"), "--steps must be positive"),
                                       (("--top-k", "3"), "--top-k does not apply to the edm model")])
def test_bad_numbers(tiny_ckpt: Path, args: tuple[str, ...], text: str) -> None:
    _one_error_line(_run("--model", "edm", "--checkpoint", str(tiny_ckpt), *args), text)


def test_missing_truncated_and_foreign_checkpoints(tiny_ckpt: Path, tmp_path: Path) -> None:
    _one_error_line(_run("--model", "edm", "--checkpoint", str(tmp_path / "nope")), "does not exist")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"model": "edm", "conf')
    _one_error_line(_run("--model", "edm", "--checkpoint", str(bad)), "unreadable or truncated")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model": "vae", "config": {}}')
    _one_error_line(_run("--model", "edm", "--checkpoint", str(other)), "holds a 'vae' checkpoint")


def test_unwritable_output(tiny_ckpt: Path, tmp_path: Path) -> None:
    _one_error_line(_run("--model", "edm", "--checkpoint", str(tiny_ckpt), "--output", str(tmp_path / "no" / "x.sdf")),
                    "does not exist")
    _one_error_line(_run("--model", "edm", "--checkpoint", str(tiny_ckpt), "--output", str(tmp_path / "x.pdb")),
                    "cannot write .pdb")


@pytest.mark.parametrize("args,text", [
    (("--batch-size", "0"), "--batch-size must be at least 1, got 0"),
    (("--batch-size", "-1"), "--batch-size must be at least 1, got -1"),
    (("--seed", "-1"), "--seed must be between 0 and 2**63 - 1"),
    (("--seed", str(2 ** 63)), "--seed must be between 0 and 2**63 - 1"),
    (("-n", "1000001"), "-n must be between 1 and 1,000,000"),
    (("--model", "ar", "--temperature", "nan"), "--temperature must be a finite number in (0, inf)"),
    (("--model", "vae", "--temperature", "inf"), "--temperature must be a finite number"),
    (("--model", "ar", "--top-p", "1.5"), "--top-p must be a finite number in (0, 1]"),
    (("--model", "ar", "--top-k", "0"), "--top-k must be at least 1"),
    (("--atoms", "0"), "--atoms must be between 1 and 1,000"),
    (("--model", "ar", "--max-ring-size", "2"), "--max-ring-size must be at least 3, got 2"),
    (("--max-ring-size", "6"), "--max-ring-size does not apply to the edm model"),
])
def test_bad_values_are_refused_before_anything_is_loaded(args: tuple[str, ...], text: str, tmp_path: Path,
                                                          monkeypatch) -> None:
    from molgen import models
    from molgen.sample import main

    def no_loading(*a, **k):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(models, "load", no_loading)
    out = tmp_path / "x.sdf"
    with pytest.raises(ValueError) as info:
        main([*args, "--output", str(out)])
    assert text in str(info.value)
    assert not out.exists()


def test_batch_size_zero_gives_one_line(tiny_ckpt: Path) -> None:
    _one_error_line(_run("--model", "edm", "--checkpoint", str(tiny_ckpt), "--batch-size", "0"),
                    "--batch-size must be at least 1")


def test_output_never_goes_into_a_checkpoint_folder_or_onto_a_folder(tiny_ckpt: Path, tmp_path: Path) -> None:
    from molgen.models.base import PRETRAINED_DIR
    from molgen.sample import main

    before = sorted(p.name for p in tiny_ckpt.iterdir())
    for target, text in ((tiny_ckpt / "weights.sdf", "inside the checkpoint folder"),
                         (PRETRAINED_DIR / "edm-qm9" / "x.smi", "inside the folder of shipped checkpoints"),
                         (tmp_path, "is a folder")):
        with pytest.raises(ValueError, match=text):
            main(["--model", "edm", "--checkpoint", str(tiny_ckpt), "-n", "1", "--output", str(target)])
    assert sorted(p.name for p in tiny_ckpt.iterdir()) == before
    with pytest.raises(ValueError, match="is a file; give the checkpoint folder"):
        main(["--model", "edm", "--checkpoint", str(tiny_ckpt / "config.json")])


def test_sampled_files_keep_every_sample_and_name_model_and_seed(tiny_ckpt: Path, tmp_path: Path) -> None:
    from molgen.chem.io import read_molecules
    from molgen.evaluation import evaluate

    out = tmp_path / "s.smi"
    r = _run("--model", "edm", "--checkpoint", str(tiny_ckpt), "-n", "6", "--seed", "3", "-o", str(out),
             "--no-progress")
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "smiles name" and [ln.split()[1] for ln in lines[1:]] == [f"edm_sample_{i}" for i in range(6)]
    sdf = tmp_path / "s.sdf"
    assert _run("--model", "edm", "--checkpoint", str(tiny_ckpt), "-n", "6", "--seed", "3", "-o", str(sdf),
                "--no-progress").returncode == 0
    records = read_molecules(sdf)
    assert len(records) == 6 and records.records[0].mol.GetProp("molgen_seed") == "3"
    assert evaluate(out)["validity"] == evaluate(sdf)["validity"]


@pytest.mark.parametrize("args,text", [
    (("--conformers", "51", "-o", "x.sdf"), "--conformers must be between 0 and 50, got 51"),
    (("--model", "ar", "--conformers", "-1", "-o", "x.sdf"), "--conformers must be between 0 and 50, got -1"),
    (("--conformers", "2", "-o", "x.sdf"), "--conformers does not apply to the edm model"),
    (("--model", "ar", "--conformers", "2", "-o", "x.smi"), "--conformers applies to .sdf output"),
    (("--model", "vae", "--conformers", "2"), "--conformers applies to .sdf output"),
    (("--model", "ar", "--add-hydrogens", "-o", "x.sdf"), "--add-hydrogens does not apply to the ar model"),
    (("--add-hydrogens", "-o", "x.smi"), "--add-hydrogens applies to .sdf and .xyz output"),
    (("--add-hydrogens",), "--add-hydrogens applies to .sdf and .xyz output"),
])
def test_output_options_are_refused_where_they_do_not_apply(args: tuple[str, ...], text: str, tmp_path: Path,
                                                            monkeypatch) -> None:
    from molgen import models
    from molgen.sample import main

    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("a model was loaded before the check"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="^" + text.replace("(", r"\(")):
        main(list(args))
    assert list(tmp_path.iterdir()) == []


def test_a_bad_conformer_count_is_one_error_line() -> None:
    _one_error_line(_run("--model", "ar", "--conformers", "99", "-o", "x.sdf"), "--conformers must be between 0 and 50")


def test_add_hydrogens_writes_complete_3d_records_and_the_same_summary(tiny_ckpt: Path, tmp_path: Path,
                                                                       capsys) -> None:
    from molgen.chem.io import read_molecules
    from molgen.sample import main

    base = ["--model", "edm", "--checkpoint", str(tiny_ckpt), "-n", "8", "--seed", "2", "--no-progress"]
    main([*base, "-o", str(tmp_path / "raw.sdf")])
    plain = capsys.readouterr().err.split(" in ")[1].split(":", 1)[1]
    main([*base, "--add-hydrogens", "-o", str(tmp_path / "h.sdf")])
    assert capsys.readouterr().err.split(" in ")[1].split(":", 1)[1] == plain.replace("raw.sdf", "h.sdf")
    raw, full = read_molecules(tmp_path / "raw.sdf").records, read_molecules(tmp_path / "h.sdf").records
    valid = [k for k, r in enumerate(raw) if r.mol is not None and r.mol.GetProp("molgen_valid") == "1"]
    assert valid, "the tiny model drew no valid molecule: pick another seed"
    for k in valid:
        a, b = raw[k].mol, full[k].mol
        assert b.GetProp("molgen_complete_3d") == "1"
        assert b.GetProp("molgen_added_h") == a.GetProp("molgen_implicit_h")
        assert b.GetNumAtoms() == a.GetNumAtoms() + int(a.GetProp("molgen_implicit_h"))
        assert b.GetProp("molgen_stable") == a.GetProp("molgen_stable")  # the model's own stability


def test_conformers_for_a_graph_model(tmp_path: Path) -> None:
    from molgen.chem.io import read_molecules
    from molgen.sample import main

    out = tmp_path / "ar.sdf"
    assert main(["--model", "ar", "-n", "2", "--conformers", "2", "-o", str(out), "--no-progress"]) == 0
    records = read_molecules(out).records
    expected = []  # two records (conformers 0, 1) per valid sample, one placeholder per invalid one
    for i in range(2):
        ok = any(r.source == f"ar sample {i}" and r.mol is not None for r in records)
        expected += [(f"ar sample {i}", "0"), (f"ar sample {i}", "1")] if ok else [(f"ar sample {i}", None)]
    assert [(r.source, r.mol.GetProp("molgen_conformer") if r.mol is not None else None) for r in records] == expected
    assert records[0].mol.GetProp("molgen_seed") == "0"


def test_max_ring_size_limits_the_rings_of_graph_samples(tmp_path: Path) -> None:
    from rdkit import Chem

    from molgen.chem.io import read_molecules
    from molgen.sample import main

    out = tmp_path / "vae.smi"
    assert main(["--model", "vae", "--dataset", "moses", "-n", "200", "--max-ring-size", "6", "-o", str(out),
                 "--no-progress"]) == 0
    mols = [Chem.MolFromSmiles(Chem.MolToSmiles(r.mol)) for r in read_molecules(out).records]
    assert len(mols) == 200 and all(m is not None for m in mols)
    assert max(len(r) for m in mols for r in m.GetRingInfo().AtomRings()) == 6  # benzene rings stay
