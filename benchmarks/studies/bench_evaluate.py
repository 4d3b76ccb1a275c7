"""Time molgen's 3D metrics on 10,000 QM9 molecules, and FCD on their 10,000 SMILES.

    python -m benchmarks.studies.bench_evaluate [--n 10000] [--repeats 3] [--rebuild-cache] [--no-fcd]

The one-off reference caches (QM9 training SMILES for novelty, ChemNet statistics of the QM9 test
split for FCD) are built or loaded first and timed separately. Then, per repeat, from atom types and
coordinates (Angstrom): EDM bond orders, atom / molecule stability, RDKit build + sanitise,
largest-fragment canonical SMILES, validity, uniqueness and novelty. Targets (issue 2): under 10 s
for the 3D metrics, under 2 minutes for FCD, on 2 CPU cores. Writes
``benchmarks/results/bench_evaluate.txt`` and prints it.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

import numpy as np
import torch

from molgen.chem.convert import mols_from_3d
from molgen.datasets.qm9 import indices, load_qm9_arrays
from molgen.metrics.core import bond_orders_3d, graph_metrics, largest_fragment_smiles, stability_3d
from molgen.references import resolve

from benchmarks.studies import RESULTS as RESULTS_DIR
from benchmarks.timing import command_line, cpu_name, timed

RESULTS = RESULTS_DIR / "bench_evaluate.txt"


def run_3d(zs, xs, training) -> tuple[dict[str, float], dict[str, float]]:
    """The 3D metrics, step by step; returns the metrics and seconds per step."""
    t: dict[str, float] = {}
    orders, t["bond orders"] = timed(bond_orders_3d, zs, xs)
    stab, t["stability"] = timed(stability_3d, zs, xs, orders)
    mols, t["build + sanitise"] = timed(mols_from_3d, zs, xs, orders)
    smiles, t["canonical SMILES"] = timed(largest_fragment_smiles, mols)
    rest, t["validity, uniqueness, novelty"] = timed(graph_metrics, mols, smiles, training)
    return {**stab, **rest}, t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="molecules (the first n of the QM9 test split)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rebuild-cache", action="store_true", help="delete and rebuild the novelty cache first")
    parser.add_argument("--no-fcd", action="store_true", help="skip the FCD timing")
    args = parser.parse_args()

    out = [f"$ {command_line()}".rstrip(),
           f"# CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
           f"{cpu_name()}, Python {platform.python_version()}",
           f"# load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}"]

    arrays, t_load = timed(load_qm9_arrays)
    idx = indices("test")[:args.n]
    zs, xs = map(list, zip(*(arrays.molecule(i) for i in idx)))
    out.append(f"QM9 arrays loaded from cache: {t_load:.2f} s; {len(zs)} molecules, {sum(z.size for z in zs)} atoms")

    ref = resolve("qm9")
    path = ref.bundle.folder / "training.txt.gz"  # the training set's part of the QM9 reference bundle
    if args.rebuild_cache and path.exists():
        path.unlink()
    built = not path.exists()
    training, t_cache = timed(lambda: ref.training)
    out.append(f"one-off: QM9 training SMILES for novelty ({len(training)}) "
               f"{'built' if built else 'loaded from cache'} in {t_cache:.2f} s")

    totals, steps = [], []
    for _ in range(args.repeats):
        metrics, t = run_3d(zs, xs, training)
        totals.append(sum(t.values()))
        steps.append(t)
    best = int(np.argmin(totals))
    out.append(f"3D metrics on {len(zs)} molecules, {args.repeats} repeats: best {min(totals):.2f} s, "
               f"median {statistics.median(totals):.2f} s (target < 10 s)")
    out += [f"  {name:<30s} {sec:6.2f} s" for name, sec in steps[best].items()]
    out.append("  metrics: " + ", ".join(f"{k} {100 * v:.2f} %" for k, v in metrics.items()))

    if not args.no_fcd:
        from molgen.metrics.fcd import fcd

        ref_smiles = ref.comparison
        cached = (ref.bundle.folder / "chemnet-comparison.npz").exists()
        stats, t_ref = timed(ref.chemnet)
        out.append(f"one-off: ChemNet statistics of the QM9 test split ({len(ref_smiles)} SMILES) "
                   f"{'loaded from cache' if cached else 'built'} in {t_ref:.2f} s")
        valid = [s for s in largest_fragment_smiles(mols_from_3d(zs, xs)) if s]
        value, t_fcd = timed(lambda: fcd(valid, ref_stats=stats))
        out.append(f"FCD of {len(valid)} SMILES vs the QM9 test split: {t_fcd:.1f} s (target < 120 s); FCD = {value:.4f}")

    text = "\n".join(out) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
