"""What a device call would send: the working tree that travels (tracked files, untracked files git does
not ignore) plus the carried paths, against the 64 MiB limit. Run it before every GPU burst:

    python -m benchmarks.gpu_burst.travel_size --carry .devcarry

It prints the total and the largest files, and exits 1 when the total is over the limit (the device
call would be refused) or a carried path is missing.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

LIMIT_BYTES = 64 * 2 ** 20


def travelling_files(root: Path) -> list[Path]:
    """Tracked files that exist, and untracked files that git does not ignore."""
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout
    names = sorted({n for n in out.decode().split("\0") if n})
    return [root / n for n in names if (root / n).is_file()]


def carried_files(root: Path, carry: list[str]) -> list[Path]:
    files = []
    for item in carry:
        p = root / item
        if not p.exists():
            raise SystemExit(f"error: carried path {item} does not exist")
        files += [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_burst.travel_size", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--carry", action="append", default=[], help="a carried (ignored) path; repeat for more")
    p.add_argument("--root", default=".", help="repository root (default: .)")
    p.add_argument("--top", type=int, default=8, help="list this many of the largest files")
    args = p.parse_args(argv)
    root = Path(args.root).resolve()
    try:
        tree = travelling_files(root)
    except (OSError, subprocess.CalledProcessError):
        print(f"error: {root} is not a git checkout", file=sys.stderr)
        return 1
    files = tree + carried_files(root, args.carry)
    sizes = sorted(((f.stat().st_size, f) for f in files), reverse=True)
    total = sum(s for s, _ in sizes)
    tree_bytes = sum(f.stat().st_size for f in tree)
    for size, f in sizes[:args.top]:
        print(f"{size / 2 ** 20:8.2f} MiB  {f.relative_to(root)}")
    verdict = "fits" if total <= LIMIT_BYTES else "is OVER"
    print(f"tree {tree_bytes / 2 ** 20:.2f} MiB + carried {(total - tree_bytes) / 2 ** 20:.2f} MiB = "
          f"{total / 2 ** 20:.2f} MiB: {verdict} the {LIMIT_BYTES // 2 ** 20} MiB limit "
          f"({(LIMIT_BYTES - total) / 2 ** 20:+.2f} MiB)")
    return 0 if total <= LIMIT_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
