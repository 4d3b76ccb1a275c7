"""Each shipped model's test-split score reference and its anomaly AUROC.

    python -m benchmarks.studies.score_reference [-n 2000] [--models ar-qm9,ar-moses,vae-qm9,vae-moses,edm-qm9]

For each checkpoint: the NLL of ``n`` molecules of its own test split (a seeded draw; EDM: ``n // 4``
QM9 test molecules in 3D, the bound with 8 time samples) becomes the ``score_reference`` of its model card
(quantiles 0, 1, ..., 100 %), from which ``model.score`` and ``molgen score`` give percentiles. For the graph
models it also reports the AUROC of telling MOSES test from QM9 test molecules (``n`` each) by the raw NLL
and by the NLL per heavy atom, the other dataset being the anomaly; molecules a model cannot represent
(atoms outside its vocabulary, too large) count as the most anomalous. Writes
benchmarks/results/score_reference.txt.
"""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np

from benchmarks.timing import Stopwatch, command_line, machine

RESULTS = Path(__file__).resolve().parent.parent / "results" / "score_reference.txt"


def auroc(inlier: np.ndarray, outlier: np.ndarray) -> float:
    """P(score of an outlier > score of an inlier), ties counted half (the Mann-Whitney AUROC)."""
    from scipy.stats import rankdata

    scores = np.concatenate([inlier, outlier])
    ranks = rankdata(scores)
    n_in, n_out = len(inlier), len(outlier)
    return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def draw(smiles: list[str], n: int, seed: int) -> list[str]:
    rows = np.random.default_rng(seed).choice(len(smiles), size=min(n, len(smiles)), replace=False)
    return [smiles[i] for i in sorted(rows)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default="ar-qm9,ar-moses,vae-qm9,vae-moses,edm-qm9")
    args = p.parse_args()

    import molgen
    from molgen.datasets import dataset_smiles
    from molgen.models.card import update_card

    test = {ds: draw(dataset_smiles(ds, "test"), args.n, args.seed) for ds in ("qm9", "moses")}
    lines = [f"# {command_line()}", f"# {machine()}", ""]
    for name in args.models.split(","):
        model = molgen.load(name)
        dataset = name.split("-", 1)[1]
        with Stopwatch() as clock:
            if model.likelihood_kind == "vlb":
                from benchmarks.studies.edm_constrained import qm9_test_records

                table = model.score(qm9_test_records(args.n // 4, args.seed))
            else:
                table = model.score(test[dataset])
        nll = table["nll"].to_numpy()
        finite = nll[np.isfinite(nll)]
        quantiles = np.quantile(finite, np.linspace(0, 1, 101)).round(4).tolist()
        update_card(model.checkpoint_dir, "score_reference", {
            "command": command_line(), "date": datetime.date.today().isoformat(), "machine": machine(),
            "reference": f"{dataset} test, {len(table)} molecules (seed {args.seed})", "scored": int(len(finite)),
            "bound": model.likelihood_kind, "quantiles": quantiles})
        lines.append(f"{name}: {model.likelihood_kind} NLL of {len(finite)} of {len(table)} {dataset} test molecules in "
                     f"{clock.seconds:.0f} s: median {np.median(finite):.2f} nats, 5-95 % "
                     f"{np.quantile(finite, 0.05):.2f} to {np.quantile(finite, 0.95):.2f}")
        if model.likelihood_kind != "vlb":
            other = "moses" if dataset == "qm9" else "qm9"
            out_table = model.score(test[other])
            for column, label in (("nll", "raw NLL"), ("nll_per_atom", "NLL per heavy atom")):
                worst = np.nanmax(np.concatenate([table[column], out_table[column]])) + 1.0
                inl = np.nan_to_num(table[column].to_numpy(), nan=worst)
                outl = np.nan_to_num(out_table[column].to_numpy(), nan=worst)
                lines.append(f"  AUROC {dataset} test (inlier) vs {other} test (anomaly), {label}: {auroc(inl, outl):.3f} "
                             f"({int(out_table['nll'].isna().sum())} of {len(out_table)} {other} molecules not representable)")
        print(lines[-1] if model.likelihood_kind == "vlb" else "\n".join(lines[-3:]), flush=True)
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
