"""Download data that molgen does not ship: the MOSES SMILES sets and filter lists (about 90 MB).

    molgen fetch moses            # once; later runs find the files in molgen's cache
    molgen fetch moses --force    # download again

The same as ``python -m molgen.datasets.moses fetch``. QM9 comes with the ``qm9`` extra (qm9pack).
"""
from __future__ import annotations

import argparse
import zipfile

from .common import parser

DATASETS = ("moses",)


def build_parser() -> argparse.ArgumentParser:
    p = parser("molgen fetch", __doc__)
    p.add_argument("dataset", choices=DATASETS, help="what to download")
    p.add_argument("--force", action="store_true", help="download again even if present")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..datasets.moses import SPLITS, fetch

    try:
        folder = fetch(force=args.force)
    except (zipfile.BadZipFile, KeyError) as exc:  # a damaged or unexpected wheel
        raise RuntimeError(f"the downloaded molsets wheel is unusable: {exc}") from None
    print(f"MOSES files in {folder}: {', '.join(SPLITS)} and the filter lists")
    return 0
