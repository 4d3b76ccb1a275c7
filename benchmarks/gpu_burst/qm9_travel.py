"""QM9's training split packed small enough to travel to a GPU machine, and unpacked there into molgen's cache.

    python -m benchmarks.gpu_burst.qm9_travel pack .devcarry/qm9_travel.npz      # here (needs qm9pack)
    python -m benchmarks.gpu_burst.qm9_travel unpack .devcarry/qm9_travel.npz    # there (needs numpy only)

The GPU machine has no qm9pack (224 MB), and the working tree that travels, tracked files included, is
limited to 64 MiB (``python -m benchmarks.gpu_burst.travel_size`` checks it). So only what training needs
goes: the training split's molecules (a GPU burst trains and samples; it evaluates nothing against the
data) and the 2,000 validation molecules of the property predictor's learning curve, coordinates as int16 milli-Angstrom (QM9's largest |coordinate| is 10.2 A; rounding moves an atom
by at most 0.0005 A per axis), atomic numbers as int8, and as float32 the six properties that EDM
conditions on (the QM9 columns of :data:`molgen.datasets.qm9.QM9_CONDITIONS`). The coordinates are delta-coded atom to atom and split into
low and high bytes before xz compression: about 9 MiB for these 102,000 molecules with their
properties, against 12.6 MiB for all of QM9 without them (zlib, the first format).

``unpack`` writes ``$MOLGEN_CACHE/qm9/qm9.npz`` in the cache format that
:func:`molgen.datasets.qm9.load_qm9_arrays` reads, with every QM9 row in place (so the shipped split
still indexes it): the other validation rows and the test rows hold no atoms, SMILES are empty, and properties are NaN
except the travelling ones on the training rows.
"""
from __future__ import annotations

import argparse
import io
import lzma
import sys
from pathlib import Path

import numpy as np

from molgen._atomic import replace_atomically

SCALE = 1000.0  # int16 units per Angstrom
FORMAT = 2


def _encode_positions(q: np.ndarray) -> bytes:
    """(n, 3) int16 -> bytes: per axis the atom-to-atom differences, low bytes then high bytes."""
    d = q.copy()
    d[1:] -= q[:-1]  # int16 wrap-around is undone exactly by the cumulative sum in int16
    planes = np.ascontiguousarray(d.T).view(np.uint8).reshape(3, -1, 2)
    return np.ascontiguousarray(planes.transpose(0, 2, 1)).tobytes()


def _decode_positions(raw: bytes, n: int) -> np.ndarray:
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(3, 2, n).transpose(0, 2, 1)
    d = np.ascontiguousarray(planes).view(np.int16).reshape(3, n).T
    return np.cumsum(d, axis=0, dtype=np.int16)


def pack(out: Path) -> None:
    from molgen.datasets.qm9 import PROPERTIES, QM9_CONDITIONS, indices, load_qm9_arrays
    from molgen.training.data_order import fixed_subset
    from molgen.training.qm9_predictor import CURVE_MOLECULES

    cols = [list(PROPERTIES).index(column) for column, _, _ in QM9_CONDITIONS.values()]
    arr = load_qm9_arrays()
    valid = indices("valid")  # the predictor's learning curve reads a fixed subset of these
    rows = np.sort(np.concatenate([indices("train"), valid[fixed_subset(valid.size, CURVE_MOLECULES)]]))
    atoms = np.concatenate([np.arange(arr.ptr[i], arr.ptr[i + 1]) for i in rows])
    q = np.round(arr.pos[atoms].astype(np.float64) * SCALE)
    if np.abs(q).max() >= 2 ** 15:
        raise SystemExit("error: coordinates do not fit int16 milli-Angstrom")
    q = q.astype(np.int16)
    payload = io.BytesIO()
    np.savez(payload, format=np.int64(FORMAT), n_molecules=np.int64(len(arr)), rows=rows.astype(np.int64),
             n_atoms=arr.n_atoms[rows].astype(np.int8), z=arr.z[atoms].astype(np.int8),
             pos=np.frombuffer(_encode_positions(q), dtype=np.uint8), index=arr.index,
             prop_cols=np.array(cols, dtype=np.int64), n_props=np.int64(len(PROPERTIES)),
             props=arr.props[rows][:, cols].astype(np.float32))
    packed = lzma.compress(payload.getvalue(), preset=9 | lzma.PRESET_EXTREME)
    replace_atomically(out, lambda f: f.write(packed))
    err = np.abs(q / SCALE - arr.pos[atoms]).max()
    print(f"wrote {out} ({out.stat().st_size / 2 ** 20:.1f} MiB, {len(rows)} training and validation molecules of {len(arr)}, "
          f"max rounding {err:.5f} A)")


def read(src: Path) -> dict[str, np.ndarray]:
    """The packed arrays (``rows``, ``n_atoms``, ``z``, ``pos`` in Angstrom, ``index``, ``props`` of the
    columns ``prop_cols`` out of ``n_props``)."""
    try:
        raw = lzma.decompress(src.read_bytes())
        with np.load(io.BytesIO(raw)) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, lzma.LZMAError, ValueError) as exc:
        raise SystemExit(f"error: {src} is not a packed QM9 file ({exc.__class__.__name__}); pack it again") from None
    if int(data.get("format", -1)) != FORMAT:
        raise SystemExit(f"error: {src} has packing format {int(data.get('format', -1))}, not {FORMAT}; pack it again")
    n = int(data["n_atoms"].astype(np.int64).sum())
    data["pos"] = _decode_positions(data["pos"].tobytes(), n).astype(np.float32) / SCALE
    return data


def unpack(src: Path) -> Path:
    from molgen._cache import cache_dir, write_npz
    from molgen.datasets.qm9 import _CACHE_VERSION

    d = read(src)
    n, rows = int(d["n_molecules"]), d["rows"]
    counts = np.zeros(n, dtype=np.int64)
    counts[rows] = d["n_atoms"]
    ptr = np.concatenate([[0], np.cumsum(counts)])
    order = np.argsort(rows, kind="stable")  # rows are written sorted; keep any order correct anyway
    starts = np.concatenate([[0], np.cumsum(d["n_atoms"].astype(np.int64))])
    atoms = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in order])
    props = np.full((n, int(d["n_props"])), np.nan)
    props[np.ix_(rows, d["prop_cols"])] = d["props"]
    folder = cache_dir("qm9")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "qm9.npz"
    write_npz(path, dict(z=d["z"][atoms], pos=d["pos"][atoms], ptr=ptr, smiles=np.full(n, "", dtype="<U1"),
                         index=d["index"], props=props, version=_CACHE_VERSION))
    print(f"unpacked {len(rows)} molecules (of {n} rows) into {path}")
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
