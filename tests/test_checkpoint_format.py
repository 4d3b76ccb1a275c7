"""The checkpoint and train-state format: no pickle, sharded under the transfer limit, checksums,
one clear line for damaged files, the legacy train_state.pt conversion."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from molgen.models import base
from molgen.models.checkpoint import MAX_FILE_BYTES, CheckpointError, read_config
from molgen.models.train_state import decode_train_state, encode_train_state, read_train_state
from molgen.training import TrainConfig, Trainer
from test_training import _Data, _Toy, _train

PRETRAINED = Path(base.PRETRAINED_DIR)


def _same(a, b, path="") -> None:
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for k in a:
            _same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}/{i}")
    else:
        assert type(a) is type(b) and a == b, (path, a, b)


def test_train_state_round_trips_exactly_in_shards_under_the_limit() -> None:
    g = torch.Generator().manual_seed(0)
    tree = {"model": {"w": torch.randn(300, 7, generator=g), "n": torch.tensor(3)},
            "optimizer": {"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.randn(50, generator=g)}},
                          "param_groups": [{"lr": 0.1 + 1e-17, "betas": (0.9, 0.999), "params": [0]}]},
            "rng": torch.get_rng_state(), "mask": torch.tensor([True, False]), "none": None,
            "norms": [1.0000000000000002, float("inf")], "__odd__": {"x": 1}}
    files = encode_train_state(tree, shard_bytes=2048)
    shards = [n for n in files if n.endswith(".safetensors")]
    assert len(shards) >= 4 and all(len(files[n]) <= 2048 + 4096 for n in shards)  # data + header
    assert shards[0] == f"train_state-00001-of-{len(shards):05d}.safetensors"
    assert json.loads(files["train_state.json"])["split_tensors"] == {"/model/w": [300, 7], "/rng": [5056]}  # > a shard
    back = decode_train_state(files)
    _same(tree, back)
    assert back["rng"].dtype == torch.uint8 and back["model"]["w"].dtype == torch.float32


def test_garbage_empty_or_truncated_state_files_give_one_checkpoint_error(tmp_path: Path) -> None:
    _train(tmp_path / "good", 5)
    names = ["train_state.json", "train_state-00001-of-00001.safetensors", "checkpoint.json"]
    for name in names:
        for damage in ("empty", "garbage", "truncated"):
            run = tmp_path / f"{name}-{damage}"
            shutil.copytree(tmp_path / "good", run)
            data = (run / name).read_bytes()
            (run / name).write_bytes({"empty": b"", "garbage": b"\x80\x04garbage" * 9,
                                      "truncated": data[: len(data) // 2]}[damage])
            with pytest.raises(CheckpointError) as exc:
                Trainer(_Toy(), _Data(), TrainConfig(max_steps=9, progress=False), run)
            assert len(str(exc.value).splitlines()) == 1 and str(run) in str(exc.value), (name, damage)


def test_a_crafted_legacy_pickle_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"state": {"step": 1}, "x": Evil()}, run / "train_state.pt")
    for content in (None, b"", b"not a zip at all"):
        if content is not None:
            (run / "train_state.pt").write_bytes(content)
        with pytest.raises(CheckpointError, match="train_state.pt is not a loadable train state") as exc:
            Trainer(_Toy(), _Data(), TrainConfig(max_steps=2, progress=False), run)
        assert len(str(exc.value).splitlines()) == 1
    assert not marker.exists()


def _write_legacy(trainer: Trainer) -> None:
    """The pre-safetensors save(): one pickled dict in train_state.pt."""
    st = {"model": trainer.model.state_dict(), "ema": trainer.ema.state_dict(),
          "optimizer": trainer.optimizer.state_dict(), "state": {k: v for k, v in vars(trainer.state).items()
                                                                 if k in ("step", "grad_norms", "wall_seconds",
                                                                          "samples")},
          "curve": trainer.curve, "rng_cpu": torch.get_rng_state(), "rng_cuda": None,
          "train_config": {k: v for k, v in vars(trainer.cfg).items() if k != "warmup_steps"}}
    torch.save(st, trainer.out / "train_state.pt")
    for name in ("checkpoint.json", "train_state.json", "train_state-00001-of-00001.safetensors"):
        (trainer.out / name).unlink()


def test_a_legacy_train_state_is_converted_on_resume_and_resumes_bit_identically(tmp_path: Path, capsys) -> None:
    full = _train(tmp_path / "full", 20)
    _write_legacy(_train(tmp_path / "old", 7))
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == [
        "config.json", "log.csv", "metrics.json", "train_state.pt", "weights.safetensors"]
    resumed = _train(tmp_path / "old", 20)
    assert "converted" in capsys.readouterr().out
    assert not (tmp_path / "old" / "train_state.pt").exists()
    _same(full.model.state_dict(), resumed.model.state_dict())
    _same(full.ema.state_dict(), resumed.ema.state_dict())
    _same(full.optimizer.state_dict(), resumed.optimizer.state_dict())


def test_the_shipped_edm_train_state_is_sharded_and_resumable() -> None:
    folder = PRETRAINED / "edm-qm9"
    assert not (folder / "train_state.pt").exists()
    assert all(p.stat().st_size < MAX_FILE_BYTES for p in folder.iterdir())
    state, step = read_train_state(folder)  # every file checked against checkpoint.json
    assert step == state["state"]["step"] == json.loads((folder / "metrics.json").read_text())["steps"]
    assert all(v.dtype == torch.float32 for s in state["optimizer"]["state"].values()
               for k, v in s.items() if k != "step")  # exact resume: fp32 moments stay fp32
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k != "n_averaged"}
    weights = load_file(str(folder / "weights.safetensors"))
    assert weights.keys() == ema.keys() and all(torch.equal(weights[k], ema[k]) for k in weights)


def test_the_ema_is_stored_once_as_the_weights_and_comes_back_on_resume(tmp_path: Path) -> None:
    trainer = _train(tmp_path / "run", 7)
    files = [p for p in (tmp_path / "run").glob("train_state-*.safetensors")]
    stored = {k for f in files for k in load_file(str(f))}
    assert stored and not any(k.startswith("/ema/module") for k in stored)  # not a second copy of the model
    state, _ = read_train_state(tmp_path / "run")
    _same(trainer.ema.state_dict(), state["ema"])


def test_a_weights_file_replaced_after_training_is_refused_on_resume(tmp_path: Path) -> None:
    _train(tmp_path / "run", 7)
    weights = load_file(str(tmp_path / "run" / "weights.safetensors"))
    from molgen.models.checkpoint import checkpoint_files, write_checkpoint
    from molgen.models.train_state import encode_train_state as encode

    state, step = read_train_state(tmp_path / "run")
    state["ema"] = {"n_averaged": state["ema"]["n_averaged"]}
    files = encode(state)
    files.update(checkpoint_files("toy", {}, {k: v.half() for k, v in weights.items()}))  # shipped as float16
    write_checkpoint(tmp_path / "run", files, step)
    with pytest.raises(CheckpointError, match="is not the EMA of its train state") as exc:
        read_train_state(tmp_path / "run")
    assert len(str(exc.value).splitlines()) == 1


@pytest.mark.parametrize("name", ["ar-qm9", "ar-moses", "vae-qm9", "vae-moses", "edm-qm9"])
def test_shipped_configs_carry_the_checksum_of_their_weights(name: str) -> None:
    info = read_config(PRETRAINED / name)
    digest = hashlib.sha256((PRETRAINED / name / "weights.safetensors").read_bytes()).hexdigest()
    assert info["weights_sha256"] == digest


def test_a_flipped_weight_byte_is_caught_on_load(tmp_path: Path) -> None:
    folder = tmp_path / "ar"
    shutil.copytree(PRETRAINED / "ar-qm9", folder)
    cls = base.model_class("ar")
    cls.from_pretrained(folder)  # intact: loads
    data = bytearray((folder / "weights.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight: still a valid safetensors file
    (folder / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the sha256 in config.json") as exc:
        cls.from_pretrained(folder)
    assert len(str(exc.value).splitlines()) == 1


def test_a_checkpoint_that_is_a_file_is_reported_as_a_file(tmp_path: Path) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        read_config(f)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_config(tmp_path / "missing")


def test_run_files_that_do_not_match_the_manifest_are_refused(tmp_path: Path) -> None:
    _train(tmp_path / "a", 5)
    _train(tmp_path / "b", 10)
    shutil.copy(tmp_path / "b" / "weights.safetensors", tmp_path / "a" / "weights.safetensors")  # a mixed folder
    with pytest.raises(CheckpointError, match="weights.safetensors does not match checkpoint.json"):
        Trainer(_Toy(), _Data(), TrainConfig(max_steps=9, progress=False), tmp_path / "a")


def test_a_corrupt_metrics_json_does_not_stop_a_checkpoint(tmp_path: Path) -> None:
    _train(tmp_path / "r", 5)
    (tmp_path / "r" / "metrics.json").write_text('{"fcd": 1.0, "trunc')
    trainer = _train(tmp_path / "r", 10)
    assert trainer.state.step == 10
    assert read_train_state(tmp_path / "r")[1] == 10
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["steps"] == 10


def test_metrics_added_by_other_tools_are_kept_and_do_not_block_resume(tmp_path: Path) -> None:
    _train(tmp_path / "r", 5)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    (tmp_path / "r" / "metrics.json").write_text(json.dumps({**metrics, "fcd": 1.5}))
    _train(tmp_path / "r", 10)
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["fcd"] == 1.5


def test_evaluations_of_earlier_weights_become_history_when_training_goes_on(tmp_path: Path) -> None:
    from molgen.models.card import read_card, update_card

    _train(tmp_path / "r", 5)
    update_card(tmp_path / "r", "evaluation", {"command": "eval", "date": "d", "validity": 0.5})
    update_card(tmp_path / "r", "score_reference", {"command": "ref", "date": "d", "quantiles": [1.0, 2.0]})
    _train(tmp_path / "r", 5)  # nothing trained: the same weights keep their evaluation
    assert read_card(tmp_path / "r")["evaluation"]["validity"] == 0.5
    _train(tmp_path / "r", 10)
    card = read_card(tmp_path / "r")
    assert "evaluation" not in card and "score_reference" not in card and card["steps"] == 10
    assert card["earlier_evaluations"] == [{"steps": 5, "epochs": pytest.approx(card["epochs"] / 2),
                                            "evaluation": {"command": "eval", "date": "d", "validity": 0.5},
                                            "score_reference": {"command": "ref", "date": "d", "quantiles": [1.0, 2.0]}}]
    update_card(tmp_path / "r", "evaluation", {"command": "eval2", "date": "d"})
    _train(tmp_path / "r", 12)
    card = read_card(tmp_path / "r")
    assert [e["steps"] for e in card["earlier_evaluations"]] == [5, 10] and "evaluation" not in card


def test_training_refuses_a_folder_with_weights_but_no_train_state(tmp_path: Path) -> None:
    folder = tmp_path / "shipped"
    shutil.copytree(PRETRAINED / "ar-qm9", folder)
    before = (folder / "weights.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="no train state to resume from"):
        Trainer(_Toy(), _Data(), TrainConfig(max_steps=1, progress=False), folder)
    assert (folder / "weights.safetensors").read_bytes() == before
