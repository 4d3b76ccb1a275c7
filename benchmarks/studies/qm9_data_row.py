"""Reproduce EDM's "QM9 data" row with molgen: write the QM9 test split to SDF and XYZ, evaluate both
files with ``python -m molgen.evaluate --reference qm9``, and save the commands and their output.

    python -m benchmarks.studies.qm9_data_row [--out-dir /tmp] [--no-fcd]

Writes ``benchmarks/results/qm9_test_data_row.txt``. EDM (Hoogeboom et al. 2022, Table 2) reports
atom stability 99.0 %, molecule stability 95.2 %, validity 97.7 % for the QM9 data itself.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from molgen.datasets.qm9 import indices, load_qm9_arrays
from molgen.samples import SampleSet

from benchmarks.studies import RESULTS as RESULTS_DIR
from benchmarks.timing import command_line, timed

RESULTS = RESULTS_DIR / "qm9_test_data_row.txt"
EDM_ROW = "EDM paper, Table 2, 'QM9 data': atom stability 99.0 %, molecule stability 95.2 %, validity 97.7 %"


def write_test_split(out_dir: Path) -> tuple[Path, Path]:
    """The QM9 test split (13,083 molecules, DFT coordinates in Angstrom) as SDF and XYZ files."""
    arrays = load_qm9_arrays()
    idx = indices("test")
    zs, xs = zip(*(arrays.molecule(i) for i in idx))
    samples = SampleSet.from_3d(zs, xs)
    return samples.to_sdf(out_dir / "qm9_test.sdf"), samples.to_xyz(out_dir / "qm9_test.xyz")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default="/tmp", type=Path, help="where to write the SDF and XYZ files")
    parser.add_argument("--no-fcd", action="store_true", help="skip FCD (faster)")
    args = parser.parse_args()
    sdf, xyz = write_test_split(args.out_dir)
    report = [f"# {EDM_ROW}", f"# produced by: {command_line()}",
              f"# CPU cores: {os.cpu_count()}", ""]
    for path in (sdf, xyz):
        cmd = ["python", "-m", "molgen.evaluate", str(path), "--reference", "qm9", *(["--no-fcd"] if args.no_fcd else [])]
        proc, seconds = timed(subprocess.run, [sys.executable, *cmd[1:]], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        report += [f"$ {' '.join(cmd)}", proc.stdout.rstrip(), f"# wall time {seconds:.1f} s", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(report))
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
