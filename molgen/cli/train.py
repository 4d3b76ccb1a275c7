"""Train a model with the shared training loop (resumes when the output folder has a checkpoint).

    molgen train --model edm --dataset qm9 --out runs/edm --max-minutes 30
    molgen train --model edm --resume runs/edm --max-minutes 10
    torchrun --nproc_per_node 2 -m molgen train --model edm --out runs/edm --max-steps 1000

A ``--config`` JSON file may hold {"model": {constructor kwargs}, "train": {TrainConfig fields}}.
When resuming, the saved settings are used; a budget given now (--max-steps, a total step count, or
--max-minutes, for this run) replaces the saved stop conditions. SIGINT / SIGTERM save a checkpoint
before exiting. A folder holding weights but no train state is never trained over.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from .common import parser

_BUDGET = ("max_steps", "max_minutes")


def build_parser() -> argparse.ArgumentParser:
    p = parser("molgen train", __doc__)
    p.add_argument("--model", required=True, help="model name: edm, ar or vae")
    p.add_argument("--dataset", default="qm9", help="qm9 or moses (default: qm9)")
    p.add_argument("--config", default=None, help="JSON file with 'model' and 'train' sections")
    p.add_argument("--out", default=None, help="output folder (default: runs/<model>-<dataset>)")
    p.add_argument("--resume", default=None, help="continue the run in this folder (same as --out DIR)")
    p.add_argument("--max-steps", type=int, default=None, help="stop at this total step count (>= 1)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall-clock time (> 0)")
    p.add_argument("--batch-size", type=int, default=None, help="molecules per step and process (>= 1)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (> 0)")
    p.add_argument("--warmup-steps", type=int, default=None, help="linear learning-rate warm-up steps (>= 0)")
    p.add_argument("--eval-every", type=int, default=None, help="evaluate samples every N steps (>= 1)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="save a checkpoint every N steps (>= 1)")
    p.add_argument("--eval-minutes", type=float, default=None,
                   help="also evaluate samples every M minutes of wall-clock time (> 0)")
    p.add_argument("--eval-samples", type=int, default=None, help="molecules each evaluation samples (>= 1)")
    p.add_argument("--buckets", default=None,
                   help="size buckets in atoms, e.g. 12,16,20,24,29: batches of similar molecules padded to "
                        "their bucket (edm)")
    p.add_argument("--max-molecules", type=int, default=None,
                   help="ar: train on a fixed random subset (seed 0) of this many training molecules (>= 1)")
    p.add_argument("--encoded-data", default=None, metavar="DIR",
                   help="ar, vae: train on this encoded training set (train.npz and heldout.npz: linearised for ar, "
                        "e.g. from `python -m benchmarks.gpu_burst.moses_travel unpack`, featurised for vae, from "
                        "`python -m benchmarks.gpu_burst.moses_vae_travel unpack`) instead of the dataset's SMILES; "
                        "needs no RDKit (its learning curve keeps the samples for scoring elsewhere)")
    p.add_argument("--no-amsgrad", action="store_true",
                   help="a new run's AdamW without AMSGrad's running maximum: a third less optimizer state, "
                        "for a run folder that must travel (ar-moses: 57 instead of 71 MiB)")
    p.add_argument("--seed", type=int, default=None, help="seed of the initial weights and data order (0..2**63-1)")
    p.add_argument("--conditions", default=None, metavar="NAMES",
                   help="train p(x | y) on these properties, comma-separated, with condition dropout so the "
                        "weights also sample unconditionally: RDKit's logp, qed, sa, mw, tpsa (ar, vae) or "
                        "QM9's alpha, gap, homo, lumo, mu, Cv (edm, on the second half of the training split)")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="a new run starts from these weights (a shipped name such as ar-qm9, or a folder); "
                        "parameters the checkpoint lacks (a new condition embedding) keep their initial values")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto, CUDA when available)")
    p.add_argument("--cpu-bf16", action="store_true",
                   help="on a CPU, autocast to bfloat16 (about 2x per EDM training step on CPUs with AVX512-BF16 "
                        "or AMX; refused on others, where it is slower)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _check_args(args: argparse.Namespace) -> None:
    """One line per bad argument, naming it and its allowed range (before any data is loaded)."""
    def need(ok: bool, flag: str, allowed: str, value: Any) -> None:
        if not ok:
            raise ValueError(f"{flag} must be {allowed}, got {value}")

    for flag, value, low in (("--max-steps", args.max_steps, 1), ("--batch-size", args.batch_size, 1),
                             ("--eval-every", args.eval_every, 1), ("--checkpoint-every", args.checkpoint_every, 1),
                             ("--warmup-steps", args.warmup_steps, 0), ("--eval-samples", args.eval_samples, 1),
                             ("--max-molecules", args.max_molecules, 1)):
        if value is not None:
            need(value >= low, flag, f"an integer >= {low}", value)
    if args.max_minutes is not None:
        need(math.isfinite(args.max_minutes) and args.max_minutes > 0, "--max-minutes", "a finite number > 0",
             args.max_minutes)
    if args.eval_minutes is not None:
        need(math.isfinite(args.eval_minutes) and args.eval_minutes > 0, "--eval-minutes", "a finite number > 0",
             args.eval_minutes)
    if args.buckets is not None:
        try:
            edges = [int(v) for v in args.buckets.split(",")]
        except ValueError:
            edges = []
        need(bool(edges) and all(e >= 1 for e in edges), "--buckets", "comma-separated atom counts >= 1",
             args.buckets)
        args.buckets = edges
    if args.lr is not None:
        need(math.isfinite(args.lr) and args.lr > 0, "--lr", "a finite number > 0", args.lr)
    if args.seed is not None:
        need(0 <= args.seed <= 2**63 - 1, "--seed", "an integer in 0..2**63-1", args.seed)
    if args.encoded_data is not None:
        folder = Path(args.encoded_data)
        lacking = [name for name in ("train.npz", "heldout.npz") if not (folder / name).is_file()]
        need(not lacking, "--encoded-data", "a folder holding train.npz and heldout.npz",
             f"{args.encoded_data} (no {', '.join(lacking)})")
    for flag, value in (("--out", args.out), ("--resume", args.resume)):
        if value is not None and Path(value).exists() and not Path(value).is_dir():
            raise ValueError(f"{flag} {value} is a file, not a folder")


def _read_config_file(path: str) -> tuple[dict, dict]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read --config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path} must hold a JSON object {{\"model\": {{...}}, \"train\": {{...}}}}, "
                         f"not a {type(data).__name__}")
    extra = set(data) - {"model", "train"}
    if extra:
        raise ValueError(f"--config {path} has unknown sections {sorted(extra)}; allowed: 'model', 'train'")
    for key in ("model", "train"):
        if not isinstance(data.get(key, {}), dict):
            raise ValueError(f"--config {path}: the {key!r} section must be a JSON object, "
                             f"not a {type(data[key]).__name__}")
    return dict(data.get("model", {})), dict(data.get("train", {}))


def _architecture(src: Any) -> dict:
    """A checkpoint's model settings less its conditions (what a run initialised from it must share)."""
    return {k: v for k, v in src.config.items() if k not in ("conditions", "condition_stats")}


def _init_source(source: str, cls: Any, model_cfg: dict) -> tuple[Any, dict]:
    """The checkpoint a new run starts from, and the run's model settings with its architecture (the
    vocabulary and ``max_atoms`` included, so a run on a subset keeps them). One error line where the
    checkpoint does not fit."""
    from ..models import load

    src = load(source)
    if src.name != cls.name:
        raise ValueError(f"--init-from {source} is a {src.name} checkpoint, not {cls.name}")
    if src.config.get("conditions") and list(src.config["conditions"]) != list(model_cfg.get("conditions") or []):
        raise ValueError(f"--init-from {source} was trained with conditions {', '.join(src.config['conditions'])}; "
                         "give the same --conditions, in the same order")
    return src, {**_architecture(src), **model_cfg}


def _init_from(model: Any, src: Any, source: str) -> None:
    """Copy the checkpoint's weights into the new run's model (same architecture; new parameters, such
    as a condition embedding, keep their initial values). One error line where they do not fit."""
    arch = _architecture(src)
    differ = sorted(k for k, v in arch.items() if model.config.get(k) != v and
                    not (isinstance(v, (list, tuple)) and list(model.config.get(k) or []) == list(v)))
    if differ:
        raise ValueError(f"--init-from {source} does not fit this run's model: {', '.join(differ)} differ")
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    new = [k for k in missing if not k.startswith("cond_encoder.")]
    if new or unexpected:
        raise ValueError(f"--init-from {source} does not fit this run's model: "
                         f"{', '.join((new + list(unexpected))[:3])} ...")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_args(args)

    import torch

    from ..models import model_class
    from ..models.checkpoint import has_train_state, read_config
    from ..models.train_state import read_train_state
    from ..training import TrainConfig, Trainer, TrainingInterrupted
    from ..training.run_folder import prepare_run_folder, refuse_message
    from ..training.setups import training_setup
    from .common import check_device

    cls = model_class(args.model)
    out = Path(args.resume or args.out or f"runs/{args.model}-{args.dataset}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is a file, not a folder")
    if int(os.environ.get("RANK", "0")) == 0:
        prepare_run_folder(out)  # finish an interrupted checkpoint write, convert a legacy train_state.pt
    resuming = has_train_state(out)
    if args.resume and not resuming:
        raise ValueError(f"nothing to resume in {out} (no checkpoint.json with a train state)")
    if not resuming and (out / "weights.safetensors").exists():
        raise ValueError(refuse_message(out))
    model_cfg: dict = {}
    train_cfg: dict = {}
    if args.config:
        model_cfg, train_cfg = _read_config_file(args.config)
    if args.conditions is not None:
        from ..datasets.qm9 import check_conditions
        from ..training.conditions import check_names

        if cls.name not in ("ar", "vae", "edm"):
            raise ValueError(f"--conditions applies to --model ar, vae or edm, not {cls.name}")
        names = [c.strip() for c in args.conditions.split(",") if c.strip()]
        model_cfg["conditions"] = list(check_conditions(names) if cls.name == "edm" else check_names(names))
    if args.init_from is not None and resuming:
        raise ValueError(f"--init-from starts a new run, but {out} already has one to resume")
    budget = {k: train_cfg[k] for k in _BUDGET if k in train_cfg}
    budget.update({k: getattr(args, k) for k in _BUDGET if getattr(args, k) is not None})
    saved_step = 0
    if resuming:  # the saved config wins; a budget given now replaces the saved stop conditions
        changes = model_cfg
        model_cfg = read_config(out, expect_model=cls.name)["config"]
        allowed = set(getattr(cls, "training_only_config", ()))
        fixed = sorted(k for k, v in changes.items() if k not in allowed and model_cfg.get(k) != v)
        if fixed:
            raise ValueError(f"--config changes {fixed} of the saved model in {out}; a resumed run may change only "
                             f"{sorted(allowed) or 'none of its model settings'}")
        model_cfg = {**model_cfg, **{k: v for k, v in changes.items() if k in allowed}}
        saved, saved_step = read_train_state(out, tensors=False)
        train_cfg = dict(saved["train_config"])
        train_cfg.pop("encoded_data", None)  # where the data lay, not what it is: give --encoded-data again
        if budget:
            train_cfg.update({k: budget.get(k) for k in _BUDGET})
    else:
        train_cfg.update(budget)
    for key in ("batch_size", "lr", "warmup_steps", "eval_every", "checkpoint_every", "seed", "eval_samples",
                "buckets", "max_molecules", "encoded_data"):
        value = getattr(args, key)
        if value is not None:
            train_cfg[key] = value
    if args.eval_minutes is not None:
        train_cfg["eval_every_minutes"] = args.eval_minutes
    if args.no_progress:
        train_cfg["progress"] = False
    if args.no_amsgrad:
        if resuming and train_cfg.get("amsgrad", True):
            raise ValueError(f"--no-amsgrad applies to a new run; the run in {out} resumes with AMSGrad")
        train_cfg["amsgrad"] = False
    if args.cpu_bf16:
        from .._cpu import require_native_bf16

        require_native_bf16("--cpu-bf16")
        train_cfg["cpu_bf16"] = True
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(train_cfg) - known
    if unknown:
        raise ValueError(f"unknown training settings {sorted(unknown)}; known: {sorted(known)}")
    for key, models in (("max_molecules", ("ar",)), ("encoded_data", ("ar", "vae"))):
        if train_cfg.get(key) and cls.name not in models:
            raise ValueError(f"--{key.replace('_', '-')} applies to --model {' or '.join(models)} only, not {cls.name}")
    TrainConfig(**train_cfg)  # every setting checked before the dataset loads
    steps, minutes = train_cfg.get("max_steps"), train_cfg.get("max_minutes")
    if steps is None and minutes is None:
        raise ValueError("give --max-steps or --max-minutes")
    if resuming and steps is not None and steps <= saved_step:
        raise ValueError(f"the run in {out} is already at step {saved_step}; --max-steps is the total step count, "
                         f"so give more than {saved_step}, or give --max-minutes")
    device = check_device(args.device)
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.manual_seed(int(train_cfg.get("seed", TrainConfig.seed)))  # reproducible initial weights
    src = None
    if args.init_from is not None:
        src, model_cfg = _init_source(args.init_from, cls, model_cfg)
    setup = training_setup(cls.name, args.dataset, model_cfg, train_cfg)
    if src is not None:
        _init_from(setup.model, src, args.init_from)
    trainer = Trainer(setup.model, setup.data, TrainConfig(**{**setup.train_defaults, **train_cfg}), out,
                      device=device, evaluate=setup.evaluate, extra_metrics=setup.metrics)
    try:
        result = trainer.fit()
    except TrainingInterrupted as exc:
        if trainer.rank == 0:
            print(str(exc), file=sys.stderr)
        return 128 + exc.signum
    if trainer.rank == 0:
        print(f"trained {args.model} to step {result['steps']}; checkpoint in {out}")
    return 0

