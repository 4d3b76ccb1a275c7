"""Can the host feed a GPU with the graph VAE's MOSES batches? (issue 16: "the GPU should be the bottleneck,
not the host").

    python -m benchmarks.studies.bench_vae_feed [--batch-size 512] [--batches 60] [--train-steps 5]
        [--out benchmarks/results/bench_vae_feed_cpu.txt]

The trainer builds each batch on the host (:func:`molgen.models.vae.graphs.collate` of the featurised table:
the PyG-style encoder graph and the padded decoder targets) while the GPU runs the previous step's kernels,
so a step costs about the larger of the two. This measures, on one CPU thread:

- building batches of ``--batch-size`` random MOSES training molecules from the cached featurisation (the
  table that ``molgen train --model vae --dataset moses`` reads, or that ``--encoded-data`` unpacks on a bare
  GPU machine): batches/s and molecules/s, medians over ``--batches``;
- loading that table from the featurisation cache (what a training run pays once; featurising the 1.58 M
  SMILES from scratch takes about 25 minutes on this CPU and is cached by content);
- the shipped ``vae-moses`` training step (forward and backward) on this CPU at the same batch, fp32, for
  scale: the CPU trains far slower than it feeds.

It needs the MOSES files (``python -m molgen.datasets.moses fetch``) and featurises the training split on
first use.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.studies import RESULTS
from benchmarks.timing import command_line, machine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--batches", type=int, default=60, help="timed batch builds (after 5 untimed)")
    p.add_argument("--train-steps", type=int, default=5, help="timed CPU training steps (after 1; 0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "bench_vae_feed_cpu.txt"))
    args = p.parse_args()
    if args.batch_size < 1 or args.batches < 1 or args.train_steps < 0:
        raise SystemExit("error: --batch-size and --batches must be positive, --train-steps at least 0")
    torch.set_num_threads(1)

    from molgen._cache import digest_strings
    from molgen.models import load
    from molgen.models.vae.featurization import cached_scan
    from molgen.models.vae.table import GraphTable
    from molgen.training.vae import atom_vocabulary, dataset_split_smiles

    model = load("vae", dataset="moses")
    train, _ = dataset_split_smiles("moses")
    digest = digest_strings(train)
    counts, largest = cached_scan("moses-train", train, digest=digest)
    tokens = atom_vocabulary(counts)
    if tuple(tokens) != tuple(model.atom_types):
        raise SystemExit("error: the MOSES training split's vocabulary differs from the shipped vae-moses'")
    t0 = time.perf_counter()
    table = GraphTable.cached("moses-train", train, tokens, largest, digest=digest, progress=False)
    load_s = time.perf_counter() - t0
    rows = np.flatnonzero(table.status == 1)

    rng = np.random.default_rng(args.seed)
    picks = [rng.choice(rows, args.batch_size, replace=False) for _ in range(args.batches + 5)]
    build = []
    for i, idx in enumerate(picks):
        t0 = time.perf_counter()
        table.batch(np.sort(idx))
        if i >= 5:
            build.append(time.perf_counter() - t0)
    build_s = statistics.median(build)

    lines = [f"command: {command_line()}", f"machine: {machine()}",
             f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"MOSES train: {len(train):,} molecules, {rows.size:,} featurised and representable "
             f"(max {table.max_atoms} atoms); vocabulary of {len(tokens)} tokens",
             f"table loaded from the featurisation cache in {load_s:.1f} s (one thread)",
             f"batch building, {args.batch_size} random molecules, one thread: {1e3 * build_s:.1f} ms per batch "
             f"(median of {len(build)}), {1 / build_s:.1f} batches/s, {args.batch_size / build_s:,.0f} molecules/s"]
    if args.train_steps:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        steps = []
        for i in range(args.train_steps + 1):
            batch = table.batch(np.sort(picks[i % len(picks)]))
            t0 = time.perf_counter()
            loss, _ = model.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i:
                steps.append(time.perf_counter() - t0)
        step_s = statistics.median(steps)
        n_params = sum(p.numel() for p in model.parameters())
        lines.append(f"vae-moses training step ({n_params / 1e6:.2f} M parameters), batch {args.batch_size}, fp32, "
                     f"one thread: {step_s:.2f} s (median of {len(steps)}), {args.batch_size / step_s:,.0f} "
                     f"molecules/s; batch building is {100 * build_s / step_s:.2f} % of it")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
