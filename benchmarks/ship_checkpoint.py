"""Turn a training run folder into a shipped checkpoint: config, weights and model card, no train state.

    python -m benchmarks.ship_checkpoint runs/ar-moses-cond molgen/pretrained/ar-moses-cond --float16 \\
        --train-command "OMP_NUM_THREADS=1 python -m molgen train ..." --train-hardware "2-core CPU ..."

The run's saved weights (the trainer's EMA weights) are written with ``GenerativeModel.save_pretrained``,
floating-point tensors as float16 with ``--float16`` (loaded back into float32; the file is half the
size). The card is the run's own ``metrics.json`` plus the provenance a shipped card needs
(``train_command``, ``train_hardware``, ``weights``); its ``evaluation`` comes afterwards from the model's
quality benchmark (e.g. ``python -m benchmarks.studies.bench_ar quality --checkpoint DEST``). The
destination must not hold a checkpoint yet.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a training run folder (config.json, weights.safetensors, metrics.json)")
    p.add_argument("dest", help="the new checkpoint folder")
    p.add_argument("--float16", action="store_true", help="store floating-point weights as float16")
    p.add_argument("--train-command", required=True, action="append",
                   help="the command that trained it (repeat for a run in several parts)")
    p.add_argument("--train-hardware", required=True, action="append", help="where it ran (repeat likewise)")
    p.add_argument("--weights-note", default=None, help="what the weights are (default: says EMA, dtype, run)")
    args = p.parse_args(argv)

    from molgen.models import load

    run, dest = Path(args.run), Path(args.dest)
    if (dest / "config.json").exists():
        print(f"error: {dest} already holds a checkpoint", file=sys.stderr)
        return 2
    try:
        model = load(str(run))
        card = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the run {run}: {exc}", file=sys.stderr)
        return 2
    weights = {k: (v.half() if args.float16 and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    one = (lambda xs: xs[0] if len(xs) == 1 else xs)
    card.update(train_command=one(args.train_command), train_hardware=one(args.train_hardware),
                weights=args.weights_note or (f"EMA weights of {run} at step {card.get('steps')}"
                                              + (", stored as float16 (loaded into float32)" if args.float16 else "")))
    card.pop("evaluation", None)
    model.save_pretrained(dest, metrics=card, weights={k: v.contiguous() for k, v in weights.items()})
    back = load(str(dest))
    worst = max(float((a.float() - b.float()).abs().max()) for a, b in
                zip(back.state_dict().values(), model.state_dict().values()) if a.is_floating_point())
    print(f"wrote {dest} ({sum(f.stat().st_size for f in dest.iterdir()) / 2**20:.1f} MiB); largest weight change "
          f"{worst:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
