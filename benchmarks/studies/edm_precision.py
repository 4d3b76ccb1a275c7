"""EDM sampled in float32 and with the network under bfloat16 autocast (``sample(precision="bf16")``),
at equal seeds, each evaluated with molgen.evaluate against QM9: atom and molecule stability,
validity, uniqueness and novelty side by side, with the wall and CPU seconds of sampling. Nothing is
written into the checkpoint's model card.

    OMP_NUM_THREADS=1 python -m benchmarks.studies.edm_precision -n 1000 --out benchmarks/results/edm_bf16_quality_cpu.txt

bf16 needs CUDA or a CPU with bfloat16 instructions (AVX512-BF16 or AMX); elsewhere it is refused.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.timing import Stopwatch, command_line, machine

ROWS = (("atom stability", "atom_stability"), ("molecule stability", "molecule_stability"),
        ("validity", "validity"), ("valid and unique", "valid_and_unique"), ("novelty", "novelty"))
PER_MOLECULE = ("molecule_stability", "validity", "valid_and_unique")  # fractions of all n samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.studies.edm_precision", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=1000, help="molecules per precision (default: 1000)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precisions", default="fp32,bf16", help="comma-separated, among fp32 and bf16")
    p.add_argument("--checkpoint", default=None, help="default: the shipped edm-qm9")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="also write the report to this file")
    args = p.parse_args(argv)

    import molgen

    model = molgen.load("edm", checkpoint=args.checkpoint, device=args.device)
    steps = args.steps or model.default_sampling_steps
    lines = [f"command: {command_line(argv)}", f"machine: {machine(args.device)}",
             f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"{args.n} molecules per precision, seed {args.seed}, {steps} steps, checkpoint "
             f"{args.checkpoint or 'edm-qm9 (shipped)'}, molgen.evaluate(reference='qm9', fcd=False)", ""]
    print("\n".join(lines), flush=True)
    results = {}
    for precision in [s for s in args.precisions.split(",") if s]:
        with Stopwatch(args.device) as clock:
            out = model.sample(args.n, seed=args.seed, steps=args.steps, precision=precision)
        metrics = molgen.evaluate(out, reference="qm9", fcd=False).as_dict()["metrics"]
        results[precision] = (metrics, clock.seconds, clock.cpu_seconds)
        print(f"{precision}: sampled in {clock.seconds:.1f} s wall, {clock.cpu_seconds:.1f} s CPU; "
              + ", ".join(f"{key} {metrics.get(key)}" for _, key in ROWS), flush=True)
    names = list(results)
    table = [f"{'':<24}" + "".join(f"{n:>10}" for n in names),
             f"{'sampling wall s':<24}" + "".join(f"{results[n][1]:10.1f}" for n in names),
             f"{'sampling CPU s':<24}" + "".join(f"{results[n][2]:10.1f}" for n in names)]
    for label, key in ROWS:
        cells = [results[n][0].get(key) for n in names]
        row = f"{label + ' %':<24}" + "".join(f"{100 * c:10.2f}" if c is not None else f"{'n/a':>10}" for c in cells)
        if key in PER_MOLECULE and cells[0] is not None:  # a fraction of the n molecules: its binomial s.e.
            row += f"   (s.e. of {names[0]} {100 * (cells[0] * (1 - cells[0]) / args.n) ** 0.5:.2f})"
        table.append(row)
    lines += table
    print("\n".join(table))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
