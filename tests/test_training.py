"""The shared training loop: exact resume, NaN handling, checkpoints, and DDP over two CPU processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from molgen.models.base import GenerativeModel
from molgen.models.checkpoint import read_train_state
from molgen.training import TrainConfig, Trainer, TrainingDiverged


class _Toy(GenerativeModel):
    name = "toy-regression"

    def __init__(self, width: int = 8, nan_after: int = -1) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))
        self.nan_after = nan_after
        self.calls = 0

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
        "from molgen._cli import run_cli; from molgen.train import main; run_cli(main)"
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
    from molgen.training.trainer import ema_with_warmup

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
