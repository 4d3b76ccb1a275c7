"""Train a model with the shared training loop (resumes when the output folder has a checkpoint).

    python -m molgen.train --model edm --dataset qm9 --out runs/edm --max-minutes 30
    torchrun --nproc_per_node 2 -m molgen.train --model edm --out runs/edm --max-steps 1000

A ``--config`` JSON file may hold {"model": {constructor kwargs}, "train": {TrainConfig fields}}.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from ._cli import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m molgen.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model name: edm, ar or vae")
    p.add_argument("--dataset", default="qm9", help="qm9 or moses (default: qm9)")
    p.add_argument("--config", default=None, help="JSON file with 'model' and 'train' sections")
    p.add_argument("--out", default=None, help="output folder (default: runs/<model>-<dataset>)")
    p.add_argument("--resume", default=None, help="continue the run in this folder (same as --out DIR)")
    p.add_argument("--max-steps", type=int, default=None, help="stop at this total step count")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall-clock time")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--eval-every", type=int, default=None, help="evaluate samples every N steps")
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    import torch

    from .models import model_class
    from .models.checkpoint import read_config
    from .training import TrainConfig, Trainer

    args = build_parser().parse_args(argv)
    cls = model_class(args.model)
    out = Path(args.resume or args.out or f"runs/{args.model}-{args.dataset}")
    if args.resume and not (out / "train_state.pt").exists():
        raise ValueError(f"nothing to resume in {out} (no train_state.pt)")
    model_cfg: dict = {}
    train_cfg: dict = {}
    if args.config:
        try:
            data = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read config {args.config}: {exc}") from None
        model_cfg, train_cfg = dict(data.get("model", {})), dict(data.get("train", {}))
    if (out / "train_state.pt").exists():  # resuming: the saved config wins
        model_cfg = read_config(out, expect_model=cls.name)["config"]
        saved = torch.load(out / "train_state.pt", map_location="cpu", weights_only=False)["train_config"]
        train_cfg = {**saved, **{k: v for k, v in train_cfg.items() if k in ("max_steps", "max_minutes")}}
    for key in ("max_steps", "max_minutes", "batch_size", "lr", "eval_every", "checkpoint_every"):
        value = getattr(args, key)
        if value is not None:
            train_cfg[key] = value
    if args.no_progress:
        train_cfg["progress"] = False
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(train_cfg) - known
    if unknown:
        raise ValueError(f"unknown training settings {sorted(unknown)}; known: {sorted(known)}")
    if train_cfg.get("max_steps") is None and train_cfg.get("max_minutes") is None:
        raise ValueError("give --max-steps or --max-minutes")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but no CUDA device is available")
        import os

        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.manual_seed(int(train_cfg.get("seed", TrainConfig.seed)))  # reproducible initial weights
    setup = cls.training_setup(args.dataset, model_cfg, train_cfg)
    trainer = Trainer(setup.model, setup.data, TrainConfig(**{**setup.train_defaults, **train_cfg}), out,
                      device=device, evaluate=setup.evaluate, extra_metrics=setup.metrics)
    result = trainer.fit()
    if trainer.rank == 0:
        print(f"trained {args.model} to step {result['steps']}; checkpoint in {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
