"""Interruption: SIGKILL at random points of a checkpoint write (fault injection), and SIGINT /
SIGTERM during training, which save a checkpoint before exiting."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from molgen.models.checkpoint import MANIFEST, PENDING
from molgen.models.train_state import read_train_state
from molgen.training import TrainConfig, Trainer
from test_training import _Data, _Toy

TESTS = Path(__file__).resolve().parent
STEPS, EVERY = 15, 5

# One process imports torch once, warms it up on one thread (so no thread pool exists to break in
# a fork, and the children skip the first-step start-up) and forks a child per case. Each child trains the toy model and SIGKILLs itself at its k-th file operation inside
# its n-th checkpoint write: before a write, half-way through one, before a rename, a directory
# fsync or a removal.
_KILLER = textwrap.dedent(r"""
    import json, os, shutil, signal, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    base, seed, n_cases = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    import numpy as np
    import torch
    import molgen.models.checkpoint as ck
    from molgen.training import Trainer
    from test_training import _train

    torch.set_num_threads(1)
    _train(base / "warmup", 6)

    def run(out, save_no, kill_at):
        n_save, ops = [0], [0]

        def point():
            if n_save[0] == save_no:
                ops[0] += 1
                if ops[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

        def wrap(fn):
            def inner(*a, **k):
                point()
                return fn(*a, **k)
            return inner

        write = ck._write_file
        def write_file(path, data):
            point()
            if n_save[0] == save_no and ops[0] + 1 == kill_at:  # die with the file half written
                with open(path, "wb") as f:
                    f.write(data[: len(data) // 2]); f.flush()
                point()
            write(path, data)
        ck._write_file = write_file
        ck._fsync_dir = wrap(ck._fsync_dir)
        os.replace = wrap(os.replace)
        shutil.rmtree = wrap(shutil.rmtree)
        save = Trainer.save
        def counted_save(self):
            n_save[0] += 1
            save(self)
            if n_save[0] == save_no:
                Path(str(out) + ".ops").write_text(str(ops[0]))
        Trainer.save = counted_save
        _train(out, %(steps)d)

    def forked(out, save_no, kill_at):
        pid = os.fork()
        if pid == 0:
            try:
                run(out, save_no, kill_at)
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    ops = {}
    for save_no in (1, 2):  # how many file operations the 1st and 2nd checkpoint writes make
        forked(base / f"count{save_no}", save_no, 10**9)
        ops[save_no] = int(Path(str(base / f"count{save_no}") + ".ops").read_text())
    print(json.dumps({"ops": ops}), flush=True)
    rng = np.random.default_rng(seed)
    for i in range(n_cases):
        save_no = int(rng.choice([1, 2, 2, 2]))  # mostly over an existing checkpoint
        kill_at = int(rng.integers(1, ops[save_no] + 1))
        killed = forked(base / f"kill{i}", save_no, kill_at)
        print(json.dumps({"out": str(base / f"kill{i}"), "save": save_no, "kill_at": kill_at, "of": ops[save_no],
                          "killed": killed}), flush=True)
""") % {"steps": STEPS}


def _run_killer(base: Path, seed: int, n: int) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _KILLER, str(TESTS), str(base), str(seed), str(n)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def _resume(out: Path) -> Trainer:
    torch.manual_seed(0)
    cfg = TrainConfig(batch_size=8, lr=1e-2, max_steps=STEPS, checkpoint_every=EVERY, log_every=2, progress=False)
    return Trainer(_Toy(), _Data(), cfg, out)


def test_sigkill_at_random_points_of_a_checkpoint_write_leaves_a_resumable_folder(tmp_path: Path) -> None:
    results = _run_killer(tmp_path, seed=20240601, n=20)
    ops, cases = results[0]["ops"], results[1:]
    assert ops["1"] >= 10 and ops["2"] >= 10, ops
    assert len(cases) == 20 and all(c["killed"] for c in cases), cases
    full = _resume(tmp_path / "reference")
    full.fit()
    outcomes = set()
    for case in cases:
        out, save_no = Path(case["out"]), case["save"]
        where = f"{out.name}: save {save_no}, killed at file operation {case['kill_at']} of {case['of']}"
        trainer = _resume(out)  # tidies the folder, resumes or starts afresh
        step = trainer.state.step
        outcomes.add((save_no, step))
        assert step in ((0, EVERY) if save_no == 1 else (EVERY, 2 * EVERY)), where
        assert not (out / PENDING).exists() and not list(out.glob("*.tmp")), where
        if step:
            manifest = json.loads((out / MANIFEST).read_text())
            shards = sorted(p.name for p in out.glob("train_state-*.safetensors"))
            assert shards == sorted(n for n in manifest["files"] if n.startswith("train_state-")), where
            state, saved = read_train_state(out)  # all files match the manifest
            assert saved == step
            weights = load_file(str(out / "weights.safetensors"))
            ema = trainer.ema.module.state_dict()
            assert all(torch.equal(weights[k], ema[k]) for k in weights), where  # the weights of that step
            assert type(trainer.model).from_pretrained(out) is not None  # config checksum matches
        trainer.fit()
        for (k, v), (_, w) in zip(full.model.state_dict().items(), trainer.model.state_dict().items()):
            assert torch.equal(v, w), (where, k)  # and the resumed run ends where the uninterrupted one did
    assert {(2, EVERY), (2, 2 * EVERY), (1, 0)} <= outcomes, outcomes  # kills before and after the commit point


_CLI = textwrap.dedent(r"""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from molgen.models.base import register
    from molgen.training.setups import register_setup
    from molgen.training import TrainingSetup
    from test_training import _Data, _Toy

    class SlowToy(_Toy):
        name = "toy-slow"

        def loss(self, batch):
            time.sleep(0.02)
            return super().loss(batch)

    def slow_setup(dataset, model_cfg, train_cfg):
        return TrainingSetup(SlowToy(**model_cfg), _Data(), {"batch_size": 8, "log_every": 1,
                                                             "checkpoint_every": 100000})

    register(SlowToy)
    register_setup("toy-slow", slow_setup)
    from molgen.cli.common import run_cli
    from molgen.train import main
    sys.argv = ["molgen.train", "--model", "toy-slow", "--out", sys.argv[2], "--max-steps", "100000",
                "--no-progress"]
    run_cli(main)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_first_run_saves_a_resumable_checkpoint(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _CLI, str(TESTS), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (out / "log.csv").exists() or len((out / "log.csv").read_text().splitlines()) < 4:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted at step ") and f"checkpoint saved in {out}" in last, err
    assert f"--resume {out}" in last and "Traceback" not in err
    step = int(last.split()[3].rstrip(";"))
    assert step >= 3
    _, saved = read_train_state(out)
    assert saved == step
