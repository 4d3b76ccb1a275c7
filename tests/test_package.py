"""The package as chemists get it: its distribution name and extras, the data it ships, checkpoints
by name (``molgen.list_models()``, ``molgen.load("edm-qm9")``), devices, the evaluate default, and
SampleSet behaving like a list."""
from __future__ import annotations

import glob
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem

import molgen
from molgen.datasets import qm9
from molgen.models import base
from molgen.samples import SampleSet

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {"edm-qm9", "ar-qm9", "ar-qm9-cond", "ar-moses", "ar-moses-cond", "vae-qm9", "vae-moses"}
tomllib = pytest.importorskip("tomllib")


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# --- name, extras, wheel contents -------------------------------------------------------------
def test_distribution_name_is_not_the_other_molgen_and_messages_use_it(project):
    name = project["project"]["name"]
    assert name == "molgen-models"  # `molgen` on PyPI is a different toolkit
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["molgen*"]  # import name stays
    assert f"pip install '{name}[qm9]'" == qm9.INSTALL_QM9


def test_qm9pack_is_an_extra_not_a_dependency(project):
    deps = " ".join(project["project"]["dependencies"])
    extras = project["project"]["optional-dependencies"]
    assert "qm9pack" not in deps and "matplotlib" not in deps
    for extra in ("qm9", "train", "test"):
        assert any(r.startswith("qm9pack") for r in extras[extra]), extra
    assert any(r.startswith("pytest") for r in extras["test"])


def test_missing_qm9pack_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "qm9pack" else real(name, *a))
    with pytest.raises(qm9.DataMissingError, match=r"pip install 'molgen-models\[qm9\]'"):
        qm9.qm9pack_data_dir()


def _tracked(folder: str) -> set[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", folder], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return {line for line in out.stdout.splitlines() if (ROOT / line).is_file()}


def test_package_data_globs_cover_every_shipped_file(project):
    """Every file of the checkpoints (weights, config, metrics, logs, train state in any new format),
    the training configs and the split is matched by a package-data glob, so the wheel has it."""
    patterns = project["tool"]["setuptools"]["package-data"]["molgen"]
    matched = {str(Path(p).relative_to(ROOT)) for pat in patterns
               for p in glob.glob(str(ROOT / "molgen" / pat), recursive=True) if Path(p).is_file()}
    wanted = set()
    for folder in ("molgen/pretrained", "molgen/configs", "molgen/data"):
        wanted |= {f for f in _tracked(folder) if not f.endswith(".py")}
    assert {f"molgen/pretrained/{n}/config.json" for n in SHIPPED} <= wanted
    assert "molgen/data/qm9_split.npz" in wanted and "molgen/configs/edm-qm9.json" in wanted
    assert wanted - matched == set()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_split_comes_from_the_file_in_the_package(monkeypatch):
    def no_regeneration(*args, **kwargs):
        raise AssertionError("make_split must not be called: the shipped split file is read")

    monkeypatch.setattr(qm9, "make_split", no_regeneration)
    qm9.split_indices.cache_clear()
    try:
        path = qm9._split_file()
        assert path.parent == Path(molgen.__file__).resolve().parent / "data"
        sizes = {k: qm9.indices(k).size for k in ("train", "valid", "test")}
        assert sizes == qm9.SPLIT_SIZES
    finally:
        qm9.split_indices.cache_clear()


def test_a_missing_split_file_is_an_error_not_a_silent_regeneration(monkeypatch, tmp_path):
    monkeypatch.setattr(qm9, "_split_file", lambda: tmp_path / "qm9_split.npz")
    qm9.split_indices.cache_clear()
    try:
        with pytest.raises(qm9.DataMissingError, match="qm9_split.npz is missing"):
            qm9.indices("train")
    finally:
        qm9.split_indices.cache_clear()


# --- checkpoints by name ----------------------------------------------------------------------
def test_list_models_lists_the_shipped_checkpoints_with_their_model_card_numbers():
    found = molgen.list_models()
    assert [p.name for p in found] == sorted(SHIPPED)
    for p in found:
        assert p.name in (f"{p.model}-{p.dataset}", f"{p.model}-{p.dataset}-cond")  # -cond: p(x | y)
        assert p.path == base.PRETRAINED_DIR / p.name and (p.path / "config.json").is_file()
        assert 0 <= p.metrics["validity"] <= 1 and 0 <= p.metrics["novelty"] <= 1
        assert p.n_samples == 10_000
        # FCD against MOSES test needs ChemNet statistics that take hours on a CPU: a CPU-trained card may lack it
        assert p.metrics["fcd"] > 0 if p.name != "ar-moses-cond" else p.metrics.get("fcd") is None
    edm = {p.name: p for p in found}["edm-qm9"]
    evaluation = json.loads((edm.path / "metrics.json").read_text())["evaluation"]
    card = evaluation["metrics"]["metrics"]
    assert edm.metrics["validity"] == card["validity"] == 0.5219
    assert evaluation["steps"] == json.loads((edm.path / "config.json").read_text())["config"]["default_sampling_steps"]
    assert edm.metrics["molecule_stability"] == card["molecule_stability"]
    vae = {p.name: p for p in found}["vae-moses"]  # the molgen_evaluate block, which has FCD, wins
    assert vae.metrics["fcd"] == json.loads((vae.path / "metrics.json").read_text())["evaluation"]["molgen_evaluate"]["fcd"]
    assert molgen.models.list_models() == ["ar", "edm", "vae"]  # the model classes


def test_every_shipped_model_card_has_the_one_schema():
    from molgen.models.card import read_card, validate_card

    for name in SHIPPED:
        card = read_card(base.PRETRAINED_DIR / name)
        validate_card(card, shipped=True)
        assert card["train_split"].startswith("train") and card["evaluation"]["date"]


def test_model_cards_are_written_through_one_function_that_refuses_the_old_keys(tmp_path):
    from molgen.models.card import read_card, update_card, write_card

    card = {"dataset": "qm9", "train_split": "train", "steps": 3, "epochs": 0.1, "train_config": {}}
    with pytest.raises(ValueError, match="'split' is now 'train_split'.*'train_machine' is now 'train_hardware'"):
        write_card(tmp_path, {**card, "split": "train", "train_machine": "cpu"})
    with pytest.raises(ValueError, match="'evaluation_150_steps': put it under 'other_evaluations' as '150_steps'"):
        write_card(tmp_path, {**card, "evaluation_150_steps": {}})
    with pytest.raises(ValueError, match="'steps' is missing"):
        write_card(tmp_path, {k: v for k, v in card.items() if k != "steps"})
    assert not (tmp_path / "metrics.json").exists()
    write_card(tmp_path, card)
    update_card(tmp_path, "evaluation", {"command": "x", "date": "today", "validity": float("nan")})
    update_card(tmp_path, "other_evaluations/temperature_1.1", {"command": ["a", "b"], "date": "today"})
    with pytest.raises(ValueError, match="has no 'date'"):
        update_card(tmp_path, "other_evaluations/t2", {"command": "x"})
    saved = read_card(tmp_path)
    assert saved["evaluation"]["validity"] is None  # JSON has no NaN
    assert list(saved["other_evaluations"]) == ["temperature_1.1"] and saved["steps"] == 3


def test_an_older_card_is_upgraded_to_the_schema_when_a_run_resumes():
    from molgen.models.card import upgrade_card, validate_card

    old = {"split": "train", "train_machine": "cpu", "steps": 3, "epochs": 0.1, "train_config": {},
           "evaluation_150_steps": {"command": "x", "date": "d"}, "other_evaluations": {"t": {"command": "y", "date": "d"}}}
    new = upgrade_card(old)
    validate_card(new)
    assert new["train_split"] == "train" and new["train_hardware"] == "cpu" and "split" not in new
    assert new["other_evaluations"] == {"t": {"command": "y", "date": "d"}, "150_steps": {"command": "x", "date": "d"}}


def test_load_accepts_checkpoint_names_model_names_and_paths():
    by_name = molgen.load("ar-moses")
    assert by_name.checkpoint_dir == base.PRETRAINED_DIR / "ar-moses"
    assert molgen.load("ar", dataset="moses").checkpoint_dir == by_name.checkpoint_dir
    assert molgen.load("vae").checkpoint_dir == base.PRETRAINED_DIR / "vae-qm9"
    by_path = molgen.load(str(base.PRETRAINED_DIR / "vae-moses"))
    assert type(by_path).__name__ == "GraphVAE" and by_path.checkpoint_dir == base.PRETRAINED_DIR / "vae-moses"
    assert molgen.load(base.PRETRAINED_DIR / "ar-qm9").name == "ar"
    other = molgen.load("ar-moses", checkpoint=base.PRETRAINED_DIR / "ar-qm9")  # a folder of the same model
    assert other.checkpoint_dir == base.PRETRAINED_DIR / "ar-qm9"
    cls = base.model_class("vae")
    assert cls.from_pretrained("vae-moses").checkpoint_dir == base.PRETRAINED_DIR / "vae-moses"
    assert cls.from_pretrained("vae").checkpoint_dir == base.PRETRAINED_DIR / "vae-qm9"


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match=r"unknown model or checkpoint 'edm-moses'; choose from ar, edm, vae, "
                                         r"ar-moses, ar-moses-cond, ar-qm9, ar-qm9-cond, edm-qm9, vae-moses, vae-qm9"):
        molgen.load("edm-moses")
    with pytest.raises(ValueError, match="checkpoint of the ar model, not of vae"):
        base.model_class("vae").from_pretrained("ar-qm9")
    with pytest.raises(ValueError, match="trained on qm9, not 'moses'"):
        molgen.load("ar-qm9", dataset="moses")
    with pytest.raises(molgen.models.CheckpointError, match="does not exist"):
        molgen.load("./no-such-folder")


# --- devices ----------------------------------------------------------------------------------
def test_device_auto_is_cuda_when_available_else_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert base.resolve_device("auto") == torch.device("cpu")
    assert molgen.load("ar-qm9", device="auto").device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert base.resolve_device("auto") == torch.device("cuda")


def test_cuda_on_a_cpu_only_torch_is_one_clear_value_error(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(ValueError, match=r"device 'cuda' asked for, but this torch .* is a CPU-only build"):
        molgen.load("ar-qm9", device="cuda")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device is available"):
        molgen.load("edm", device="cuda:0")
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got 'gpu'"):
        molgen.load("edm", device="gpu")


# --- evaluate's default reference ---------------------------------------------------------------
def test_api_and_cli_evaluate_default_to_the_same_reference(tmp_path, capsys):
    import importlib

    cli = importlib.import_module("molgen.evaluate")  # the module; molgen.evaluate is the function

    path = tmp_path / "m.smi"
    path.write_text("CCO\nc1ccccc1\nCC(=O)O\n")
    result = molgen.evaluate(str(path), fcd=False)
    assert result.reference is None
    assert cli.main([str(path), "--no-fcd"]) == 0
    assert "reference: none" in capsys.readouterr().out
    assert "novelty" not in result.metrics


def test_importing_the_command_modules_keeps_the_api_functions():
    import importlib
    import types

    for name in ("sample", "evaluate"):
        module = importlib.import_module(f"molgen.{name}")
        assert isinstance(module, types.ModuleType) and hasattr(module, "main")
        assert callable(getattr(molgen, name)) and not isinstance(getattr(molgen, name), types.ModuleType)
    from molgen.evaluate import main  # the command's functions stay importable

    assert main is importlib.import_module("molgen.evaluate").main
    assert main is importlib.import_module("molgen.cli.evaluate").main  # the old module only forwards


# --- the command line -------------------------------------------------------------------------
def _python(*args: str) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_python_m_molgen_help_lists_every_command_and_the_console_script_is_declared(project):
    from molgen.cli import COMMANDS

    out = _python("-m", "molgen", "--help")
    assert out.returncode == 0 and out.stderr == ""
    for name in ("sample", "evaluate", "train", "interpolate", "fetch"):
        assert f"  {name} " in out.stdout and name in COMMANDS
    assert project["project"]["scripts"] == {"molgen": "molgen.cli:main"}


@pytest.mark.parametrize("argv, message", [
    (["nope"], "unknown command 'nope'; choose from sample, evaluate"),
    (["sample", "--bogus"], "unrecognized arguments: --bogus (see molgen sample --help)"),
    (["sample", "-n", "0"], "-n must be a positive number of molecules, got 0"),
    (["sample", "--device", "gpu"], "--device: device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got 'gpu'"),
    (["evaluate", "missing.smi"], "file not found"),
    (["interpolate", "CCO"], "the following arguments are required: SMILES_B"),
    (["train", "--model", "edm", "--max-steps", "0"], "--max-steps must be an integer >= 1, got 0"),
    (["fetch", "zinc"], "invalid choice: 'zinc'"),
])
def test_every_command_reports_bad_input_in_one_line_with_exit_status_2(argv, message):
    out = _python("-m", "molgen", *argv)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr.splitlines() == [out.stderr.strip()] and out.stderr.startswith("error: ")
    assert message in out.stderr, out.stderr


def test_the_old_module_commands_and_molgen_command_are_the_same(tmp_path):
    path = tmp_path / "m.smi"
    path.write_text("CCO\nc1ccccc1\n")
    new = _python("-m", "molgen", "evaluate", str(path), "--no-fcd")
    old = _python("-m", "molgen.evaluate", str(path), "--no-fcd")
    assert new.returncode == old.returncode == 0 and new.stdout == old.stdout and "validity" in new.stdout
    new, old = _python("-m", "molgen", "sample", "-n", "0"), _python("-m", "molgen.sample", "-n", "0")
    assert new.returncode == old.returncode == 2 and new.stderr == old.stderr


def test_every_command_defaults_to_the_same_device_auto():
    from molgen.cli import denoise, interpolate, sample, score, train
    from molgen.cli.common import check_device

    assert sample.build_parser().parse_args(["--device", "cpu"]).device == "cpu"
    assert train.build_parser().parse_args(["--model", "edm"]).device == "auto"
    for cmd, argv in ((sample, []), (denoise, ["x.sdf", "-o", "y.sdf"]), (score, ["x.smi", "--model", "ar"]), (interpolate, ["C", "O"])):
        assert cmd.build_parser().parse_args(argv).device == "auto", cmd.__name__
    assert check_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


# --- SampleSet as a list ------------------------------------------------------------------------
def _two_d() -> SampleSet:
    return SampleSet.from_mols([Chem.MolFromSmiles(s) if s else None for s in ("CCO", "", "c1ccccc1", "CC.O")],
                               model="test", seed=3)


def test_sampleset_iterates_over_mols_with_none_for_invalid_samples():
    out = _two_d()
    items = list(out)
    assert len(items) == 4 and items[1] is None
    assert [Chem.MolToSmiles(m) for m in items if m is not None] == ["CCO", "c1ccccc1", "CC.O"]
    assert sum(m is not None for m in out) == 3


def test_sampleset_indexing_gives_mols_and_slices_give_sample_sets():
    out = _two_d()
    assert Chem.MolToSmiles(out[0]) == "CCO" and out[1] is None and Chem.MolToSmiles(out[-1]) == "CC.O"
    with pytest.raises(IndexError):
        out[4]
    with pytest.raises(TypeError, match="integers or slices"):
        out["CCO"]
    part = out[1:]
    assert isinstance(part, SampleSet) and len(part) == 3
    assert part.smiles == [None, "c1ccccc1", "CC"] and part.info["index"] == [1, 2, 3]
    assert part.info["seed"] == 3 and "index" not in out.info  # the original is not changed
    assert part[::2].info["index"] == [1, 3]  # indices stay those of the original draw
    assert out[np.int64(2)] is out.mols[2]


def test_sliced_3d_sampleset_keeps_atom_types_and_positions():
    z = [np.array([8, 1, 1]), np.array([6, 1, 1, 1, 1]), np.array([8, 1, 1, 1, 1])]
    x = [np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]),
         np.array([[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]]),
         np.array([[0, 0, 0], [0.96, 0, 0], [-0.96, 0, 0], [0, 0.96, 0], [0, -0.96, 0]])]  # OH4: invalid
    out = SampleSet.from_3d(z, x, model="edm")
    part = out[1:]
    assert [a.tolist() for a in part.atomic_numbers] == [[6, 1, 1, 1, 1], [8, 1, 1, 1, 1]]
    np.testing.assert_array_equal(part.positions[0], out.positions[1])
    df = part.to_df()
    assert df.index.tolist() == [1, 2] and df.loc[1, "smiles"] == "C"
    assert df.loc[1, "n_atoms"] == 5 and df.loc[1, "n_heavy_atoms"] == 1
    assert df.loc[2, "n_atoms"] == 5 and not df.loc[2, "valid"] and part[1] is None  # invalid samples keep their atom counts


def test_to_df_has_one_row_per_sample():
    df = _two_d().to_df()
    assert list(df.columns) == ["smiles", "valid", "connected", "n_atoms", "n_heavy_atoms", "formula", "mol"]
    assert df.index.name == "index" and df.index.tolist() == [0, 1, 2, 3]
    assert df["valid"].tolist() == [True, False, True, True]
    assert df["connected"].tolist() == [True, False, True, False]
    assert df.loc[0, "n_atoms"] == 9 and df.loc[0, "n_heavy_atoms"] == 3 and df.loc[0, "formula"] == "C2H6O"
    assert df.loc[3, "smiles"] == "CC" and df.loc[3, "formula"] == "C2H8O"  # SMILES: largest fragment
    assert df.loc[1, "mol"] is None and df.loc[1, "n_atoms"] is pd_na()


def pd_na():
    import pandas as pd

    return pd.NA


def test_every_model_is_a_guacamol_generator_with_fresh_molecules_per_call():
    model = molgen.load("ar-qm9")
    first, second = model.generate(20), model.generate(20)
    assert len(first) == 20 and all(isinstance(s, str) for s in first)
    assert first != second  # call k uses seed k
    again = molgen.load("ar-qm9")
    assert again.generate(20) == first
