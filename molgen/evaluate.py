"""Command line: ``python -m molgen.evaluate FILE [--reference qm9|moses|PATH|none] [--json OUT] [--no-fcd]``.

Reads an .sdf, .xyz, .smi / .txt or .csv file of molecules, prints a table of metrics and
optionally writes them as JSON. Bad input gives one line on stderr; the exit status is non-zero
when nothing could be evaluated (1) or on Ctrl-C (130). ``--json`` never writes over the file being
evaluated or the reference file.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PROG = "molgen.evaluate"


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two paths name the same file (links and relative paths resolved)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
        return pa.resolve() == pb.resolve()
    except OSError:
        return False


def check_output(out: str, inputs: dict[str, str | None], flag: str) -> None:
    """ValueError when an output path is a folder or one of the input files."""
    if Path(out).is_dir():
        raise ValueError(f"{flag} {out} is a folder; give a file name such as {Path(out) / 'metrics.json'}")
    for what, path in inputs.items():
        if path and same_file(out, path):
            raise ValueError(f"{flag} {out} is the {what} itself; writing it would destroy it: choose another name")


def main(argv: list[str] | None = None) -> int:
    """The command; returns its exit status (Ctrl-C, also while importing, gives one line and 130)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    from .chem.io import MoleculeFileError
    from .datasets.qm9 import DataMissingError
    from .evaluation import REFERENCES, evaluate

    parser = argparse.ArgumentParser(prog=f"python -m {PROG}",
                                     description="Evaluate generated molecules (validity, uniqueness, novelty, "
                                                 "stability, FCD, MOSES / GuacaMol metrics).")
    parser.add_argument("file", help="molecules: .sdf, .xyz, .smi, .txt or .csv")
    parser.add_argument("--reference", default="none", metavar="|".join([*REFERENCES, "PATH", "none"]),
                        help="reference set for novelty, FCD and distribution metrics (default: none)")
    parser.add_argument("--json", metavar="OUT", help="also write the metrics to this JSON file")
    parser.add_argument("--no-fcd", action="store_true", help="skip the ChemNet metrics (FCD), the slow part")
    args = parser.parse_args(argv)
    try:
        if args.json:
            ref_file = args.reference if args.reference.lower() not in (*REFERENCES, "none", "") else None
            check_output(args.json, {"file evaluated": args.file, "reference file": ref_file}, "--json")
        result = evaluate(args.file, reference=args.reference, fcd=not args.no_fcd)
        print(result.table())
        if args.json:
            result.to_json(args.json)
    except (MoleculeFileError, ValueError, FileNotFoundError, DataMissingError) as err:
        text = str(err).strip().splitlines()
        print(f"{PROG}: error: {text[0] if text else err.__class__.__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
