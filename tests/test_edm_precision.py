"""EDM sampling with the network under bfloat16 autocast (``precision="bf16"``): the float32 default
untouched, bf16 samples well formed with the chain's arithmetic in float32, and one clear line where
bf16 cannot run (a CPU without bfloat16 instructions, an unknown name), from the API and the CLIs."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import molgen._cpu
from molgen._cpu import native_bf16
from molgen.models.edm import EDM

HIST = [0, 0, 0, 1, 2, 3, 2, 1]
WATER = (np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]) + 5.0)
needs_bf16 = pytest.mark.skipif(not native_bf16(), reason="this CPU has no bfloat16 instructions")
REFUSAL = re.escape("needs a CPU with bfloat16 instructions (AVX512-BF16 or AMX); this one has none")


def _model(**kw) -> EDM:
    torch.manual_seed(0)
    return EDM(**{**dict(hidden=16, n_layers=2, atom_count_hist=HIST, timesteps=50), **kw}).eval()


def _dtypes_seen(model: EDM, call) -> tuple[set, set]:
    """(dtypes of the network's coordinate inputs, dtypes of its first linear layer's outputs) during ``call()``."""
    inputs, linear = set(), set()
    hooks = [model.net.register_forward_pre_hook(lambda m, args: inputs.add(args[1].dtype)),
             model.net.embed.register_forward_hook(lambda m, args, out: linear.add(out.dtype))]
    try:
        call()
    finally:
        for h in hooks:
            h.remove()
    return inputs, linear


def test_fp32_is_the_default_and_never_enters_autocast(monkeypatch) -> None:
    model = _model()
    default = model.sample(5, seed=3, steps=6)
    explicit = model.sample(5, seed=3, steps=6, precision="fp32")

    def no_autocast(*a, **k):
        raise AssertionError("float32 sampling entered autocast")

    monkeypatch.setattr(torch, "autocast", no_autocast)
    again = model.sample(5, seed=3, steps=6)
    for out in (explicit, again):
        for a, b in zip(default.positions, out.positions):
            np.testing.assert_array_equal(a, b)
        assert [z.tolist() for z in default.atomic_numbers] == [z.tolist() for z in out.atomic_numbers]
    assert "precision" not in default.info


@needs_bf16
def test_bf16_runs_the_network_in_bf16_and_the_chain_in_fp32() -> None:
    model = _model()
    inputs, linear = _dtypes_seen(model, lambda: model.sample(2, seed=0, steps=3, precision="bf16"))
    assert inputs == {torch.float32} and linear == {torch.bfloat16}
    inputs, linear = _dtypes_seen(model, lambda: model.sample(2, seed=0, steps=3))
    assert inputs == {torch.float32} and linear == {torch.float32}


@needs_bf16
def test_bf16_samples_are_finite_centred_and_shaped_and_differ_from_fp32() -> None:
    model = _model()
    out = model.sample(6, seed=1, steps=8, n_atoms=[3, 4, 5, 6, 7, 7], precision="bf16")
    ref = model.sample(6, seed=1, steps=8, n_atoms=[3, 4, 5, 6, 7, 7])
    assert out.info["precision"] == "bf16"
    assert [len(z) for z in out.atomic_numbers] == [3, 4, 5, 6, 7, 7]
    for x in out.positions:
        assert x.shape[1] == 3 and np.isfinite(x).all()
        np.testing.assert_allclose(x.mean(0), 0.0, atol=5e-5)  # zero centre of mass, up to float32 rounding
    assert any(not np.array_equal(a, b) for a, b in zip(out.positions, ref.positions))
    again = model.sample(6, seed=1, steps=8, n_atoms=[3, 4, 5, 6, 7, 7], precision="bf16")
    for a, b in zip(out.positions, again.positions):
        np.testing.assert_array_equal(a, b)  # seeded


@needs_bf16
def test_bf16_inpainting_and_refinement_keep_what_they_must() -> None:
    model = _model()
    out = model.sample(3, seed=2, steps=5, fixed=WATER, n_atoms=6, precision="bf16")
    for z, x in zip(out.atomic_numbers, out.positions):
        assert z[:3].tolist() == [8, 1, 1] and len(z) == 6 and np.isfinite(x).all()
        np.testing.assert_array_equal(x[:3], WATER[1])
    refined = model.refine([WATER], strength=0.2, steps=3, precision="bf16")
    assert refined.atomic_numbers[0].tolist() == [8, 1, 1] and refined.info["precision"] == "bf16"
    np.testing.assert_allclose(refined.positions[0].mean(0), WATER[1].mean(0), atol=1e-4)


def test_bf16_is_refused_in_one_line_on_a_cpu_without_bf16(monkeypatch) -> None:
    monkeypatch.setattr(molgen._cpu, "native_bf16", lambda: False)
    model = _model()
    for call in (lambda: model.sample(2, steps=2, precision="bf16"),
                 lambda: model.sample(2, steps=2, fixed=WATER, n_atoms=5, precision="bf16"),
                 lambda: model.refine([WATER], steps=2, precision="bf16")):
        with pytest.raises(ValueError, match="^precision bf16 " + REFUSAL):
            call()


def test_an_unknown_precision_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown precision 'fp16'; choose from fp32, bf16"):
        _model().sample(2, steps=2, precision="fp16")


# --- the command lines ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ck") / "edm"
    _model(default_sampling_steps=3).save_pretrained(folder, metrics={})
    return folder


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "molgen", *argv], capture_output=True, text=True, timeout=300)


def _one_error_line(proc: subprocess.CompletedProcess, text: str) -> None:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], proc.stderr


def test_sample_cli_takes_precision(ckpt: Path, tmp_path: Path) -> None:
    precision = "bf16" if native_bf16() else "fp32"
    out = tmp_path / "s.xyz"
    proc = _run("sample", "--model", "edm", "--checkpoint", str(ckpt), "-n", "3", "--precision", precision,
                "-o", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "3 molecules in" in proc.stderr and out.stat().st_size > 0


@pytest.mark.parametrize("command", ["sample", "denoise"])
def test_a_bad_precision_is_one_line(ckpt: Path, command: str) -> None:
    extra = ["in.xyz", "-o", "out.xyz"] if command == "denoise" else []
    _one_error_line(_run(command, *extra, "--checkpoint", str(ckpt), "--precision", "half"),
                    "argument --precision: invalid choice: 'half'")


def test_sample_cli_refuses_bf16_before_loading_on_a_cpu_without_it(monkeypatch, tmp_path: Path) -> None:
    from molgen import models
    from molgen.cli.sample import main

    def no_loading(*a, **k):
        raise AssertionError("a model was loaded before --precision was checked")

    monkeypatch.setattr(molgen._cpu, "native_bf16", lambda: False)
    monkeypatch.setattr(models, "load", no_loading)
    with pytest.raises(ValueError, match="^--precision bf16 " + REFUSAL):
        main(["--model", "edm", "-n", "2", "--device", "cpu", "--precision", "bf16"])
    with pytest.raises(ValueError, match="--precision does not apply to the ar model"):
        main(["--model", "ar", "-n", "2", "--device", "cpu", "--precision", "fp32"])


def test_train_cpu_bf16_is_refused_with_the_same_message(monkeypatch, tmp_path: Path) -> None:
    from molgen.cli.train import main

    monkeypatch.setattr(molgen._cpu, "native_bf16", lambda: False)
    with pytest.raises(ValueError, match="^--cpu-bf16 " + REFUSAL):
        main(["--model", "edm", "--out", str(tmp_path / "run"), "--cpu-bf16"])
    assert not (tmp_path / "run").exists()
