"""MOSES' training split, linearised for the autoregressive model, packed small enough to travel to a GPU
machine, and unpacked there into the folder that ``molgen train --model ar --encoded-data DIR`` reads.

    python -m benchmarks.gpu_burst.moses_travel pack .devcarry/moses_ar.npz     # here (RDKit, MOSES files)
    python -m benchmarks.gpu_burst.moses_travel unpack .devcarry/moses_ar.npz DIR   # there (numpy only)

The GPU machine has no RDKit, so it cannot linearise SMILES; the MOSES CSV alone (10 MiB) would not fit
beside the tracked tree either. So the action sequences travel (:mod:`molgen.models.ar.actions`): the
training split's 1,584,663 molecules, in their order (a run resumed here from the SMILES sees the same
dataset), and the 1,000 held-out test molecules of the learning curve (seed 0, as
:func:`molgen.training.ar.training_setup` picks them). Each action is one 16-bit token (kind 2 bits, bond
order 2 bits, distance back to its parent or ring target 6 bits, atom type 6 bits), a STOP token ends each
molecule, and the token stream is xz-compressed: about 5 bytes per molecule. ``unpack`` rebuilds the
:class:`~molgen.models.ar.actions.EncodedSet` files and checks them against the SHA-256 digest taken here.
"""
from __future__ import annotations

import argparse
import hashlib
import lzma
import sys
from pathlib import Path

import numpy as np

from molgen._cache import write_npz

FORMAT = 1
HELD_OUT = 1000  # the learning curve's held-out molecules (molgen.training.ar)
_KIND_BITS, _BOND_BITS, _DELTA_BITS = 2, 2, 6
_ATOM, _STOP = 0, 2


def digest_arrays(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of named arrays (their content, whatever integer dtype they were loaded with)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.asarray(arrays[key])
        a = a.astype(np.int64) if a.dtype.kind in "iu" else a.astype(str)
        h.update(key.encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def digest(enc) -> str:
    """SHA-256 of an encoded set's arrays."""
    return digest_arrays(enc.to_arrays())


def xz(data: np.ndarray) -> np.ndarray:
    """An array's bytes, xz-compressed at the strongest preset, as a uint8 array (what a pack holds)."""
    return np.frombuffer(lzma.compress(np.ascontiguousarray(data).tobytes(), preset=9 | lzma.PRESET_EXTREME),
                         np.uint8)


def unxz(packed: np.ndarray, dtype: type) -> np.ndarray:
    return np.frombuffer(lzma.decompress(packed.tobytes()), dtype)


def write_pack(out: Path, arrays: dict[str, np.ndarray]) -> None:
    """One .npz of ``arrays`` (no pickles), replaced atomically."""
    write_npz(out, arrays)


def read_pack(src: Path, format_key: str, version: int, what: str) -> dict[str, np.ndarray]:
    """A pack's arrays; one error line where it cannot be read or is not a format-``version`` ``what``."""
    try:
        with np.load(src, allow_pickle=False) as f:
            files = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot read {src}: {exc}") from None
    if int(files.get(format_key, -1)) != version:
        raise SystemExit(f"error: {src} is not a format-{version} {what}")
    return files


def encode_tokens(enc) -> tuple[np.ndarray, np.ndarray]:
    """(tokens uint16 with a STOP after each molecule, the atom-code book); a SystemExit where a field
    does not fit its bits."""
    book, code_idx = np.unique(enc.codes.astype(np.int64), return_inverse=True)
    n_act = np.diff(enc.act_ptr)
    owner = np.repeat(np.arange(len(enc)), n_act)
    kind = enc.kind.astype(np.int64)
    is_atom = kind == _ATOM
    cur = np.cumsum(is_atom) - 1 - enc.atom_ptr[:-1][owner]  # the latest atom's index in its molecule
    delta = np.where(enc.ptr < 0, 0, cur - enc.ptr.astype(np.int64))
    atom_of_action = np.zeros(kind.size, np.int64)
    atom_of_action[is_atom] = code_idx
    if (len(book) > 2 ** (16 - _KIND_BITS - _BOND_BITS - _DELTA_BITS) or delta.min() < 0
            or delta.max() >= 2 ** _DELTA_BITS or enc.bond.max() >= 2 ** _BOND_BITS):
        raise SystemExit("error: these molecules do not fit the 16-bit action tokens")
    tok = (kind | enc.bond.astype(np.int64) << _KIND_BITS | delta << (_KIND_BITS + _BOND_BITS)
           | atom_of_action << (_KIND_BITS + _BOND_BITS + _DELTA_BITS))
    out = np.full(kind.size + len(enc), _STOP, np.uint16)  # STOP tokens: kind 2, other fields 0
    slot = np.arange(kind.size) + owner  # each molecule's actions, then its STOP
    out[slot] = tok
    return out, book


def decode_tokens(tokens: np.ndarray, book: np.ndarray, n_input: int, failed_idx: np.ndarray,
                  failed_reason: np.ndarray):
    """The :class:`EncodedSet` of :func:`encode_tokens`' output."""
    from molgen.models.ar.actions import EncodedSet

    t = tokens.astype(np.int64)
    kind = t & (2 ** _KIND_BITS - 1)
    stop = kind == _STOP
    n_act = np.diff(np.concatenate([[-1], np.flatnonzero(stop)])) - 1
    t, kind = t[~stop], kind[~stop]
    bond = (t >> _KIND_BITS) & (2 ** _BOND_BITS - 1)
    delta = (t >> (_KIND_BITS + _BOND_BITS)) & (2 ** _DELTA_BITS - 1)
    code = book[t >> (_KIND_BITS + _BOND_BITS + _DELTA_BITS)]
    act_ptr = np.concatenate([[0], np.cumsum(n_act)]).astype(np.int64)
    owner = np.repeat(np.arange(n_act.size), n_act)
    is_atom = kind == _ATOM
    n_atoms = np.bincount(owner[is_atom], minlength=n_act.size)
    atom_ptr = np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64)
    cur = np.cumsum(is_atom) - 1 - atom_ptr[:-1][owner]
    ptr = cur - delta
    ptr[act_ptr[:-1][n_act > 0]] = -1  # each molecule's first atom has no parent
    keep = np.ones(n_input, bool)
    keep[failed_idx] = False
    return EncodedSet(codes=code[is_atom].astype(np.int16), atom_ptr=atom_ptr, kind=kind.astype(np.int8),
                      ptr=ptr.astype(np.int16), bond=bond.astype(np.int8), act_ptr=act_ptr,
                      source=np.flatnonzero(keep).astype(np.int64),
                      failed=dict(zip(failed_idx.tolist(), failed_reason.tolist())))


def _arrays(prefix: str, enc, n_input: int) -> dict[str, np.ndarray]:
    tokens, book = encode_tokens(enc)
    arrays = enc.to_arrays()
    return {f"{prefix}_tokens": xz(tokens), f"{prefix}_book": book, f"{prefix}_n_input": np.int64(n_input),
            f"{prefix}_failed_idx": arrays["failed_idx"], f"{prefix}_failed_reason": arrays["failed_reason"],
            f"{prefix}_sha256": np.asarray(digest(enc))}


def heldout_smiles(dataset: str = "moses") -> list[str]:
    """The learning curve's held-out molecules, as :func:`molgen.training.ar.training_setup` draws them."""
    from molgen.datasets import dataset_smiles

    held = dataset_smiles(dataset, "valid" if dataset == "qm9" else "test")
    return [held[k] for k in np.random.default_rng(0).choice(len(held), HELD_OUT, replace=False)]


def pack(out: Path, limit: int | None = None) -> None:
    from molgen.datasets import dataset_smiles
    from molgen.models.ar.encoding import encode, encode_cached

    smiles = dataset_smiles("moses", "train")
    name = "moses-train"
    if limit is not None:  # a small pack for tests and the CPU smoke run
        smiles, name = smiles[:limit], f"moses-train-first{limit}"
    train = encode_cached(name, smiles)
    held_smiles = heldout_smiles()
    held = encode(held_smiles, workers=1)
    write_pack(out, {"format": np.int64(FORMAT), **_arrays("train", train, len(smiles)),
                     **_arrays("heldout", held, len(held_smiles))})
    print(f"wrote {out} ({out.stat().st_size / 2 ** 20:.2f} MiB: {len(train):,} training molecules "
          f"({len(train.failed)} not linearisable), {len(held)} held out)")


def unpack(src: Path, folder: Path) -> None:
    files = read_pack(src, "format", FORMAT, "MOSES pack")
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "heldout"):
        tokens = unxz(files[f"{prefix}_tokens"], np.uint16)
        enc = decode_tokens(tokens, files[f"{prefix}_book"], int(files[f"{prefix}_n_input"]),
                            files[f"{prefix}_failed_idx"], files[f"{prefix}_failed_reason"])
        if digest(enc) != str(files[f"{prefix}_sha256"]):
            raise SystemExit(f"error: the {prefix} set unpacked from {src} does not match its digest")
        enc.save(folder / f"{prefix}.npz")
        print(f"unpacked {len(enc):,} {prefix} molecules into {folder / prefix}.npz (digest checked)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_burst.moses_travel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="linearise MOSES train (cached) and pack it (needs RDKit and the MOSES files)")
    pk.add_argument("out")
    pk.add_argument("--limit", type=int, default=None, help="only the first N training molecules (tests)")
    up = sub.add_parser("unpack", help="write DIR/train.npz and DIR/heldout.npz (needs numpy only)")
    up.add_argument("src")
    up.add_argument("folder")
    args = p.parse_args(argv)
    if args.command == "pack":
        if args.limit is not None and args.limit < 1:
            raise SystemExit(f"error: --limit must be >= 1, got {args.limit}")
        pack(Path(args.out), args.limit)
    else:
        unpack(Path(args.src), Path(args.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
