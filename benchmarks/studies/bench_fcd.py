"""Time FCD on 10,000 MOSES test SMILES against the next 10,000 (ChemNet on both sets included).

    python -m benchmarks.studies.bench_fcd [--n 10000] [--batch-size 128]

First loads ChemNet (timed apart, once per process), then times one complete
``molgen.metrics.fcd.fcd(gen, ref_smiles=ref)`` call: canonicalisation and ChemNet activations of
both sets, their means and covariances, and the Fréchet distance. A second pass times those steps
one by one and compares the Fréchet distance with the ``scipy.linalg.sqrtm`` route of the ``fcd``
package on the same statistics. Target: under 2 minutes for the whole call on 2 CPU cores. Needs the
MOSES files (``python -m molgen.datasets.moses fetch``). Writes ``benchmarks/results/bench_fcd.txt``
and prints it.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from molgen.datasets.moses import load_moses
from molgen.metrics import fcd as F

from benchmarks.studies import RESULTS as RESULTS_DIR
from benchmarks.timing import command_line, timed

RESULTS = RESULTS_DIR / "bench_fcd.txt"


def sqrtm_frechet_distance(stats_a, stats_b) -> float:
    """The route of ``fcd`` / ``fcd_torch``: Tr((S_a S_b)^(1/2)) through ``scipy.linalg.sqrtm``."""
    from scipy import linalg

    diff = stats_a[0] - stats_b[0]
    covmean = linalg.sqrtm(stats_a[1] @ stats_b[1])
    return float(diff @ diff + np.trace(stats_a[1]) + np.trace(stats_b[1]) - 2 * np.trace(covmean).real)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="molecules per set (default 10,000)")
    parser.add_argument("--batch-size", type=int, default=128, help="ChemNet batch size")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the report")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    test = load_moses("test")
    gen, ref = test[:args.n], test[args.n:2 * args.n]
    device = F._device(None)
    _, t_load = timed(F._chemnet, device)

    value, t_total = timed(F.fcd, gen, ref_smiles=ref)

    # Step by step, on the same data.
    can_gen, t_can_gen = timed(F._canonical_smiles, gen)
    can_ref, t_can_ref = timed(F._canonical_smiles, ref)
    act_gen, t_act_gen = timed(F.chemnet_activations, can_gen, canonicalize=False, batch_size=args.batch_size)
    act_ref, t_act_ref = timed(F.chemnet_activations, can_ref, canonicalize=False, batch_size=args.batch_size)

    def moments(act):
        act = act.astype(np.float64)
        return act.mean(axis=0), np.cov(act, rowvar=False)

    (stats_gen, stats_ref), t_moments = timed(lambda: (moments(act_gen), moments(act_ref)))
    ours, t_frechet = timed(F.frechet_distance, stats_gen, stats_ref)
    theirs, t_sqrtm = timed(sqrtm_frechet_distance, stats_gen, stats_ref)

    import fcd as fcd_package
    import rdkit

    load_after = os.getloadavg()[0]
    busy = max(load_before, load_after) > (os.cpu_count() or 1)

    lines = [
        f"$ {command_line(argv)}".rstrip(),
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
        f"device {device}; python {platform.python_version()}, torch {torch.__version__}, "
        f"fcd {fcd_package.__version__}, rdkit {rdkit.__version__}, numpy {np.__version__}",
        f"load average (1 min) before / after: {load_before:.2f} / {load_after:.2f}"
        + (" (above the core count: other processes were competing for the CPU)" if busy else ""),
        f"data: MOSES test SMILES [0:{args.n}] (gen) vs [{args.n}:{2 * args.n}] (ref); ChemNet batch {args.batch_size}",
        "",
        f"ChemNet load (once per process)        {t_load:8.2f} s",
        f"fcd(gen, ref_smiles=ref), whole call   {t_total:8.2f} s   FCD = {value:.4f}",
        "",
        "step by step:",
        f"  canonicalise gen / ref               {t_can_gen:8.2f} s / {t_can_ref:.2f} s",
        f"  ChemNet activations gen / ref        {t_act_gen:8.2f} s / {t_act_ref:.2f} s",
        f"  means and covariances                {t_moments:8.2f} s",
        f"  Frechet distance (eigh, molgen)      {t_frechet:8.2f} s   {ours:.6f}",
        f"  Frechet distance (scipy sqrtm route) {t_sqrtm:8.2f} s   {theirs:.6f}   "
        f"relative difference {abs(ours - theirs) / abs(theirs):.1e}",
        "",
        f"target: whole call under 120 s on 2 CPU cores -> {'met' if t_total < 120 else 'NOT met'}",
    ]
    report = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(report, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
