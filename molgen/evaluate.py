"""Command line: ``python -m molgen.evaluate FILE [--reference qm9|moses|PATH|none] [--json OUT] [--no-fcd]``.

Reads an .sdf, .xyz, .smi / .txt or .csv file of molecules, prints a table of metrics and
optionally writes them as JSON. Bad input gives one line on stderr; the exit status is non-zero only
when nothing could be evaluated.
"""
from __future__ import annotations

import argparse
import sys

from .chem.io import MoleculeFileError
from .datasets.qm9 import DataMissingError
from .metrics.evaluate import REFERENCES, evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m molgen.evaluate",
                                     description="Evaluate generated molecules (validity, uniqueness, novelty, "
                                                 "stability, FCD, MOSES / GuacaMol metrics).")
    parser.add_argument("file", help="molecules: .sdf, .xyz, .smi, .txt or .csv")
    parser.add_argument("--reference", default="none", metavar="|".join([*REFERENCES, "PATH", "none"]),
                        help="reference set for novelty, FCD and distribution metrics (default: none)")
    parser.add_argument("--json", metavar="OUT", help="also write the metrics to this JSON file")
    parser.add_argument("--no-fcd", action="store_true", help="skip the ChemNet metrics (FCD), the slow part")
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.file, reference=args.reference, fcd=not args.no_fcd)
        print(result.table())
        if args.json:
            result.to_json(args.json)
    except (MoleculeFileError, ValueError, FileNotFoundError, DataMissingError) as err:
        print(f"molgen.evaluate: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
