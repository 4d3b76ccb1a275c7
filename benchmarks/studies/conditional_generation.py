"""How well a conditional checkpoint hits requested properties (issue 14's protocol).

    python -m benchmarks.studies.conditional_generation --checkpoint ar-qm9-cond [-n 1000] [--guidance 1 2]
        [--targets logp,qed,mw] [--pair logp,qed] [--test-sample 20000] [--candidates 1 4 16]

For each of the checkpoint's conditions, targets at the test split's 10th, 50th and 90th percentiles;
at each target ``n`` samples, reporting the MAE between the target and RDKit's value of the valid
samples, validity, uniqueness and novelty (against the training split). Baselines at the same targets:
the checkpoint's own unconditional samples (condition dropped) and the test molecules themselves (the
MAE a model that ignores the condition but matches the data would get). A two-property row asks for
the ``--pair`` (default: every condition) at their medians at once. ``--targets`` limits the single-property
targets to some conditions; ``--test-sample N`` takes the percentiles and the test-molecule row from a
seeded draw of N test molecules (MOSES test has 176,074; RDKit's QED and SA take minutes for all).
RDKit values are computed for the targeted properties only. ``--candidates K`` adds rows that draw K
samples per molecule and keep the one closest to the target (the model's ``sample(candidates=K)``): AR and
VAE checkpoints pick by RDKit's exact values (generate-and-select, ``closest_to_request``).

Writes benchmarks/results/conditional_<checkpoint>.txt, a requested-against-achieved plot per property
(benchmarks/results/conditional_<checkpoint>.png: unconditional samples and the highest guidance) and the
card's ``other_evaluations/conditional`` section (for a shipped checkpoint), which the benchmark
report's conditional section reads.
"""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np

from benchmarks.timing import Stopwatch, command_line, machine
from molgen.metrics.properties import condition_values

RESULTS = Path(__file__).resolve().parent.parent / "results"


def row(smiles: list[str | None], names: tuple[str, ...], target: dict[str, float], train: frozenset[str],
        vals: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """Validity, uniqueness, novelty and the MAE per requested property (``vals``: the valid
    molecules' property values, if already computed)."""
    valid = [s for s in smiles if s]
    vals = condition_values(valid, names) if vals is None else vals
    uniq = set(valid)
    out = {"validity": len(valid) / max(len(smiles), 1), "uniqueness": len(uniq) / max(len(valid), 1),
           "novelty": len(uniq - train) / max(len(uniq), 1)}
    for k, name in enumerate(names):
        if name in target:
            out[f"mae_{name}"] = float(np.nanmean(np.abs(vals[:, k] - target[name])))
    return out, vals


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="ar-qm9-cond")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", default=None, help="comma-separated conditions to target (default: all)")
    p.add_argument("--pair", default=None, help="comma-separated conditions asked for at once (default: all)")
    p.add_argument("--test-sample", type=int, default=None, help="a seeded draw of this many test molecules")
    p.add_argument("--candidates", type=int, nargs="+", default=[1],
                   help="also rows that draw K samples per molecule and keep the one closest to the target "
                        "(sample's candidates: the closest by RDKit's values; default: 1 only)")
    p.add_argument("--no-card", action="store_true", help="do not write the card's section")
    args = p.parse_args()

    import molgen
    from molgen.datasets import dataset_smiles
    from molgen.models.base import PRETRAINED_DIR
    from molgen.models.card import read_card, update_card
    from molgen.references import training_smiles

    model = molgen.load(args.checkpoint)
    names = tuple(model.conditions)  # a VAE's latent head's properties where its decoder takes none
    folder = Path(args.checkpoint) if Path(args.checkpoint).is_dir() else PRETRAINED_DIR / args.checkpoint
    dataset = read_card(folder).get("dataset", "qm9")
    test = [s for s in dataset_smiles(dataset, "test") if s]
    if args.test_sample and args.test_sample < len(test):
        test = [test[k] for k in sorted(np.random.default_rng(0).choice(len(test), args.test_sample, replace=False))]
    single = tuple(args.targets.split(",")) if args.targets else names
    pair = tuple(args.pair.split(",")) if args.pair else names
    unknown = sorted(set(single + pair) - set(names))
    if unknown:
        raise SystemExit(f"error: {', '.join(unknown)} not among the checkpoint's conditions {', '.join(names)}")
    names = tuple(k for k in names if k in single or k in pair)  # RDKit values only for the properties asked for
    test_vals = condition_values(test, names)
    train = training_smiles(dataset)
    lines = [f"# {command_line()}", f"# {machine()}", f"# {args.checkpoint}: conditions {', '.join(names)}; "
             f"{args.n} samples per target; MAE of RDKit's value of the valid samples against the target",
             f"# targets: the {dataset} test split's 10th / 50th / 90th percentiles"
             + (f" ({len(test):,} test molecules, a seeded draw)" if args.test_sample else ""), ""]
    header = f"{'target':28s} {'sampler':26s} {'valid':>6s} {'unique':>6s} {'novel':>6s} " + " ".join(
        f"{'MAE ' + k:>9s}" for k in names)
    lines.append(header)
    results: dict[str, dict] = {}
    plot: dict[str, dict[str, dict[float, np.ndarray]]] = {}
    with Stopwatch() as clock:
        uncond = model.sample(args.n, seed=args.seed + 999).smiles
        uncond_vals = condition_values([s for s in uncond if s], names)
        targets = [{k: float(np.nanpercentile(test_vals[:, j], q))} for j, k in enumerate(names) if k in single
                   for q in (10, 50, 90)]
        if len(pair) > 1:
            targets.append({k: float(np.nanpercentile(test_vals[:, j], 50)) for j, k in enumerate(names) if k in pair})
        for target in targets:
            label = ", ".join(f"{k}={v:.3g}" for k, v in target.items())
            rows = {"unconditional": row(uncond, names, target, train, uncond_vals)[0],
                    "test molecules": row(test, names, target, train, test_vals)[0]}
            for g, k in ((g, k) for g in args.guidance for k in args.candidates):
                more = {"candidates": k} if k > 1 else {}
                smiles = model.sample(args.n, seed=args.seed, condition=target, guidance=g, **more).smiles
                sampler = f"guidance {g:g}" + (f", best of {k}" if k > 1 else "")
                rows[sampler], vals = row(smiles, names, target, train)
                if len(target) == 1 and g == max(args.guidance) and k == max(args.candidates):
                    (key, value), = target.items()
                    plot.setdefault(key, {"unconditional": {}})["unconditional"][value] = uncond_vals[:, names.index(key)]
                    plot[key].setdefault(sampler, {})[value] = vals[:, names.index(key)]
            for sampler, r in rows.items():
                lines.append(f"{label:28s} {sampler:26s} {r['validity']:6.3f} {r['uniqueness']:6.3f} {r['novelty']:6.3f} "
                             + " ".join(f"{r[f'mae_{k}']:9.3f}" if f"mae_{k}" in r else f"{'':9s}" for k in names))
                print(lines[-1], flush=True)
            results[label] = rows
    seconds = clock.seconds
    lines += ["", f"# {seconds:.0f} s in all"]
    name = Path(args.checkpoint).name
    out = RESULTS / f"conditional_{name}.txt"
    out.write_text("\n".join(lines) + "\n")
    from benchmarks.figures import requested_achieved

    figure = requested_achieved(plot, RESULTS / f"conditional_{name}.png", title=f"{name}: {args.n} samples per target")
    print("\n".join(lines))
    if not args.no_card and (folder / "metrics.json").is_file() and folder.parent == PRETRAINED_DIR:
        update_card(folder, "other_evaluations/conditional",
                    {"command": command_line(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                     "n_samples": args.n, "candidates": args.candidates, "results": results,
                     "figure": None if figure is None else f"benchmarks/results/{figure.name}"})


if __name__ == "__main__":
    main()
