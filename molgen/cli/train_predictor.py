"""Train the QM9 property predictor that scores conditional EDM (EDM's protocol; resumes a run).

    python -m molgen.cli.train_predictor --out runs/qm9-predictor --max-minutes 12
    python -m molgen.cli.train_predictor --resume runs/qm9-predictor --max-minutes 12
    python -m molgen.cli.train_predictor --out runs/predictor-alpha --properties alpha --max-minutes 12

An EGNN regressor (7 x 128 with attention by default, one output per property) trained with the L1
loss on the first half of QM9's training split; when the budget is spent its test MAE on the second
half (the generator's half) is written into the run's metrics.json as ``evaluation``. The folder is
the predictor's checkpoint (config.json, weights.safetensors with the EMA weights, metrics.json) and
its train state, so a later burst continues it with --resume.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .common import check_count, check_float, parser, run_cli


def build_parser():
    p = parser("python -m molgen.cli.train_predictor", __doc__)
    p.add_argument("--out", default=None, help="run folder (default: runs/qm9-predictor)")
    p.add_argument("--resume", default=None, help="continue the run in this folder (same as --out DIR)")
    p.add_argument("--properties", default="alpha,gap,homo,lumo,mu,Cv",
                   help="comma-separated QM9 properties (default: all six: alpha,gap,homo,lumo,mu,Cv)")
    p.add_argument("--max-steps", type=int, default=None, help="stop at this total step count (>= 1)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall-clock time (> 0)")
    p.add_argument("--batch-size", type=int, default=None, help="molecules per step (default 96, EDM's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 5e-4)")
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default 128, EDM's)")
    p.add_argument("--n-layers", type=int, default=None, help="EGNN layers (default 7, EDM's)")
    p.add_argument("--eval-every", type=int, default=None, help="validation MAE every N steps (default 2000)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="save every N steps (default 2000)")
    p.add_argument("--max-molecules", type=int, default=None,
                   help="train on a fixed subset of this many first-half molecules (small CPU runs)")
    p.add_argument("--test-molecules", type=int, default=None,
                   help="measure the test MAE on a fixed subset of the second half (default: all 50,000)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, value in (("--max-steps", args.max_steps), ("--batch-size", args.batch_size),
                        ("--hidden", args.hidden), ("--n-layers", args.n_layers), ("--eval-every", args.eval_every),
                        ("--checkpoint-every", args.checkpoint_every), ("--max-molecules", args.max_molecules),
                        ("--test-molecules", args.test_molecules)):
        check_count(value, flag, 1)
    for flag, value in (("--max-minutes", args.max_minutes), ("--lr", args.lr)):
        check_float(value, flag)
    if args.max_steps is None and args.max_minutes is None:
        raise ValueError("give --max-steps or --max-minutes")
    from ..datasets.qm9 import check_conditions
    from ..models.checkpoint import has_train_state

    names = check_conditions(args.properties)
    out = Path(args.resume or args.out or "runs/qm9-predictor")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is a file, not a folder")
    if args.resume and not has_train_state(out):
        raise ValueError(f"nothing to resume in {out} (no checkpoint.json with a train state)")
    if has_train_state(out) and (args.hidden or args.n_layers):
        raise ValueError(f"{out} holds a run: its --hidden and --n-layers are fixed")
    model_cfg = {k: v for k, v in (("hidden", args.hidden), ("n_layers", args.n_layers)) if v is not None}
    train_cfg = {k: v for k, v in (("max_steps", args.max_steps), ("max_minutes", args.max_minutes),
                                   ("batch_size", args.batch_size), ("lr", args.lr), ("eval_every", args.eval_every),
                                   ("checkpoint_every", args.checkpoint_every)) if v is not None}
    if args.no_progress:
        train_cfg["progress"] = False
    from ..training.qm9_predictor import train_predictor
    from .common import check_device

    card = train_predictor(out, names, model_cfg, train_cfg, device=check_device(args.device),
                           max_molecules=args.max_molecules, test_molecules=args.test_molecules,
                           command=" ".join(shlex.quote(a) for a in ["python -m molgen.cli.train_predictor",
                                                                     *(sys.argv[1:] if argv is None else argv)]))
    ev = card["evaluation"]
    maes = ", ".join(f"{k} {v:.4g} {ev['units'][k]}" for k, v in ev["test_mae"].items())
    print(f"trained the predictor to step {card['steps']}; test MAE on {ev['molecules']} second-half molecules: "
          f"{maes}; checkpoint in {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
