"""QM9 packed small enough to travel to a GPU machine, and unpacked there into molgen's cache.

    python -m benchmarks.gpu_burst.qm9_travel pack .devcarry/qm9_travel.npz      # here (needs qm9pack)
    python -m benchmarks.gpu_burst.qm9_travel unpack .devcarry/qm9_travel.npz    # there (needs numpy only)

The GPU machine has no qm9pack (224 MB) and the working tree that travels is limited to 64 MiB, so
coordinates go as int16 milli-Angstrom (QM9's largest |coordinate| is 10.2 A; rounding moves an atom
by at most 0.0005 A per axis) and atomic numbers as int8, compressed: about 14 MB for all 130,831
molecules. ``unpack`` writes ``$MOLGEN_CACHE/qm9/qm9.npz`` in the cache format that
:func:`molgen.datasets.qm9.load_qm9_arrays` reads, with empty SMILES and NaN properties (training
and sampling the 3D model need neither).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SCALE = 1000.0  # int16 units per Angstrom


def pack(out: Path) -> None:
    from molgen.datasets.qm9 import load_qm9_arrays

    arr = load_qm9_arrays()
    q = np.round(arr.pos.astype(np.float64) * SCALE)
    if np.abs(q).max() >= 2 ** 15:
        raise SystemExit("error: coordinates do not fit int16 milli-Angstrom")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, z=arr.z.astype(np.int8), pos_mA=q.astype(np.int16), ptr=arr.ptr,
                        index=arr.index, n_props=np.int64(arr.props.shape[1]))
    err = np.abs(q / SCALE - arr.pos).max()
    print(f"wrote {out} ({out.stat().st_size / 2 ** 20:.1f} MiB, {len(arr)} molecules, max rounding {err:.5f} A)")


def unpack(src: Path) -> Path:
    from molgen._cache import cache_dir
    from molgen.datasets.qm9 import _CACHE_VERSION

    with np.load(src) as f:
        z, pos, ptr, index, k = f["z"], f["pos_mA"].astype(np.float32) / SCALE, f["ptr"], f["index"], int(f["n_props"])
    folder = cache_dir("qm9")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "qm9.npz"
    n = ptr.size - 1
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, z=z, pos=pos, ptr=ptr, smiles=np.full(n, "", dtype="<U1"), index=index,
             props=np.full((n, k), np.nan), version=_CACHE_VERSION)
    tmp.replace(path)
    print(f"unpacked {n} molecules into {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_burst.qm9_travel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("pack", "unpack"))
    p.add_argument("path")
    args = p.parse_args(argv)
    (pack if args.action == "pack" else unpack)(Path(args.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
