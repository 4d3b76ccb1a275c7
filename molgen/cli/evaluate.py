"""Evaluate generated molecules (validity, uniqueness, novelty, stability, FCD, MOSES / GuacaMol metrics).

    molgen evaluate samples.sdf
    molgen evaluate samples.smi --reference moses --json metrics.json

Reads an .sdf, .xyz, .smi / .txt or .csv file of molecules (gzipped too), prints a table of metrics
and optionally writes them as JSON. ``--json`` never writes over the file being evaluated or the
reference file. The metrics are those of :func:`molgen.evaluate` on the same file.
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
    p.add_argument("--no-fcd", action="store_true", help="skip the ChemNet metrics (FCD), the slow part")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..evaluation import REFERENCES, evaluate
    from .common import check_output_file

    if args.json:
        ref_file = args.reference if args.reference.lower() not in (*REFERENCES, "none", "") else None
        check_output_file(args.json, "--json", inputs={"file evaluated": args.file, "reference file": ref_file},
                          creates_folders=True)
    result = evaluate(args.file, reference=args.reference, fcd=not args.no_fcd)
    print(result.table())
    if args.json:
        result.to_json(args.json)
    return 0
