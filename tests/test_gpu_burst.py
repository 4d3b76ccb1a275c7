"""The GPU burst's travel: QM9's packing round trip, and room in the 64 MiB that a device call may send."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gpu_burst.qm9_travel import _decode_positions, _encode_positions
from benchmarks.gpu_burst.travel_size import LIMIT_BYTES, travelling_files

ROOT = Path(__file__).resolve().parents[1]
QM9_CARRY_BYTES = 9 * 2 ** 20  # the packed QM9 training split with its properties (8.7 MiB)


def test_packed_coordinates_come_back_exactly_including_int16_wrap_around() -> None:
    rng = np.random.default_rng(0)
    q = rng.integers(-2 ** 15, 2 ** 15, size=(1000, 3)).astype(np.int16)  # differences overflow int16
    q[:10] = [[-32768, 32767, 0]] * 5 + [[32767, -32768, 1]] * 5
    assert np.array_equal(_decode_positions(_encode_positions(q), len(q)), q)


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_tree_leaves_room_for_the_qm9_carry_of_a_gpu_burst() -> None:
    try:
        files = travelling_files(ROOT)
    except subprocess.CalledProcessError:
        pytest.skip("git cannot list this checkout")
    tree = sum(f.stat().st_size for f in files)
    assert tree + QM9_CARRY_BYTES <= LIMIT_BYTES, (
        f"the working tree ({tree / 2 ** 20:.1f} MiB) leaves less than the QM9 carry "
        f"({QM9_CARRY_BYTES / 2 ** 20:.0f} MiB) of the 64 MiB a device call may send; "
        f"see python -m benchmarks.gpu_burst.travel_size")


def test_moses_pack_tokens_give_back_the_encoded_set_exactly() -> None:
    from benchmarks.gpu_burst.moses_travel import decode_tokens, digest, encode_tokens
    from molgen.models.ar.encoding import encode

    smiles = ["CCO", "O=C([O-])c1ccccc1", "not a smiles", "C1CC2CCC1CC2", "C[N+](C)(C)Cc1ccc2ccccc2c1", "CC.O",
              "C1CCCCCCCCCCCCCCCCCCCC1"]  # a large ring: a ring closure 20 atoms back
    enc = encode(smiles, workers=1)
    tokens, book = encode_tokens(enc)
    arrays = enc.to_arrays()
    back = decode_tokens(tokens, book, len(smiles), arrays["failed_idx"], arrays["failed_reason"])
    assert sorted(back.failed) == [2, 5] and back.source.tolist() == [0, 1, 3, 4, 6]
    for key, value in back.to_arrays().items():
        assert np.array_equal(value, arrays[key]) and value.dtype == arrays[key].dtype, key
    assert digest(back) == digest(enc)
    enc.ptr[3] += 1  # any change shows in the digest
    assert digest(back) != digest(enc)


def test_ar_trains_without_rdkit_from_a_linearised_set_and_its_samples_are_scored_later(tmp_path) -> None:
    """The MOSES burst (run_moses.sh): training, evaluation and checkpoints import no RDKit; the samples
    each evaluation keeps are scored afterwards where RDKit is."""
    import json
    import sys

    from conftest import DRUGS, NO_RDKIT
    from molgen.models.ar.encoding import encode
    from molgen.training.saved_samples import score_saved_samples

    data = tmp_path / "enc"
    data.mkdir()
    encode(DRUGS, workers=1).save(data / "train.npz")
    encode(DRUGS[:4], workers=1).save(data / "heldout.npz")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}}))
    run = tmp_path / "run"
    args = ["--model", "ar", "--dataset", "moses", "--encoded-data", str(data), "--config", str(cfg), "--out",
            str(run), "--max-steps", "2", "--batch-size", "4", "--eval-every", "1", "--eval-samples", "6",
            "--device", "cpu", "--no-progress", "--no-amsgrad"]
    code = NO_RDKIT + f"import sys; from molgen.cli.train import main; sys.exit(main({args!r}))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (run / "eval_samples" / "step-1.npz").is_file() and (run / "eval_samples" / "step-2-nomask.npz").is_file()
    card = json.loads((run / "metrics.json").read_text())
    assert card["train_molecules"] == len(DRUGS) and "validity" not in card["learning_curve"][0]
    curve = score_saved_samples(run, reference=None, fcd=False)
    assert [r["step"] for r in curve] == [1, 2]
    for row in curve:
        assert row["validity"] == 1.0 and 0 <= row["validity_no_mask"] <= 1 and 0 < row["uniqueness"] <= 1
    assert json.loads((run / "metrics.json").read_text())["learning_curve"] == curve
    from molgen.models.train_state import read_train_state

    state, step = read_train_state(run)
    assert step == 2 and state["train_config"]["amsgrad"] is False  # the travelling run's smaller state
    assert not any("max_exp_avg_sq" in s for s in state["optimizer"]["state"].values())


def test_encoded_data_needs_both_files_and_no_conditions(tmp_path) -> None:
    from molgen.cli.train import main

    with pytest.raises(ValueError, match="--encoded-data must be a folder holding train.npz and heldout.npz"):
        main(["--model", "ar", "--encoded-data", str(tmp_path), "--max-steps", "1", "--out", str(tmp_path / "r")])
    with pytest.raises(ValueError, match="--encoded-data applies to --model ar or vae only"):
        (tmp_path / "train.npz").write_bytes(b"")
        (tmp_path / "heldout.npz").write_bytes(b"")
        main(["--model", "edm", "--encoded-data", str(tmp_path), "--max-steps", "1", "--out", str(tmp_path / "r")])
    from molgen.training.ar import training_setup

    with pytest.raises(ValueError, match="--encoded-data trains without conditions"):
        training_setup("moses", {"conditions": ["logp"]}, {"encoded_data": str(tmp_path)})


VAE_TOKENS = ["C", "N", "O", "S", "F", "Cl", "Br"]
NOT_REPRESENTABLE = ["CC.O", "not a smiles", "C[N+](C)(C)C", "C1" + "C" * 28 + "1"]  # fragments, parse, vocabulary, size


def _vae_pack(path: Path, train_smiles: list[str], held_smiles: list[str]):
    from benchmarks.gpu_burst.moses_vae_travel import pack_tables
    from molgen.models.vae.table import GraphTable

    tables = []
    for smiles in (train_smiles, held_smiles):
        table = GraphTable(smiles, VAE_TOKENS, 27)
        table.ensure(np.arange(len(table)))
        tables.append(table)
    pack_tables(path, *tables, {"train_split": "test rows", "heldout": "test held-out"})
    return tables


def test_vae_pack_gives_back_the_featurised_graphs_and_checks_its_digest(tmp_path) -> None:
    from benchmarks.gpu_burst.moses_vae_travel import canonical, unpack
    from conftest import DRUGS
    from molgen.models.vae.graphs import GraphArrays, collate

    train, _ = _vae_pack(tmp_path / "p.npz", DRUGS + NOT_REPRESENTABLE, DRUGS[:3])
    unpack(tmp_path / "p.npz", tmp_path / "enc")
    back = GraphArrays.load(tmp_path / "enc" / "train.npz")
    assert back.reasons == train.reasons and sorted(back.reasons) == list(range(len(DRUGS), len(DRUGS) + 4))
    for name in ("nodes", "n_nodes", "n_edges", "status"):
        assert np.array_equal(getattr(back, name), getattr(train, name)), name
    flat, want = canonical(back), canonical(train)
    assert all(np.array_equal(flat[k], want[k]) for k in want)  # the same bonds, sorted by their atoms
    rows = np.flatnonzero(train.status == 1)
    a, b = collate(train, rows), collate(back, rows)
    for key in ("x", "atoms", "bonds", "n_atoms", "batch"):  # the encoder's and decoder's inputs
        assert torch_equal(a[key], b[key]), key
    files = dict(np.load(tmp_path / "p.npz"))
    stream = np.frombuffer(__import__("lzma").decompress(files["train_tokens"].tobytes()), np.uint16).copy()
    stream[5] ^= 1 << 3  # one atom's hydrogen count
    from benchmarks.gpu_burst.moses_travel import xz

    np.savez(tmp_path / "bad.npz", **{**files, "train_tokens": xz(stream)})
    with pytest.raises(SystemExit, match="does not match its digest"):
        unpack(tmp_path / "bad.npz", tmp_path / "bad")


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_vae_trains_without_rdkit_from_a_pack_resumes_exactly_and_its_graphs_are_scored_later(tmp_path) -> None:
    """The VAE's part of the MOSES burst (run V of run_moses.sh): unpacking, training, evaluation and
    checkpoints import no RDKit; the held-out ELBO there is log_likelihood's, the kept samples and
    reconstructions are sample's and reconstruct's; a resumed run is the uninterrupted one."""
    import json
    import sys

    from conftest import DRUGS, NO_RDKIT
    from molgen.cli.train import main as train
    from molgen.models import load
    from molgen.models.checkpoint import read_weights
    from molgen.training.saved_samples import score_saved_samples

    train_smiles = (DRUGS * 80)[:1996] + NOT_REPRESENTABLE  # a 2,000-molecule pack
    _vae_pack(tmp_path / "p.npz", train_smiles, DRUGS[:6] + ["CC.O"])
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": {"latent_dim": 8, "encoder_hidden": 16, "encoder_layers": 1, "decoder_dim": 16,
                                         "decoder_layers": 1, "decoder_heads": 2}}))
    data = tmp_path / "enc"

    def args(run: Path, steps: int) -> list[str]:
        return ["--model", "vae", "--dataset", "moses", "--encoded-data", str(data), "--config", str(cfg), "--out",
                str(run), "--max-steps", str(steps), "--batch-size", "8", "--eval-every", "1", "--eval-samples", "6",
                "--device", "cpu", "--no-progress", "--no-amsgrad"]

    code = NO_RDKIT + (f"import sys; from benchmarks.gpu_burst.moses_vae_travel import main as unpack\n"
                       f"unpack(['unpack', {str(tmp_path / 'p.npz')!r}, {str(data)!r}])\n"
                       f"from molgen.cli.train import main; main({args(tmp_path / 'run', 2)!r})\n"
                       "assert not [m for m in sys.modules if m.startswith('rdkit')], 'RDKit was imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    run = tmp_path / "run"
    kept = run / "eval_samples"
    assert {p.name for p in kept.iterdir()} == {"heldout-targets.npz"} | {
        f"step-{s}{x}.npz" for s in (1, 2) for x in ("", "-nomask", "-recon")}
    card = json.loads((run / "metrics.json").read_text())
    assert card["train_molecules"] == 2000 and card["train_not_representable"] == 4
    assert card["train_split"] == "test rows" and "validity" not in card["learning_curve"][0]
    model = load(run)  # the EMA weights that step 2 evaluated
    assert card["learning_curve"][1]["heldout_nelbo"] == pytest.approx(-model.log_likelihood(DRUGS[:6]).mean(), rel=1e-6)
    curve = score_saved_samples(run, reference=None, fcd=False)
    assert [r["step"] for r in curve] == [1, 2]
    for row in curve:
        assert row["validity"] == 1.0 and 0 <= row["validity_no_mask"] <= 1 and 0 <= row["reconstruction"] <= 1
    from molgen.models.vae.graphs import load_decoded
    from molgen.models.vae.model import graph_mols
    from molgen.samples import SampleSet

    kept_smiles = SampleSet.from_mols(graph_mols(*load_decoded(kept / "step-2.npz"))).smiles
    assert kept_smiles == model.sample(6, seed=1234).smiles
    recon = SampleSet.from_mols(graph_mols(*load_decoded(kept / "step-2-recon.npz"))).smiles
    assert recon == model.reconstruct(DRUGS[:6])
    from molgen.chem.convert import canonicalize

    targets = SampleSet.from_mols(graph_mols(*load_decoded(kept / "heldout-targets.npz"))).smiles
    assert targets == [canonicalize(s) for s in DRUGS[:6]]  # the featurised graphs decode to their molecules
    assert curve[1]["reconstruction"] == np.mean([a == b for a, b in zip(recon, targets)])
    assert train(args(run, 3)) == 0  # resumed, with --encoded-data given again
    assert train(args(tmp_path / "straight", 3)) == 0
    from molgen.models.train_state import read_train_state

    resumed, straight = read_weights(run), read_weights(tmp_path / "straight")
    assert all(torch_equal(resumed[k], straight[k]) for k in straight)  # the EMA
    (a, step_a), (b, step_b) = read_train_state(run), read_train_state(tmp_path / "straight")
    assert step_a == step_b == 3 and all(torch_equal(a["model"][k], b["model"][k]) for k in b["model"])
