"""Where do a model's QM9 samples fall: in the training split, in QM9's held-out splits, or outside QM9?

QM9 is the exhaustive enumeration of GDB-17 molecules with up to nine heavy atoms (C, N, O, F), and
molgen's training split holds 100,000 of its 130,831 molecules. A sampler that draws from the whole of
QM9, i.e. a perfect model of the population the data was enumerated from, therefore makes only ~24 %
"novel" molecules (those that fell into the held-out splits), and 10,000 such draws are ~96 % unique.
Novelty above that comes from molecules outside QM9's chemical space. This script prints the breakdown
for the shipped 2D models and for draws from the data itself, so that novelty and uniqueness can be read
against what the data allows:

    python -m benchmarks.studies.qm9_novelty [-n 10000] [--models ar vae] [--ar-temperatures 1.1 1.2]
                                             [--vae-prior-scales 1.5 2] [--out benchmarks/results/qm9_novelty.txt]

The extra settings show how far the sampling knobs move novelty and uniqueness (and at what cost
to fidelity, which ``molgen.evaluate`` measures).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.timing import command_line


def breakdown(smiles: list[str | None], train: set[str], held: set[str]) -> dict[str, float]:
    """Validity, uniqueness, and where the unique valid molecules fall (fractions of unique)."""
    valid = [s for s in smiles if s]
    unique = set(valid)
    n_u = max(len(unique), 1)
    in_train = sum(s in train for s in unique)
    in_held = sum(s in held and s not in train for s in unique)
    return {"n": len(smiles), "validity": len(valid) / max(len(smiles), 1), "uniqueness": len(unique) / max(len(valid), 1),
            "novelty": 1 - in_train / n_u, "in_qm9_heldout": in_held / n_u,
            "outside_qm9": (len(unique) - in_train - in_held) / n_u}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=10000)
    p.add_argument("--models", nargs="*", default=["ar", "vae"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ar-temperatures", nargs="*", type=float, default=[], help="extra AR sampling temperatures")
    p.add_argument("--vae-prior-scales", nargs="*", type=float, default=[], help="extra VAE prior scales")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    import molgen
    from molgen.chem.convert import canonicalize
    from molgen.datasets.qm9 import qm9_smiles

    def canon(split: str) -> list[str]:
        return [c for c in map(canonicalize, qm9_smiles(split)) if c]

    train_list = canon("train")
    held_list = canon("valid") + canon("test")
    train, held = set(train_list), set(held_list)
    rng = np.random.default_rng(args.seed)
    rows: list[tuple[str, dict[str, float]]] = []
    rows.append(("draws from the QM9 training split", breakdown(
        [train_list[i] for i in rng.integers(len(train_list), size=args.n)], train, held)))
    everything = train_list + held_list
    rows.append(("draws from all of QM9 (train + valid + test)", breakdown(
        [everything[i] for i in rng.integers(len(everything), size=args.n)], train, held)))
    runs: list[tuple[str, dict]] = [(name, {}) for name in args.models]
    runs += [("ar", {"temperature": t}) for t in args.ar_temperatures]
    runs += [("vae", {"prior_scale": s}) for s in args.vae_prior_scales]
    for name, kwargs in runs:
        out = molgen.load(name, dataset="qm9").sample(args.n, seed=args.seed, **kwargs)
        smiles = [canonicalize(s) if s else None for s in out.smiles]
        setting = ", ".join(f"{k} {v}" for k, v in kwargs.items()) or "default settings"
        rows.append((f"{name}-qm9 ({setting}, seed {args.seed})", breakdown(smiles, train, held)))

    lines = [f"# {command_line()}",
             f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; novelty = unique valid molecules not in the"
             " training split; the last two columns split the novel ones (fractions of unique)",
             f"# QM9 molecules: {len(train):,} train (canonical, unique), {len(held - train):,} only in valid/test",
             "", f"{'source':<58} {'valid':>7} {'unique':>7} {'novel':>7} {'heldout':>8} {'outside':>8}"]
    for name, r in rows:
        lines.append(f"{name:<58} {r['validity']:>7.2%} {r['uniqueness']:>7.2%} {r['novelty']:>7.2%} "
                     f"{r['in_qm9_heldout']:>8.2%} {r['outside_qm9']:>8.2%}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
