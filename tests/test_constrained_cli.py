"""The command lines of EDM's constrained tools: ``molgen sample --fix`` (3D inpainting) and
``molgen denoise`` (refinement), on a tiny checkpoint."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from molgen.chem.io import read_molecules
from molgen.models.edm import EDM

FRAGMENT = "3\nwater\nO 1.0 2.0 3.0\nH 1.96 2.0 3.0\nH 0.76 2.93 3.0\n"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ck") / "edm"
    EDM(hidden=16, n_layers=1, atom_count_hist=[0, 0, 0, 0, 1, 1, 1], timesteps=20,
        default_sampling_steps=5).save_pretrained(folder)
    return folder


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "molgen", *argv], capture_output=True, text=True, timeout=300)


def test_sample_fix_keeps_the_fragment_in_every_record(ckpt: Path, tmp_path: Path) -> None:
    frag = tmp_path / "frag.xyz"
    frag.write_text(FRAGMENT)
    out = tmp_path / "around.xyz"
    proc = _run("sample", "--model", "edm", "--checkpoint", str(ckpt), "--fix", str(frag), "--atoms", "5",
                "-n", "3", "--resamplings", "2", "-o", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    got = read_molecules(out)
    assert len(got) == 3
    for rec in got:
        assert rec.atomic_numbers[:3].tolist() == [8, 1, 1] and len(rec.atomic_numbers) == 5
        np.testing.assert_allclose(rec.positions[:3], [[1.0, 2.0, 3.0], [1.96, 2.0, 3.0], [0.76, 2.93, 3.0]], atol=1e-4)


@pytest.mark.parametrize("argv, message", [
    (["--fix", "missing.xyz"], "missing.xyz"),
    (["--resamplings", "2"], "--resamplings applies with --fix only"),
])
def test_sample_fix_bad_input_is_one_line(ckpt: Path, tmp_path: Path, argv: list, message: str) -> None:
    proc = _run("sample", "--model", "edm", "--checkpoint", str(ckpt), "-n", "1", *argv)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_denoise_reports_rmsd_and_stability_per_molecule_and_keeps_elements(ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.xyz"
    src.write_text(FRAGMENT + "2\nno such element here\nXe 0 0 0\nO 1 0 0\n" + FRAGMENT)
    out = tmp_path / "out.sdf"
    proc = _run("denoise", str(src), "--checkpoint", str(ckpt), "--strength", "0.1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split("\t") == ["index", "atoms", "rmsd_A", "stable_before", "stable_after"]
    assert [line.split("\t")[0] for line in lines[1:]] == ["0", "2"]
    assert "molecule 1: skipped (elements outside" in proc.stderr
    got = read_molecules(out)
    assert len(got) == 2 and all(r.atomic_numbers.tolist() == [8, 1, 1] for r in got)
    bad = _run("denoise", str(src), "--checkpoint", str(ckpt), "--strength", "0", "-o", str(out))
    assert bad.returncode == 2 and "--strength must be" in bad.stderr
