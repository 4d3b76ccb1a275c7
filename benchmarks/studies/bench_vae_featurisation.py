"""The VAE's training data path on MOSES: featurisation cache build and load, batches and steps.

    python -m benchmarks.studies.bench_vae_featurisation -n 100000 --steps 3 \
        --out benchmarks/results/bench_vae_featurisation.txt

On the first ``n`` MOSES training SMILES, with the shipped vae-moses vocabulary and size limit:

- cache: building ``GraphTable.cached`` in a fresh cache folder (every core), then loading it again;
- batches: seconds to cut a batch of ``--batch`` random molecules from the table (from the cached
  arrays; or, for code without the cache, featurising them on demand as the old lazy table did);
- steps: a full training step (batch, loss, backward, AdamW) of the vae-moses network at that batch
  size, random weights.

Run it once per code version (``PYTHONPATH=<checkout>``) with ``--append`` to compare before and after.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.timing import Stopwatch, command_line, cpu_name, timed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=100_000, help="MOSES training molecules (default: 100000)")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--batches", type=int, default=20, help="batches timed (default: 20)")
    p.add_argument("--steps", type=int, default=3, help="training steps timed (default: 3)")
    p.add_argument("--out", default=None, help="append the report to this file")
    p.add_argument("--label", default=None, help="what code this is (default: git describe)")
    args = p.parse_args(argv)
    for name in ("n", "batch", "batches"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name} must be >= 1")

    import molgen
    from molgen.datasets import dataset_smiles
    from molgen.models.vae import featurization as vae_data
    from molgen.models.vae import GraphVAE, GraphTable

    root = Path(molgen.__file__).resolve().parent
    label = args.label or os.popen(f"git -C {root} log -1 --format='%h %s' 2>/dev/null").read().strip()[:90]
    cfg = json.loads((root / "pretrained" / "vae-moses" / "config.json").read_text())["config"]
    smiles, load_csv = timed(dataset_smiles, "moses", "train")
    smiles = smiles[:args.n]
    tokens, max_atoms = cfg["atom_types"], cfg["max_atoms"]
    lines = [f"# {command_line(argv)}", f"# code: {label} ({root})",
             f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_name()} "
             f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}), torch {torch.__version__}, "
             f"{torch.get_num_threads()} CPU threads",
             f"{len(smiles):,} MOSES train SMILES (first n; the CSV of 1.58 M read in {load_csv:.1f} s), "
             f"vocabulary {tokens}, max_atoms {max_atoms}"]
    rng = np.random.default_rng(0)
    has_cache = hasattr(GraphTable, "cached")
    # CPU time per molecule, in this process: robust to other jobs sharing the cores
    probe = smiles[:min(2000, len(smiles))]
    with Stopwatch() as clock:
        for x in probe:
            vae_data.featurize(x, tokens, max_atoms, max_atoms + 8)
    cpu_ms = 1e3 * clock.cpu_seconds / len(probe)
    lines.append(f"featurize: {cpu_ms:.2f} CPU-ms per molecule ({len(probe)} molecules in this process); "
                 f"1.58 M = {1_584_663 * cpu_ms / 1e3 / 60:.0f} CPU-minutes")
    if has_cache:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["MOLGEN_CACHE"] = tmp
            workers = vae_data.build_workers()
            _, build = timed(GraphTable.cached, "bench", smiles, tokens, max_atoms, workers=workers, verbose=False)
            size = sum(f.stat().st_size for f in Path(tmp, "vae").glob("*.npz"))
            with Stopwatch() as clock:
                table = GraphTable.cached("bench", smiles, tokens, max_atoms, progress=False, verbose=False)
            load, load_cpu = clock.seconds, clock.cpu_seconds
        scale = 1_584_663 / len(smiles)
        lines.append(f"cache build ({workers} worker processes): {build:.1f} s = {len(smiles) / build:,.0f} mol/s "
                     f"(1.58 M extrapolated: {build * scale / 60:.1f} min); file {size / 2**20:.1f} MiB "
                     f"(1.58 M: {size * scale / 2**30:.2f} GiB)")
        lines.append(f"cache load: {load:.2f} s wall, {load_cpu:.2f} s CPU (1.58 M extrapolated: {load * scale:.1f} s "
                     f"wall, {load_cpu * scale:.1f} s CPU); "
                     f"{len(table.reasons)} molecules not representable")
    else:
        table = GraphTable(smiles, tokens, max_atoms)  # the old lazy table: featurised on demand
        lines.append("no featurisation cache in this code: every training run featurises its molecules afresh")

    times, cpu = [], []
    for _ in range(args.batches):
        idx = rng.choice(len(table), args.batch, replace=False)
        with Stopwatch() as clock:
            table.batch(idx)
        times.append(clock.seconds)
        cpu.append(clock.cpu_seconds)
    per = float(np.median(times))
    what = "cut from cached arrays" if has_cache else "featurised on demand in the training process"
    lines.append(f"batch of {args.batch} ({what}): median {per * 1e3:.1f} ms over {args.batches} "
                 f"= {1 / per:.1f} batches/s from one core ({1e3 * float(np.median(cpu)):.1f} CPU-ms per batch)")
    if not has_cache:
        lines.append(f"  = {args.batch / per:,.0f} mol/s featurised per core; 1.58 M per run on 8 cores: "
                     f"{1_584_663 / (8 * args.batch / per) / 60:.1f} min (every run)")

    if args.steps > 0:
        torch.manual_seed(0)
        model = GraphVAE(**cfg)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        if not has_cache and hasattr(table, "prefetch"):  # as the old training_setup: background workers
            table.prefetch(vae_data.default_workers())
        step_times, data_times, cpu_times = [], [], []
        for _ in range(args.steps):
            idx = rng.choice(len(table), args.batch, replace=False)
            with Stopwatch() as clock:
                batch, data_seconds = timed(table.batch, idx)
                loss, _ = model.loss(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            step_times.append(clock.seconds)
            cpu_times.append(clock.cpu_seconds)
            data_times.append(data_seconds)
        st, dt = float(np.median(step_times)), float(np.median(data_times))
        lines.append(f"training step, vae-moses network, batch {args.batch}: median {st:.1f} s "
                     f"({1 / st:.3f} steps/s) over {args.steps}, of which data {dt:.2f} s "
                     f"({100 * dt / st:.0f} %); {float(np.median(cpu_times)):.1f} CPU-s per step")
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.out:
        with open(args.out, "a") as f:
            f.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
