"""Conditional EDM on QM9, scored by EDM's protocol: a property predictor's MAE on generated molecules.

    python -m benchmarks.studies.edm_conditional --generator runs/edm-qm9-cond --predictor runs/qm9-predictor
        [-n 1000] [--steps 500] [--guidance 1] [--properties alpha,gap] [--joint] [--reference-n 10000]
        [--name NAME] [--device auto]

The generator is a conditional EDM trained on the second half of QM9's training split
(``molgen train --model edm --conditions ...``), the predictor an EGNN regressor trained on the first
half (``python -m molgen.cli.train_predictor``). Per property the generator draws ``n`` molecules, each
asked for that property alone (its other conditions left out): the requested atom count and value are
those of a molecule drawn at random from the second half (EDM draws N from the atom-count histogram,
then the value from the property's histogram among molecules of that size; drawing a molecule does
both at once). The score is the mean absolute error between the request and the predictor's value of
the generated molecule (all samples, valid or not, as EDM does). Rows besides it:

- ``unconditional``: the same generator with the condition dropped but the same atom counts: what the
  atom count alone gives through the generator;
- ``joint`` (``--joint``): every property asked for at once (the same molecule's values), one model
  for the six; the MAE per property;
- ``naive``: the predictor on second-half molecules against shuffled labels (EDM's upper bound);
- ``#atoms``: the best guess from the atom count alone, the first half's median property per atom
  count (the minimiser of the L1 loss that EDM's NumNodes baseline is trained on), scored on the
  second half's molecules;
- ``predictor``: the predictor on second-half molecules against their own labels (its test error,
  the lower bound; its card's value on all of the second half is shown beside it);
- the published rows (:data:`benchmarks.published.QM9_CONDITIONAL`), each with its source.

Baseline rows use ``--reference-n`` second-half molecules (seeded). Writes
benchmarks/results/edm_conditional_<name>.txt and .json (``name``: the generator folder's name).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from benchmarks.published import QM9_CONDITIONAL
from benchmarks.timing import Stopwatch, command_line, machine

RESULTS = Path(__file__).resolve().parent.parent / "results"


def held_out(names: Sequence[str], reference_n: int | None, seed: int):
    """Second-half molecules (a seeded subset of ``reference_n``): their QM9 rows, atom counts and values."""
    from molgen.datasets.qm9 import HALVES, indices, load_qm9_arrays, qm9_properties

    rows = indices(HALVES[1])
    if reference_n is not None and reference_n < rows.size:
        rows = np.sort(np.random.default_rng(seed).choice(rows, reference_n, replace=False))
    return rows, load_qm9_arrays().n_atoms[rows], qm9_properties(rows, names)


def draw_requests(counts: np.ndarray, values: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (atom count, property values) requests: those of second-half molecules drawn at random
    (with replacement), i.e. N from the held-out histogram and the values from p(y | N)."""
    pick = np.random.default_rng(seed + 1).integers(0, len(counts), n)
    return counts[pick], values[pick]


def atom_count_baseline(names: Sequence[str], counts: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """EDM's #atoms baseline: the first half's median value per atom count, MAE on the given molecules."""
    from molgen.datasets.qm9 import HALVES, indices, load_qm9_arrays, qm9_properties

    first = indices(HALVES[0])
    n_first = load_qm9_arrays().n_atoms[first]
    v_first = qm9_properties(first, names)
    overall = np.median(v_first, axis=0)
    guess = np.stack([np.median(v_first[n_first == c], axis=0) if np.any(n_first == c) else overall
                      for c in counts])
    return {k: float(np.mean(np.abs(guess[:, i] - values[:, i]))) for i, k in enumerate(names)}


def predict_rows(predictor, rows: np.ndarray) -> np.ndarray:
    """The predictor's values (M, K) for QM9 molecules given by their rows."""
    from molgen.datasets.qm9 import load_qm9_arrays

    arr = load_qm9_arrays()
    return predictor.predict([arr.molecule(int(i)) for i in rows])


def mae(pred: np.ndarray, target: np.ndarray) -> tuple[float, int]:
    """MAE over the finite predictions, and how many were not finite (a broken sample)."""
    ok = np.isfinite(pred)
    return (float(np.mean(np.abs(pred[ok] - target[ok]))) if ok.any() else float("nan")), int((~ok).sum())


def generate(model, counts: np.ndarray, names: Sequence[str], asked: Sequence[str], values: np.ndarray | None,
             steps: int | None, guidance: float, seed: int, batch_size: int | None):
    """Molecules of the given atom counts asked for ``asked`` (values (n, K) in the order of ``names``;
    None or no ``asked``: unconditional); (atomic numbers, positions) lists and their stability."""
    from molgen.training.edm import sample_quality

    rows = None
    if asked:
        k = len(model.conditions)
        vals = torch.zeros(len(counts), k)
        present = torch.zeros(len(counts), k, dtype=torch.bool)
        for name in asked:
            j = model.conditions.index(name)
            vals[:, j] = torch.as_tensor(values[:, list(names).index(name)], dtype=torch.float32)
            present[:, j] = True
        rows = (vals, present)
    zs, xs = model.sample_arrays(len(counts), steps=steps, n_atoms=[int(c) for c in counts], seed=seed,
                                 batch_size=batch_size, condition_rows=rows, guidance=guidance if asked else 1.0)
    quality = sample_quality(zs, xs)
    return list(zip(zs, xs)), quality


class Laps:
    """Wall-clock seconds per named part of the run (each timed by :class:`benchmarks.timing.Stopwatch`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def lap(self, name: str):
        with Stopwatch() as watch:
            yield
        self.seconds[name] = self.seconds.get(name, 0.0) + watch.seconds

    def summary(self) -> str:
        return ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items())


def fmt(v: float | None, name: str) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v:.3f}" if name in ("mu", "Cv") else f"{v:.2f}" if name == "alpha" else f"{v:.0f}"


def table(rows: list[tuple[str, dict]], names: Sequence[str]) -> list[str]:
    head = "| row | " + " | ".join(names) + " |"
    out = [head, "|" + "---|" * (len(names) + 1)]
    for label, vals in rows:
        out.append(f"| {label} | " + " | ".join(fmt(vals.get(k), k) for k in names) + " |")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", required=True, help="a conditional EDM checkpoint or run folder")
    p.add_argument("--predictor", required=True, help="a property predictor folder (molgen.cli.train_predictor)")
    p.add_argument("-n", type=int, default=1000, help="generated molecules per property (default 1000)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the generator's)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (default 1)")
    p.add_argument("--properties", default=None, help="comma-separated (default: every condition both know)")
    p.add_argument("--joint", action="store_true", help="also ask for every property at once")
    p.add_argument("--reference-n", type=int, default=10000, help="second-half molecules for the baselines")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None, help="results file suffix (default: the generator folder's name)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.n < 1 or args.reference_n < 2:
        raise SystemExit("error: -n must be >= 1 and --reference-n >= 2")
    from molgen.models import load, resolve_device
    from molgen.models.card import read_card
    from molgen.models.edm.predictor import PropertyPredictor

    device = resolve_device(args.device)
    gen = load("edm", checkpoint=args.generator, device=device)
    if not gen.conditions:
        raise SystemExit(f"error: {args.generator} was trained without conditions")
    pred = PropertyPredictor.load(args.predictor, device=device)
    both = [k for k in gen.conditions if k in pred.properties]
    names = both if args.properties is None else [k.strip() for k in args.properties.split(",")]
    bad = [k for k in names if k not in both]
    if bad or not names:
        raise SystemExit(f"error: choose properties from {', '.join(both)} (both the generator and the predictor)")
    watch = Laps()
    cols = [pred.properties.index(k) for k in names]  # the predictor's outputs in the order of names
    rows, counts, values = held_out(names, args.reference_n, args.seed)
    req_counts, req_values = draw_requests(counts, values, args.n, args.seed)
    results: dict[str, dict] = {}
    quality: dict[str, dict] = {}
    with warnings.catch_warnings():  # requests beyond the 1st-99th percentile are part of the protocol
        warnings.simplefilter("ignore", UserWarning)
        for name in names:
            with watch.lap(f"sample {name}"):
                mols, quality[name] = generate(gen, req_counts, names, [name], req_values, args.steps, args.guidance,
                                               args.seed, args.batch_size)
            y = pred.predict(mols)[:, cols]
            j = names.index(name)
            results.setdefault("conditional", {})[name], bad_n = mae(y[:, j], req_values[:, j])
            quality[name]["non_finite"] = bad_n
        with watch.lap("sample unconditional"):
            mols, quality["unconditional"] = generate(gen, req_counts, names, [], None, args.steps, 1.0, args.seed,
                                                      args.batch_size)
        y = pred.predict(mols)[:, cols]
        results["unconditional"] = {k: mae(y[:, j], req_values[:, j])[0] for j, k in enumerate(names)}
        if args.joint:
            with watch.lap("sample joint"):
                mols, quality["joint"] = generate(gen, req_counts, names, names, req_values, args.steps,
                                                  args.guidance, args.seed, args.batch_size)
            y = pred.predict(mols)[:, cols]
            results["joint"] = {k: mae(y[:, j], req_values[:, j])[0] for j, k in enumerate(names)}
    with watch.lap("baselines"):
        y_held = predict_rows(pred, rows)[:, cols]
        perm = np.random.default_rng(args.seed + 2).permutation(len(rows))
        results["naive"] = {k: mae(y_held[:, j], values[perm, j])[0] for j, k in enumerate(names)}
        results["#atoms"] = atom_count_baseline(names, counts, values)
        results["predictor"] = {k: mae(y_held[:, j], values[:, j])[0] for j, k in enumerate(names)}
    card = read_card(args.predictor).get("evaluation", {})
    card_mae = card.get("test_mae", {})
    name = args.name or Path(args.generator).name
    steps = args.steps or gen.default_sampling_steps
    labels = [("conditional", f"this generator, one property asked (n = {args.n} each, guidance {args.guidance:g})"),
              ("joint", f"this generator, all asked at once (n = {args.n})"),
              ("unconditional", f"this generator, no condition, same atom counts (n = {args.n})"),
              ("naive", f"naive: predictor vs shuffled labels ({len(rows)} held-out molecules)"),
              ("#atoms", f"#atoms: first-half median per atom count ({len(rows)} held-out molecules)"),
              ("predictor", f"predictor on held-out molecules ({len(rows)})")]
    measured = [(text, results[key]) for key, text in labels if key in results]
    if card_mae:
        measured.append((f"predictor, its card ({card.get('molecules')} second-half molecules)", card_mae))
    published = QM9_CONDITIONAL
    sources = list(dict.fromkeys(r.source for r in published))
    quoted = [(f"{r.model} [{sources.index(r.source) + 1}]", {k: float(v) for k, v in r.values.items()})
              for r in published]
    lines = [f"# Conditional EDM on QM9, EDM's protocol: {name}", "",
             f"generator {args.generator} (conditions {', '.join(gen.conditions)}; {steps} sampling steps), "
             f"predictor {args.predictor} ({', '.join(pred.properties)}); requests: atom count and value of "
             f"second-half molecules (seed {args.seed}). MAE in alpha Bohr^3, gap/homo/lumo meV, mu D, Cv cal/(mol K).",
             "", "## Measured here", "", *table(measured, names), "",
             "Sample quality (EDM's stability rule; validity: RDKit):", ""]
    for key, q in quality.items():
        lines.append(f"- {key}: atom stability {q['atom_stability']:.3f}, molecule stability "
                     f"{q['molecule_stability']:.3f}, validity {q['validity'] if q['validity'] is None else round(q['validity'], 3)}"
                     + (f", non-finite predictions {q['non_finite']}" if q.get("non_finite") else ""))
    lines += ["", "## Published (quoted, not measured here; one model per property in each paper)", "",
              *table(quoted, names), "",
              *(f"[{i + 1}] {src}" for i, src in enumerate(sources)),
              "(read second-hand so far, marked '(check)' in the project's reference notes)", "",
              f"command: {command_line()}", f"machine: {machine()}",
              f"date: {datetime.date.today().isoformat()}", f"time: {watch.summary()}"]
    RESULTS.mkdir(exist_ok=True)
    text = "\n".join(lines) + "\n"
    (RESULTS / f"edm_conditional_{name}.txt").write_text(text)
    (RESULTS / f"edm_conditional_{name}.json").write_text(json.dumps(
        {"generator": args.generator, "predictor": args.predictor, "n": args.n, "steps": steps,
         "guidance": args.guidance, "reference_n": len(rows), "seed": args.seed, "mae": results,
         "seconds": {k: round(v, 1) for k, v in watch.seconds.items()},
         "predictor_card_mae": card_mae, "quality": quality, "command": command_line(),
         "date": datetime.date.today().isoformat()}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
