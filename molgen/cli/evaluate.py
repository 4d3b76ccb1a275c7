"""Evaluate generated molecules (validity, uniqueness, novelty, stability, FCD, MOSES / GuacaMol metrics).

    molgen evaluate samples.sdf
    molgen evaluate samples.smi --reference moses --json metrics.json
    molgen evaluate samples.sdf --per-molecule molecules.csv

Reads an .sdf, .xyz, .smi / .txt or .csv file of molecules (gzipped too), prints a table of metrics
and optionally writes them as JSON, and one row per molecule as CSV (``--per-molecule``: index,
smiles, valid, connected, stable, QED, SA, logP, weight, novel, reason). Neither output ever writes
over the file being evaluated or the reference file. The metrics are those of :func:`molgen.evaluate`
on the same file. The first use of a reference builds its statistics (minutes for MOSES), with
progress bars on stderr when it is a terminal (``--no-progress``: none).
"""
from __future__ import annotations

import argparse

from .common import parser


def build_parser() -> argparse.ArgumentParser:
    from ..references import REFERENCES

    p = parser("molgen evaluate", __doc__)
    p.add_argument("file", help="molecules: .sdf, .xyz, .smi, .txt or .csv")
    p.add_argument("--reference", default="none", metavar="|".join([*REFERENCES, "PATH", "none"]),
                   help="reference set for novelty, FCD and distribution metrics (default: none)")
    p.add_argument("--json", metavar="OUT", help="also write the metrics to this JSON file")
    p.add_argument("--per-molecule", metavar="CSV", help="also write one row per molecule to this CSV file")
    p.add_argument("--no-fcd", action="store_true", help="skip the ChemNet metrics (FCD), the slow part")
    p.add_argument("--no-progress", action="store_true", help="no progress bars while reference statistics are built")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..evaluation import REFERENCES, evaluate
    from .common import check_output_file, same_file

    ref_file = args.reference if args.reference.lower() not in (*REFERENCES, "none", "") else None
    inputs = {"file evaluated": args.file, "reference file": ref_file}
    for flag, out, suffixes in (("--json", args.json, None), ("--per-molecule", args.per_molecule, (".csv",))):
        if out:
            check_output_file(out, flag, suffixes, inputs=inputs, creates_folders=True)
    if args.json and args.per_molecule and same_file(args.json, args.per_molecule):
        raise ValueError(f"--json and --per-molecule name the same file {args.json}: give two names")
    result = evaluate(args.file, reference=args.reference, fcd=not args.no_fcd,
                      progress=False if args.no_progress else None, per_molecule=bool(args.per_molecule))
    print(result.table())
    if args.json:
        result.to_json(args.json)
    if args.per_molecule:
        result.per_molecule_csv(args.per_molecule)
    return 0
