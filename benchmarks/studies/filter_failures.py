"""Which of MOSES' filter rules do a model's samples break? (the Filters column, broken down)

MOSES' Filters is the fraction of valid samples that pass the rules its data was built with: no ring
of 8 or more atoms, no formal charge, only C N S O F Cl Br H, and none of the MCF and PAINS structural
alerts (:func:`molgen.metrics.moses.filter_failure` names the first rule a molecule breaks). This
script counts the failures by rule for the shipped MOSES models and, as a control, for MOSES' own
test molecules, so that one can see what a better model has to stop doing:

    python -m benchmarks.studies.filter_failures [-n 10000] [--models ar vae] [--seed 0] [--top 12]
        [--max-ring-size K] [--fcd] [--out FILE]

Every row counts valid molecules only, as MOSES does. ``--max-ring-size K`` adds a row per model for
the same weights decoded with the ring-size limit (``max_ring_size`` in the model's config: no ring
closure makes a ring of more than K atoms); ``--fcd`` adds validity, uniqueness, novelty and FCD, SNN
and Scaf against MOSES' Test set (molgen.evaluate) to every model row.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.timing import command_line, machine, timed


def rule_of(reason: str) -> str:
    """The rule family of a failure reason: ``ring of 8+ atoms``, ``MCF``, ``PAINS`` and so on."""
    if reason.startswith("ring of "):
        return "ring of 8+ atoms"
    return reason.split(" ")[0] if reason.startswith(("MCF ", "PAINS ", "atom ")) else reason


def failures(smiles: list[str]) -> tuple[int, Counter[str]]:
    """(valid molecules, failure reasons counted) for RDKit-parsable ``smiles``."""
    from rdkit import Chem

    from molgen.metrics.moses import filter_failure

    mols = [m for m in map(Chem.MolFromSmiles, smiles) if m is not None]
    return len(mols), Counter(r for r in map(filter_failure, mols) if r is not None)


def report(name: str, n_valid: int, reasons: Counter[str], top: int) -> list[str]:
    failed = sum(reasons.values())
    lines = [f"{name}: {n_valid:,} valid molecules, Filters {1 - failed / max(n_valid, 1):.4f} "
             f"({failed:,} fail)"]
    rules = Counter()
    for reason, count in reasons.items():
        rules[rule_of(reason)] += count
    for rule, count in rules.most_common():
        lines.append(f"  {rule:<24} {count:>6,}  {count / max(n_valid, 1):7.2%} of valid")
    if reasons:
        lines.append(f"  most frequent reasons (top {top}):")
        for reason, count in reasons.most_common(top):
            lines.append(f"    {reason:<40} {count:>6,}")
    return lines


def with_ring_limit(name: str, limit: int, folder: Path) -> Path:
    """A checkpoint folder with the shipped ``<name>-moses`` weights and ``max_ring_size = limit``."""
    from molgen.models.base import pretrained_path

    shipped = pretrained_path(name, "moses")
    folder.mkdir(parents=True, exist_ok=True)
    for path in shipped.iterdir():
        if path.name != "config.json":
            os.symlink(path.resolve(), folder / path.name)
    info = json.loads((shipped / "config.json").read_text())
    info["config"]["max_ring_size"] = limit
    (folder / "config.json").write_text(json.dumps(info, indent=2) + "\n")
    return folder


def quality(out: object) -> str:
    """One line of MOSES metrics for a SampleSet, against the Test set."""
    import molgen

    m = molgen.evaluate(out, reference="moses").metrics
    keys = ("validity", "uniqueness", "novelty", "fcd", "snn", "scaf")
    return "  " + ", ".join(f"{k} {m[k]:.4f}" for k in keys if k in m)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=10000, help="samples per model, and test molecules for the control row")
    p.add_argument("--models", nargs="*", default=["ar", "vae"], choices=["ar", "vae"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=12, help="most frequent single reasons listed per row")
    p.add_argument("--max-ring-size", type=int, default=None, metavar="K",
                   help="also decode each model with rings of at most K atoms (K >= 3)")
    p.add_argument("--fcd", action="store_true", help="add MOSES metrics against Test to every model row")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.n < 1 or args.top < 0:
        p.error("-n must be >= 1 and --top >= 0")
    if args.max_ring_size is not None and args.max_ring_size < 3:
        p.error("--max-ring-size must be >= 3")

    import molgen
    from molgen.chem.files import write_atomic
    from molgen.datasets.moses import load_moses

    lines = [f"# {command_line()}",
             f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}",
             "# failures of MOSES' filter rules among valid molecules; each molecule is counted once, under the",
             "# first rule it breaks, in the order ring >= 8 atoms, formal charge, atom type, MCF, PAINS", ""]
    test = list(load_moses("test")[: args.n])
    lines += report(f"MOSES test set (first {len(test):,})", *failures(test), args.top) + [""]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for limit in (None,) if args.max_ring_size is None else (None, args.max_ring_size):
                if limit is None:
                    model, how = molgen.load(name, dataset="moses"), "default settings"
                else:
                    folder = with_ring_limit(name, limit, Path(tmp) / f"{name}-{limit}")
                    model, how = molgen.load(name, checkpoint=folder), f"max_ring_size {limit}"
                out, seconds = timed(model.sample, args.n, seed=args.seed)
                smiles = [s for s in out.smiles if s]
                lines += report(f"{name}-moses ({args.n:,} samples, seed {args.seed}, {how}, "
                                f"{seconds:.0f} s)", *failures(smiles), args.top)
                lines += ([quality(out)] if args.fcd else []) + [""]
    text = "\n".join(lines).rstrip() + "\n"
    print(text, end="")
    if args.out:
        write_atomic(args.out, [text])


if __name__ == "__main__":
    main()
