"""Sample an EDM checkpoint with its default settings, evaluate with molgen.evaluate, and record the
result (with this command) in the checkpoint's model card: as its ``evaluation`` at the checkpoint's
default number of steps, else as ``other_evaluations["<K>_steps"]`` (molgen.models.card.update_card).

    python -m benchmarks.studies.edm_quality [-n 1000] [--steps K] [--checkpoint DIR] [--fcd]

Samples drawn elsewhere (on a GPU, say) are evaluated the same way with ``--samples FILE --sampled-by
"the command that drew them"``; ``-n`` and ``--steps`` then only describe that file.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.timing import command_line, timed


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--checkpoint", default=None, help="default: the shipped edm-qm9")
    p.add_argument("--fcd", action="store_true")
    p.add_argument("--samples-out", default=None, help="also write the samples (.xyz/.sdf)")
    p.add_argument("--samples", default=None, help="evaluate this .xyz/.sdf file instead of sampling")
    p.add_argument("--sampled-by", default=None, help="with --samples: the command that wrote the file")
    p.add_argument("--nll", type=int, default=0, help="also estimate the NLL bound on this many QM9 test molecules")
    args = p.parse_args()

    import torch

    import molgen
    from molgen.models import pretrained_path
    from molgen.models.card import update_card

    folder = Path(args.checkpoint) if args.checkpoint else pretrained_path("edm")
    model = molgen.load("edm", checkpoint=str(folder))
    seconds = None
    if args.samples:
        if not args.sampled_by:
            p.error("--samples needs --sampled-by (the command that drew the file)")
        out = args.samples
    else:
        out, seconds = timed(model.sample, args.n, seed=0, steps=args.steps)
        seconds = round(seconds, 1)
    if args.samples_out and not args.samples:
        out.save(args.samples_out)
    result = molgen.evaluate(out, reference="qm9", fcd=args.fcd)
    print(result.table())
    record = {
        "command": command_line(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "n_samples": args.n, "seed": 0, "steps": args.steps or model.default_sampling_steps,
        "sampling_seconds": seconds, "torch_threads": torch.get_num_threads(),
        "metrics": result.as_dict(),
    }
    if args.samples:
        record.update(samples_file=args.samples, sampled_by=args.sampled_by, n_samples=result.as_dict()["n_molecules"])
    if args.nll:
        import numpy as np

        from molgen.datasets.qm9 import indices, load_qm9_arrays

        arrays = load_qm9_arrays()
        rows = np.random.default_rng(0).choice(indices("test"), args.nll, replace=False)
        ll = model.log_likelihood([arrays.molecule(int(i)) for i in rows], n_t=8)
        nll = -ll[np.isfinite(ll)]
        se = float(nll.std(ddof=1) / np.sqrt(nll.size)) if nll.size > 1 else float("nan")
        record["test_nll_nats"] = {"mean": float(nll.mean()), "standard_error": se, "median": float(np.median(nll)),
                                   "max": float(nll.max()), "molecules": args.nll, "scored": int(nll.size),
                                   "t_samples": 8,
                                   "note": "variational bound on -log p(x, h, N); EDM reports -110.7 on QM9"}
        print(f"NLL bound on {args.nll} QM9 test molecules: mean {nll.mean():.1f} nats (s.e. {se:.1f}), "
              f"median {np.median(nll):.1f}")
    default = record["steps"] == model.default_sampling_steps
    section = "evaluation" if default else f"other_evaluations/{record['steps']}_steps"
    path = update_card(folder, section, record)
    print(f"{record['n_samples']} molecules; wrote {section} into {path}")


if __name__ == "__main__":
    main()
