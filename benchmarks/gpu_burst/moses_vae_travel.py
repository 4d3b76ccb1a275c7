"""MOSES' training split featurised for the graph VAE, packed small enough to travel to a GPU machine beside
the AR's pack, and unpacked there into the folder that ``molgen train --model vae --encoded-data DIR`` reads.

    python -m benchmarks.gpu_burst.moses_vae_travel pack .devcarry/moses_vae.npz --offset 0 --limit 400000
    python -m benchmarks.gpu_burst.moses_vae_travel unpack .devcarry/moses_vae.npz DIR   # there (numpy only)

The GPU machine has no RDKit, so it cannot featurise SMILES; the featurised graphs travel instead (the
arrays of :class:`~molgen.models.vae.graphs.GraphArrays`: per atom token, hydrogens, aromatic and ring
flags; per bond its atoms, Kekulé order and flags), as the training setup here makes them (vocabulary and
``max_atoms`` from the whole split's token scan, :func:`molgen.training.vae.training_setup`), for rows
``offset .. offset + limit`` of the training split in their order, and the learning curve's 2,000 held-out
test molecules (seed 0, :func:`molgen.training.vae.dataset_split_smiles`). The canonical-SMILES keys are
left out (training does not read them; novelty is scored here). Each atom is one 16-bit token (kind 2
bits, then token 3, hydrogens 3, aromatic 1, ring 1), followed by one token per bond to an earlier atom
(distance back 6 bits, order 2, aromatic 1, ring 1) and a STOP after each molecule; the stream is
xz-compressed (about 6.5 bytes per molecule). Bonds travel sorted by their atoms, so a molecule's edge
rows come back in that order, not in the input SMILES' bond order (the same graph; only the order of
the encoder's message sums differs). ``unpack`` rebuilds the tables and checks them against the SHA-256
digest of their canonical form taken here.

Why not derive them from the AR's pack (which holds the same molecules' graphs, in the same canonical
breadth-first atom order): the VAE's hydrogens, aromatic flags and Kekulé orders (kekulised in the input
numbering, not the AR's canonical-rank numbering) are RDKit's perception of each molecule; computing them
from the AR's graph would need a second copy of RDKit's aromaticity and kekulisation rules.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .moses_travel import digest_arrays, read_pack, unxz, write_pack, xz

FORMAT = 1
_NODE, _EDGE, _STOP = 0, 1, 2
_KIND_SHIFT = 14
_TOKEN_BITS, _HS_BITS, _DELTA_BITS = 3, 3, 6


def canonical(table) -> dict[str, np.ndarray]:
    """The content of a :class:`GraphArrays` that a pack keeps, as flat arrays: edges sorted by (later,
    earlier atom) within each molecule, no keys; with the vocabulary and size limits (what the digest covers)."""
    flat = table.flat()
    owner = np.repeat(np.arange(len(table)), flat["n_edges"].astype(np.int64))
    e = flat["edges"].astype(np.int64)
    order = np.lexsort((e[:, 1], e[:, 0], owner)) if len(e) else np.zeros(0, np.int64)
    flat["edges"] = flat["edges"][order]
    del flat["keys"]
    return {**flat, "tokens": np.asarray(table.tokens, dtype=str), "max_atoms": np.int64(table.max_atoms),
            "max_edges": np.int64(table.max_edges)}


def encode_graphs(flat: dict[str, np.ndarray]) -> np.ndarray:
    """The uint16 token stream of :func:`canonical`'s arrays (accepted rows, in order); a SystemExit where a
    field does not fit its bits."""
    status = flat["status"]
    if (status == 0).any():
        raise SystemExit("error: the table has rows that were never featurised")
    ok = status == 1
    n_nodes, n_edges = flat["n_nodes"][ok].astype(np.int64), flat["n_edges"][ok].astype(np.int64)
    nodes, e = flat["nodes"].astype(np.int64), flat["edges"].astype(np.int64)
    m = int(ok.sum())
    delta = e[:, 0] - e[:, 1]
    if (len(flat["tokens"]) > 2 ** _TOKEN_BITS or (nodes[:, 1] >= 2 ** _HS_BITS).any() or (delta < 1).any()
            or (delta >= 2 ** _DELTA_BITS).any() or (e[:, 2] > 3).any() or (nodes[:, 2:] > 1).any()
            or (e[:, 3:] > 1).any()):
        raise SystemExit("error: these graphs do not fit the 16-bit tokens")
    node_tok = nodes[:, 0] | nodes[:, 1] << 3 | nodes[:, 2] << 6 | nodes[:, 3] << 7
    edge_tok = _EDGE << _KIND_SHIFT | delta | e[:, 2] << 6 | e[:, 3] << 8 | e[:, 4] << 9
    start = np.cumsum(n_nodes) - n_nodes  # each molecule's first atom, in the flat node rows
    owner = np.repeat(np.arange(m), n_edges)
    # position of every token: atom a's node token, then its bonds to earlier atoms, a STOP after the last
    node_key = 2 * np.arange(len(nodes), dtype=np.float64)
    edge_key = 2 * (start[owner] + e[:, 0]) + 1.0
    stop_key = 2 * (start + n_nodes - 1) + 1.5
    tokens = np.concatenate([node_tok, edge_tok, np.full(m, _STOP << _KIND_SHIFT)])
    return tokens[np.argsort(np.concatenate([node_key, edge_key, stop_key]), kind="stable")].astype(np.uint16)


def decode_graphs(stream: np.ndarray, n_input: int, failed_idx: np.ndarray, failed_reason: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """The flat arrays (less the vocabulary and size limits) of :func:`encode_graphs`' stream."""
    t = stream.astype(np.int64)
    kind = t >> _KIND_SHIFT
    stop = kind == _STOP
    mol = np.cumsum(stop) - stop  # the molecule each token belongs to
    m = int(stop.sum())
    is_node, is_edge = kind == _NODE, kind == _EDGE
    n_nodes = np.bincount(mol[is_node], minlength=m)
    n_edges = np.bincount(mol[is_edge], minlength=m)
    start = np.cumsum(n_nodes) - n_nodes
    cur = np.cumsum(is_node) - 1 - start[mol]  # the latest atom's index in its molecule
    nt, et, at = t[is_node], t[is_edge], cur[is_edge]
    nodes = np.stack([nt & 7, (nt >> 3) & 7, (nt >> 6) & 1, (nt >> 7) & 1], axis=1)
    edges = np.stack([at, at - (et & 63), (et >> 6) & 3, (et >> 8) & 1, (et >> 9) & 1], axis=1)
    keep = np.ones(n_input, bool)
    keep[failed_idx] = False
    status = np.where(keep, 1, 2).astype(np.int8)
    rows_nodes, rows_edges = np.zeros(n_input, np.int16), np.zeros(n_input, np.int16)
    rows_nodes[keep], rows_edges[keep] = n_nodes, n_edges
    return {"nodes": nodes.astype(np.int8), "edges": edges.astype(np.int8), "n_nodes": rows_nodes,
            "n_edges": rows_edges, "status": status, "failed_idx": failed_idx.astype(np.int64),
            "failed_reason": failed_reason}


def _arrays(prefix: str, table) -> dict[str, np.ndarray]:
    flat = canonical(table)
    return {f"{prefix}_tokens": xz(encode_graphs(flat)), f"{prefix}_n_input": np.int64(len(table)),
            f"{prefix}_failed_idx": flat["failed_idx"], f"{prefix}_failed_reason": flat["failed_reason"],
            f"{prefix}_sha256": np.asarray(digest_arrays(flat))}


def pack_tables(out: Path, train, held, info: dict[str, str]) -> None:
    """Write a pack of two featurised tables (same vocabulary and size limits); ``info`` describes them
    (``train_split``, ``heldout``: what the run's metrics.json will say)."""
    if train.tokens != held.tokens or train.max_atoms != held.max_atoms or train.max_edges != held.max_edges:
        raise SystemExit("error: the training and held-out tables differ in vocabulary or size limits")
    write_pack(out, {"vae_format": np.int64(FORMAT), "tokens": np.asarray(train.tokens, dtype=str),
                     "max_atoms": np.int64(train.max_atoms), "max_edges": np.int64(train.max_edges),
                     "info": np.asarray(json.dumps(info)), **_arrays("train", train), **_arrays("heldout", held)})


def pack(out: Path, offset: int = 0, limit: int | None = None) -> None:
    """Featurise (cached) and pack MOSES train rows ``offset .. offset + limit`` and the held-out molecules."""
    from molgen._cache import digest_strings
    from molgen.models.vae.featurization import cached_scan, featurization_key
    from molgen.models.vae.table import GraphTable
    from molgen.training.vae import atom_vocabulary, dataset_split_smiles

    train, holdout = dataset_split_smiles("moses")
    if offset >= len(train):
        raise SystemExit(f"error: --offset {offset} is past the {len(train):,} training molecules")
    digest = digest_strings(train)
    counts, largest = cached_scan("moses-train", train, digest=digest)
    tokens = atom_vocabulary(counts)  # the vocabulary and size limit of the whole split, as training_setup has
    end = len(train) if limit is None else min(len(train), offset + limit)
    whole = offset == 0 and end == len(train)
    if whole or GraphTable.cache_path("moses-train", featurization_key(train, tokens, largest, largest + 8,
                                                                       digest)).is_file():
        # the whole split's table (training_setup's cache, featurised once in about 25 minutes), cut
        table = GraphTable.cached("moses-train", train, tokens, largest, digest=digest, progress=False)
        table = table if whole else table.take(offset, end)
    else:  # only these rows
        table = GraphTable.cached(f"moses-train-{offset}-{end}", train[offset:end], tokens, largest, progress=False)
    held = GraphTable(holdout, tokens, largest)
    held.ensure(np.arange(len(held)))
    info = {"train_split": f"train rows {offset}..{end} of {len(train)}" if not whole else "train",
            "heldout": f"{len(holdout)} random moses test molecules (seed 0), {int((held.status == 1).sum())} "
                       "featurisable"}
    pack_tables(out, table, held, info)
    print(f"wrote {out} ({out.stat().st_size / 2 ** 20:.2f} MiB: {len(table):,} training molecules, rows "
          f"{offset}..{end} ({len(table.reasons)} not representable), {len(held)} held out)")


def unpack(src: Path, folder: Path) -> None:
    from molgen.models.vae.graphs import GraphArrays

    files = read_pack(src, "vae_format", FORMAT, "MOSES VAE pack")
    folder.mkdir(parents=True, exist_ok=True)
    tokens, max_atoms, max_edges = files["tokens"].tolist(), int(files["max_atoms"]), int(files["max_edges"])
    for prefix in ("train", "heldout"):
        n_input = int(files[f"{prefix}_n_input"])
        flat = decode_graphs(unxz(files[f"{prefix}_tokens"], np.uint16), n_input, files[f"{prefix}_failed_idx"],
                             files[f"{prefix}_failed_reason"])
        table = GraphArrays(n_input, tokens, max_atoms, max_edges)
        try:
            table.fill({**flat, "keys": np.zeros(n_input, np.int64)})
        except (ValueError, IndexError) as exc:
            raise SystemExit(f"error: the {prefix} set of {src} is damaged ({exc})") from None
        if digest_arrays(canonical(table)) != str(files[f"{prefix}_sha256"]):
            raise SystemExit(f"error: the {prefix} set unpacked from {src} does not match its digest")
        table.save(folder / f"{prefix}.npz")
        print(f"unpacked {n_input:,} {prefix} molecules ({len(table.reasons)} not representable) into "
              f"{folder / prefix}.npz (digest checked)")
    (folder / "info.json").write_text(str(files["info"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_burst.moses_vae_travel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="featurise MOSES train rows (cached) and pack them (needs RDKit, MOSES files)")
    pk.add_argument("out")
    pk.add_argument("--offset", type=int, default=0, help="the first training row to pack (default 0)")
    pk.add_argument("--limit", type=int, default=None, help="pack at most this many rows (default: all)")
    up = sub.add_parser("unpack", help="write DIR/train.npz, DIR/heldout.npz and DIR/info.json (numpy only)")
    up.add_argument("src")
    up.add_argument("folder")
    args = p.parse_args(argv)
    if args.command == "pack":
        if args.offset < 0:
            raise SystemExit(f"error: --offset must be >= 0, got {args.offset}")
        if args.limit is not None and args.limit < 1:
            raise SystemExit(f"error: --limit must be >= 1, got {args.limit}")
        pack(Path(args.out), args.offset, args.limit)
    else:
        unpack(Path(args.src), Path(args.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
