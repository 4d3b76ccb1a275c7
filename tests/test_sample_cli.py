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
