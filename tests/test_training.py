"""The shared training loop: exact resume, NaN handling, checkpoints, and DDP over two CPU processes."""
from __future__ import annotations

import json
import shutil
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from molgen.models.base import GenerativeModel
from molgen.models.train_state import read_train_state
from molgen.training import TrainConfig, Trainer, TrainingDiverged


class _Toy(GenerativeModel):
    name = "toy-regression"

    def __init__(self, width: int = 8, nan_after: int = -1) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))
        self.nan_after = nan_after
        self.calls = 0

    def sample(self, n, seed=0, **kwargs):  # the trainer never samples a toy
        raise NotImplementedError

    def log_likelihood(self, molecules, **kwargs):
        raise NotImplementedError

    def loss(self, batch):
        self.calls += 1
        pred = self.net(batch["x"]).squeeze(-1)
        loss = ((pred - batch["y"]) ** 2).mean() + 0.01 * torch.randn(()) ** 2  # randomness must resume too
        if 0 <= self.nan_after < self.calls:
            loss = loss * float("nan")
        return loss, {"mse": loss.detach()}


class _Data:
    def __init__(self, n: int = 64) -> None:
        g = np.random.default_rng(0)
        self.x = torch.tensor(g.normal(size=(n, 3)), dtype=torch.float32)
        self.y = self.x.sum(1).sin()

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, idx):
        return {"x": self.x[idx], "y": self.y[idx]}


def _train(out: Path, steps: int, **kw) -> Trainer:
    torch.manual_seed(0)
    cfg = TrainConfig(batch_size=8, lr=1e-2, max_steps=steps, checkpoint_every=5, log_every=2, progress=False, **kw)
    trainer = Trainer(_Toy(), _Data(), cfg, out)
    trainer.fit()
    return trainer


def test_resumed_run_matches_uninterrupted_run(tmp_path: Path) -> None:
    full = _train(tmp_path / "a", 20)
    _train(tmp_path / "b", 7)
    resumed = _train(tmp_path / "b", 20)  # same folder: resumes at step 7
    assert resumed.state.step == 20
    for (k, v), (_, w) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(v, w), k
    for (k, v), (_, w) in zip(full.ema.state_dict().items(), resumed.ema.state_dict().items()):
        assert torch.equal(v, w), k


def test_checkpoint_holds_config_ema_weights_and_metrics(tmp_path: Path) -> None:
    trainer = _train(tmp_path / "run", 10)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert {k: cfg[k] for k in ("model", "config")} == {"model": "toy-regression", "config": {"width": 8, "nan_after": -1}}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 10 and metrics["train_config"]["batch_size"] == 8
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,wall_seconds,loss") and len(log) == 1 + 5
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "run" / "weights.safetensors"))
    ema = trainer.ema.module.state_dict()
    assert all(torch.equal(saved[k], ema[k]) for k in saved)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(batch_size=8, max_steps=50, checkpoint_every=5, progress=False)
    model = _Toy(nan_after=12)
    trainer = Trainer(model, _Data(), cfg, tmp_path / "run")
    with pytest.raises(TrainingDiverged, match=str(tmp_path / "run")):
        trainer.fit()
    state, _ = read_train_state(tmp_path / "run")
    assert state["state"]["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_the_training_cli_reports_nan_in_one_line(tmp_path: Path) -> None:
    code = (
        "import sys, torch; sys.argv=['x','--model','edm','--config',sys.argv[1],'--out',sys.argv[2],"
        "'--max-steps','3','--no-progress'];"
        "import molgen.models.edm as e; orig=e.EDM.loss;"
        "e.EDM.loss=lambda self,b: (orig(self,b)[0]*float('nan'), {});"
        "from molgen.cli.common import run_cli; from molgen.train import main; run_cli(main)"
    )
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": {"hidden": 8, "n_layers": 1}, "train": {"batch_size": 4}}))
    r = subprocess.run([sys.executable, "-c", code, str(cfg), str(tmp_path / "run")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error: loss became nan at step 0")
    assert "Traceback" not in r.stderr


def test_ddp_two_cpu_processes_gloo(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": {"hidden": 8, "n_layers": 1},
                               "train": {"batch_size": 4, "checkpoint_every": 2, "log_every": 1}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                        "-m", "molgen.train", "--model", "edm", "--config", str(cfg), "--out", str(tmp_path / "ddp"),
                        "--max-steps", "3", "--device", "cpu", "--no-progress"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    state, _ = read_train_state(tmp_path / "ddp")
    assert state["state"]["step"] == 3
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    # two ranks each take their own 4 molecules per step: 3 steps see 24 molecules
    assert metrics["epochs"] == pytest.approx(3 * 4 * 2 / 100_000)


def test_ema_warmup_follows_the_weights_early_and_the_decay_later() -> None:
    from molgen.training.optim import ema_with_warmup

    update = ema_with_warmup(0.999)
    ema, cur = [torch.zeros(3)], [torch.ones(3)]
    update(ema, cur, torch.tensor(0))  # first update: decay 0.1
    torch.testing.assert_close(ema[0], torch.full((3,), 0.9))
    ema = [torch.zeros(3)]
    update(ema, cur, torch.tensor(10_000))  # late: decay 0.999
    torch.testing.assert_close(ema[0], torch.full((3,), 0.001))


def test_epochs_count_molecules_seen_across_a_batch_size_change(tmp_path: Path) -> None:
    _train(tmp_path / "r", 4)  # 4 steps of 8 molecules
    torch.manual_seed(0)
    cfg = TrainConfig(batch_size=16, lr=1e-2, max_steps=6, checkpoint_every=5, log_every=2, progress=False)
    trainer = Trainer(_Toy(), _Data(), cfg, tmp_path / "r")
    trainer.fit()  # 2 more steps of 16
    assert trainer.state.samples == 4 * 8 + 2 * 16
    # the data order carried on where the batch-8 run stopped: epoch 0's permutation from molecule 32
    trainer.state.samples = 32
    perm = np.random.default_rng([0, 0]).permutation(64)
    assert trainer._next_indices().tolist() == perm[32:48].tolist()
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["epochs"] == pytest.approx((4 * 8 + 2 * 16) / 64)


# --- the training CLI: arguments, budgets on resume, folders it must not train over -------------------
class _ToyCLI(_Toy):
    name = "toy-cli"


def _toy_cli_setup(dataset, model_cfg, train_cfg):
    from molgen.training import TrainingSetup

    if dataset != "qm9":
        raise AssertionError("the dataset was loaded before the arguments were checked")
    return TrainingSetup(_ToyCLI(**model_cfg), _Data(), {"batch_size": 8, "lr": 1e-2, "log_every": 1,
                                                          "checkpoint_every": 5})


@pytest.fixture
def toy_cli(monkeypatch):
    from molgen.models import base
    from molgen.train import main

    from molgen.training import setups

    base._import_models()
    monkeypatch.setitem(base._REGISTRY, "toy-cli", _ToyCLI)
    monkeypatch.setitem(setups._SETUPS, "toy-cli", _toy_cli_setup)

    def run(*argv: str) -> int:
        return main(["--model", "toy-cli", "--no-progress", *argv])

    return run


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["--batch-size", "-1"], "--batch-size must be an integer >= 1"),
    (["--batch-size", "-4"], "--batch-size must be an integer >= 1"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be an integer >= 1"),
    (["--eval-every", "-1"], "--eval-every must be an integer >= 1"),
    (["--max-steps", "0"], "--max-steps must be an integer >= 1"),
    (["--max-steps", "-1"], "--max-steps must be an integer >= 1"),
    (["--max-minutes", "0"], "--max-minutes must be a finite number > 0"),
    (["--max-minutes", "-2"], "--max-minutes must be a finite number > 0"),
    (["--max-minutes", "nan"], "--max-minutes must be a finite number > 0"),
    (["--lr", "0"], "--lr must be a finite number > 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0"),
    (["--seed", str(2**63)], "--seed must be an integer in 0..2**63-1"),
    (["--seed", "-1"], "--seed must be an integer in 0..2**63-1"),
    (["--warmup-steps", "-1"], "--warmup-steps must be an integer >= 0"),
])
def test_bad_training_arguments_give_one_line_before_the_data_loads(tmp_path, toy_cli, argv, message) -> None:
    # the dataset argument is one the toy setup rejects: reaching it would fail differently
    with pytest.raises(ValueError) as exc:
        toy_cli("--dataset", "not-loaded", "--out", str(tmp_path / "r"), "--max-steps", "3", *argv)
    assert message in str(exc.value) and len(str(exc.value).splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "must hold a JSON object"),
    ('{"model": [1], "train": {}}', "the 'model' section must be a JSON object"),
    ('{"train": 3}', "the 'train' section must be a JSON object"),
    ('{"trian": {}}', "unknown sections ['trian']"),
    ('{"train": {"batch_size": -4}}', "batch_size must be an integer >= 1, got -4"),
    ('{"train": {"seed": 18446744073709551616}}', "seed must be an integer in 0..2**63-1"),
    ('{"train": {"eval_every": 0}}', "eval_every must be an integer >= 1"),
    ('{"train": {"lr": "fast"}}', "lr must be a finite number > 0"),
])
def test_bad_config_files_give_one_line_before_the_data_loads(tmp_path, toy_cli, content, message) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(content)
    with pytest.raises(ValueError) as exc:
        toy_cli("--dataset", "not-loaded", "--config", str(cfg), "--out", str(tmp_path / "r"), "--max-steps", "3")
    assert message in str(exc.value)


def test_out_or_resume_that_is_a_file_is_reported_as_a_file(tmp_path, toy_cli) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    for flag in ("--out", "--resume"):
        with pytest.raises(ValueError, match=f"{flag} {f} is a file, not a folder"):
            toy_cli(flag, str(f), "--max-steps", "3", "--dataset", "not-loaded")


def test_the_cli_refuses_to_train_over_weights_without_a_train_state(tmp_path, toy_cli) -> None:
    from molgen.models.base import PRETRAINED_DIR

    folder = tmp_path / "shipped"
    shutil.copytree(PRETRAINED_DIR / "ar-qm9", folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ValueError, match="no train state to resume from.*choose another --out"):
        toy_cli("--out", str(folder), "--max-steps", "1", "--dataset", "not-loaded")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_budget_given_on_resume_replaces_the_saved_stop_conditions(tmp_path, toy_cli) -> None:
    run = str(tmp_path / "r")
    assert toy_cli("--out", run, "--max-steps", "6") == 0
    assert read_train_state(run)[1] == 6
    with pytest.raises(ValueError, match="already at step 6; --max-steps is the total step count"):
        toy_cli("--resume", run)  # the saved budget is spent: say so instead of training 0 steps
    with pytest.raises(ValueError, match="already at step 6"):
        toy_cli("--resume", run, "--max-steps", "6")
    assert toy_cli("--resume", run, "--max-minutes", "0.01") == 0  # the saved --max-steps 6 no longer stops it
    state, step = read_train_state(run, tensors=False)
    assert step > 6 and state["train_config"]["max_steps"] is None
    assert toy_cli("--resume", run, "--max-steps", str(step + 2)) == 0
    state, step2 = read_train_state(run, tensors=False)
    assert step2 == step + 2 and state["train_config"]["max_minutes"] is None


def test_lr_given_on_resume_is_used(tmp_path: Path) -> None:
    _train(tmp_path / "r", 5)
    torch.manual_seed(0)
    cfg = TrainConfig(batch_size=8, lr=3e-3, max_steps=6, checkpoint_every=5, log_every=2, progress=False)
    trainer = Trainer(_Toy(), _Data(), cfg, tmp_path / "r")
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [3e-3]


# --- warm-up and datasets that plan their own batches -----------------------------------------------
def test_warmup_rises_linearly_and_resumes_exactly(tmp_path: Path) -> None:
    full = _train(tmp_path / "a", 12, warmup_steps=8)
    assert [full.lr_at(s) for s in (0, 3, 7, 8, 100)] == [1e-2 / 8, 1e-2 * 4 / 8, 1e-2, 1e-2, 1e-2]
    _train(tmp_path / "b", 3, warmup_steps=8)
    resumed = _train(tmp_path / "b", 12, warmup_steps=8)  # resumed inside the warm-up
    for (k, v), (_, w) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(v, w), k
    plain = _train(tmp_path / "c", 12)
    assert not torch.equal(plain.model.net[0].weight, full.model.net[0].weight)


class _Planned(_Data):
    """Batches grouped by a fake 'size' (index mod 3), shuffled by (seed, epoch); sizes differ."""

    def __init__(self) -> None:
        super().__init__(50)
        self.seen: list[list[int]] = []

    def plan(self, epoch: int, seed: int, batch_size: int) -> list[np.ndarray]:
        g = np.random.default_rng([seed, epoch, 7])
        batches = []
        for group in range(3):
            ids = g.permutation(np.arange(group, len(self), 3))
            batches += [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
        return [batches[i] for i in g.permutation(len(batches))]

    def batch(self, idx):
        self.seen.append([int(i) for i in idx])
        return super().batch(idx)


def _train_planned(out: Path, steps: int) -> tuple[Trainer, _Planned]:
    torch.manual_seed(0)
    data = _Planned()
    cfg = TrainConfig(batch_size=8, lr=1e-2, max_steps=steps, checkpoint_every=4, log_every=2, progress=False)
    trainer = Trainer(_Toy(), data, cfg, out)
    trainer.fit()
    return trainer, data


def test_a_dataset_plan_sets_the_batches_and_resumes_exactly(tmp_path: Path) -> None:
    full, data = _train_planned(tmp_path / "a", 20)
    expected = [b.tolist() for e in range(3) for b in data.plan(e, 0, 8)][:20]
    assert data.seen == expected  # the plan's batches, in order, across epoch boundaries
    assert full.state.samples == sum(len(b) for b in expected)
    assert full.state.epoch == 2 and full.epochs() == pytest.approx(full.state.samples / 50)
    _train_planned(tmp_path / "b", 7)
    resumed, data_b = _train_planned(tmp_path / "b", 20)
    assert data_b.seen == expected[7:]
    assert resumed.state.samples == full.state.samples
    for (k, v), (_, w) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(v, w), k


def test_under_ddp_each_rank_takes_its_stride_of_the_planned_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = _Planned()
    trainer = Trainer(_Toy(), data, TrainConfig(batch_size=3, max_steps=1, progress=False), tmp_path / "r")
    trainer.order.world = 2
    first = data.plan(0, 0, 6)[0]  # the global batch: 3 per rank x 2 ranks
    for rank in (0, 1):
        trainer.order.rank = rank
        assert trainer._next_indices().tolist() == first[rank::2].tolist()
