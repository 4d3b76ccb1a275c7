"""Scaffold-constrained generation with the shipped MOSES graph models (issue 15's acceptance check).

For each scaffold (benzene, pyridine, indole, piperidine, a bicyclic common in MOSES test, and a
decoration case with ``*`` attachment points), each model and each scaffold method (``auto``: filter
the model's unconstrained samples, decode the rest past the budget; ``decode``: constrained decode
only), draw ``n`` samples with ``model.sample(n, seed=..., scaffold=..., scaffold_method=...)`` and
report validity, scaffold presence (:func:`molgen.chem.scaffold.contains`), uniqueness and novelty
(the evaluation path's :func:`molgen.metrics.core.graph_metrics` against the MOSES training set), FCD
against the MOSES test molecules that hold the scaffold, the stage counts from ``info`` (redrawn and
still missing in the decode stage; filtered, decoded, unconstrained draws and their acceptance rate)
and the sampling speed:

    python -m benchmarks.studies.scaffold_generation [-n 1000] [--models ar vae] [--methods auto decode]
                                                     [--scaffolds ...] [--seed 0]
                                                     [--out benchmarks/results/scaffold_generation.txt]

The FCD reference of a scaffold is the test molecules that hold it, less a seeded draw of ``n`` of
them, capped at a seeded draw of ``--ref-cap`` (10,000). The held-out draw gives the reference row:
its FCD against the same reference is what a perfect model would reach at this ``n`` (FCD grows as
the sample shrinks), so a model's FCD reads against that floor, not against 0.

A scaffold with ``*`` points also gets the "as marked" column: the fraction of samples that hold it
by the marked rule of :func:`molgen.chem.scaffold.holds` (substituents exactly at the ``*``); its test
molecules are those that hold it in that sense.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from rdkit import Chem

from benchmarks.timing import command_line, machine, timed

#: benzene, pyridine, indole, piperidine, benzimidazole (the bicyclic: 4,185 MOSES test molecules hold it, against
#: 2,303 for tetrahydroisoquinoline c1ccc2c(c1)CCNC2), para-disubstituted benzene
SCAFFOLDS = ("c1ccccc1", "c1ccncc1", "c1ccc2[nH]ccc2c1", "C1CCNCC1", "c1ccc2[nH]cnc2c1", "*c1ccc(*)cc1")


def holder_test(text: str) -> Callable[[Chem.Mol | None], bool]:
    """Whether a molecule holds the scaffold (:func:`molgen.chem.scaffold.holds`: for ``*`` scaffolds as marked)."""
    from molgen.chem.scaffold import holds, parse_scaffold

    scaffold = parse_scaffold(text)
    return lambda m: m is not None and holds(m, scaffold)


def split_reference(holders: Sequence[str], n_floor: int, cap: int, seed: int) -> tuple[list[str], list[str]]:
    """A seeded draw of ``n_floor`` holders (at most half of them) and the rest, capped at ``cap``."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(holders))
    k = min(n_floor, len(holders) // 2)
    rest = order[k:][:cap]
    return [holders[i] for i in order[:k]], [holders[i] for i in rest]


def model_row(out, seconds: float, text: str, training: frozenset[str], ref_stats) -> dict[str, object]:
    """The numbers of one (model, scaffold, method) draw: a SampleSet and the seconds it took."""
    from molgen.chem.scaffold import contains, holds, parse_scaffold
    from molgen.metrics.core import graph_metrics
    from molgen.metrics.fcd import frechet_distance, chemnet_stats

    scaffold = parse_scaffold(text)
    valid = [m for m in out.mols if m is not None]
    row = dict(graph_metrics(out.mols, out.smiles, training))
    info = out.info
    row.update(n=len(out), present=sum(contains(m, scaffold) for m in valid) / max(len(out), 1),
               marked=sum(holds(m, scaffold) for m in valid) / max(len(out), 1) if scaffold.marked else None,
               fcd=frechet_distance(chemnet_stats(valid), ref_stats) if len(valid) > 1 else float("nan"),
               redrawn=info.get("scaffold_redrawn"), missing=info.get("scaffold_missing"),
               per_second=len(out) / seconds if seconds > 0 else float("nan"),
               method=info.get("scaffold_method", "-"), filtered=info.get("scaffold_filtered", "-"),
               decoded=info.get("scaffold_decoded", "-"), drawn=info.get("scaffold_drawn", "-"),
               acceptance=info.get("scaffold_acceptance"))
    return row


def _pct(x: object) -> str:
    return "-" if x is None else f"{x:.2%}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=1000, help="samples per (model, scaffold)")
    p.add_argument("--models", nargs="*", default=["ar", "vae"], help="shipped models, loaded as <name>-moses")
    p.add_argument("--methods", nargs="*", default=["auto", "decode"], help="scaffold methods, one row each")
    p.add_argument("--scaffolds", nargs="*", default=list(SCAFFOLDS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ref-cap", type=int, default=10_000, help="largest FCD reference (a seeded draw)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import molgen
    from molgen.chem.convert import to_mol
    from molgen.metrics.fcd import chemnet_stats, frechet_distance
    from molgen.references import resolve, training_smiles

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = [f"# {command_line(argv)}", f"# {machine()}", f"# {started}; seed {args.seed}"]
    test = resolve("moses").comparison
    training = training_smiles("moses")
    (test_mols, parse_s) = timed(lambda: [to_mol(s) for s in test])
    print(f"MOSES test: {len(test):,} SMILES parsed in {parse_s:.0f} s", flush=True)

    refs, stats = [], {}
    for text in args.scaffolds:
        holds = holder_test(text)
        holders = [s for s, m in zip(test, test_mols) if holds(m)]
        draw, rest = split_reference(holders, args.n, args.ref_cap, args.seed)
        ref_stats = chemnet_stats(rest)
        floor = frechet_distance(chemnet_stats(draw), ref_stats) if len(draw) > 1 else float("nan")
        stats[text] = ref_stats
        refs.append((text, len(holders), len(draw), len(rest), floor))
        print(f"{text}: {len(holders):,} test molecules hold it; floor FCD {floor:.3f} "
              f"({len(draw)} vs {len(rest)})", flush=True)
    del test_mols

    models = {name: molgen.load(f"{name}-moses") for name in args.models}
    rows, sampling = [], 0.0
    for text in args.scaffolds:  # scaffold-major: a run cut short has every model and method on its first scaffolds
        for name, model in models.items():
            for method in args.methods:
                out, seconds = timed(model.sample, args.n, seed=args.seed, scaffold=text, scaffold_method=method)
                row = model_row(out, seconds, text, training, stats[text])
                sampling += seconds
                rows.append((f"{name}-moses", text, row))
                print(f"{name}-moses {text} {method}: valid {row['validity']:.2%}, scaffold {row['present']:.2%}, "
                      f"unique {row['uniqueness']:.2%}, novel {row['novelty']:.2%}, FCD {row['fcd']:.3f}, "
                      f"{row['filtered']} filtered of {row['drawn']} drawn, {row['per_second']:.1f} mol/s", flush=True)
                if args.out:  # the table so far, so that an interrupted run leaves its finished rows
                    Path(args.out).write_text(render(header, len(test), args.ref_cap, refs, rows))
    header.append(f"# finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                  f"{sampling:.0f} s of sampling in all (the rows' draws)")
    text_out = render(header, len(test), args.ref_cap, refs, rows)
    print(text_out, end="")
    if args.out:
        Path(args.out).write_text(text_out)


def render(header: list[str], n_test: int, ref_cap: int, refs: list[tuple], rows: list[tuple]) -> str:
    """The results file: the header, the reference rows and the model rows finished so far."""
    lines = header + [
        f"# MOSES test: {n_test:,} molecules. Presence = molgen.chem.scaffold.contains (RDKit substructure"
        " match); 'marked' (only '*' scaffolds) = molgen.chem.scaffold.holds, substituents exactly at the '*'.",
        "# method: auto = unconstrained samples that hold the scaffold (filtered), the rest past the draw budget"
        " decoded on the scaffold; decode = constrained decode only. accept = filtered-stage acceptance rate.",
        f"# FCD reference per scaffold: the test molecules that hold it, less the floor draw, capped at a seeded"
        f" {ref_cap:,} draw; uniqueness of valid; novelty = unique valid not in MOSES train.",
        "", "reference rows (MOSES test)",
        f"{'scaffold':<20} {'holders':>8} {'of test':>8} {'FCD ref':>8} {'floor n':>8} {'floor FCD':>10}"]
    for text, k, k_draw, k_rest, floor in refs:
        lines.append(f"{text:<20} {k:>8,} {k / n_test:>8.2%} {k_rest:>8,} {k_draw:>8,} {floor:>10.3f}")
    lines += ["", "model rows",
              f"{'model':<10} {'scaffold':<20} {'n':>5} {'valid':>8} {'scaffold':>8} {'marked':>8} {'unique':>8} "
              f"{'novel':>8} {'FCD':>7} {'redrawn':>8} {'missing':>8} {'mol/s':>7} {'method':>7} {'filtered':>8} "
              f"{'decoded':>8} {'drawn':>7} {'accept':>7}"]
    for model_name, text, r in rows:
        lines.append(f"{model_name:<10} {text:<20} {r['n']:>5} {_pct(r['validity']):>8} {_pct(r['present']):>8} "
                     f"{_pct(r['marked']):>8} {_pct(r['uniqueness']):>8} {_pct(r['novelty']):>8} {r['fcd']:>7.3f} "
                     f"{r['redrawn']!s:>8} {r['missing']!s:>8} {r['per_second']:>7.1f} {r['method']:>7} {r['filtered']!s:>8} "
                     f"{r['decoded']!s:>8} {r['drawn']!s:>7} {_pct(r['acceptance']):>7}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
