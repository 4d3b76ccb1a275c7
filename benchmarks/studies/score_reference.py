"""Each shipped model's test-split score reference and its anomaly AUROC, against another dataset and
against near misses.

    python -m benchmarks.studies.score_reference [-n 2000] [--models ar-qm9,ar-moses,vae-qm9,vae-moses,edm-qm9]
    python -m benchmarks.studies.score_reference --near-miss-only [-n 2000] [--edm-n 300]
    python -m benchmarks.studies.score_reference --reference-only --models edm-qm9   # after new EDM weights

Reference part (skipped with ``--near-miss-only``): for each checkpoint, the NLL of ``n`` molecules of its
own test split (a seeded draw; EDM: ``n // 4`` QM9 test molecules in 3D, the bound with 8 time samples)
becomes the ``score_reference`` of its model card (quantiles 0, 1, ..., 100 %), from which ``model.score``
and ``molgen score`` give percentiles. For the graph models it also reports the AUROC of telling MOSES
test from QM9 test molecules (``n`` each) by the raw NLL and by the NLL per heavy atom, the other dataset
being the anomaly; molecules a model cannot represent (atoms outside its vocabulary, too large) count as
the most anomalous. Writes benchmarks/results/score_reference.txt.

Near-miss part: the AUROC of telling the model's own test draw (``n`` molecules) from ``n`` near misses:
molecules of that draw with one edit (an atom's element changed among the dataset's heavy elements, a
bond's order changed, a terminal atom deleted, or a terminal atom added without going past the draw's
largest molecule), kept only when RDKit sanitises it and its canonical SMILES is in neither the draw nor
the near misses so far. EDM: ``--edm-n`` molecules per class, both classes (the test molecules and their
near misses) embedded the same way (ETKDG + MMFF with hydrogens, :func:`molgen.chem.write.embed_3d`), so
that the geometry's source does not tell them apart. Writes benchmarks/results/score_reference_near_miss.txt.

With ``--models`` naming only some models, a results file that exists keeps the other models' lines (and
the datasets' near-miss lines of datasets not named), under a header that says which lines came from
which command.
"""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np

from benchmarks.timing import Stopwatch, command_line, machine

RESULTS = Path(__file__).resolve().parent.parent / "results" / "score_reference.txt"
NEAR_MISS_RESULTS = RESULTS.with_name("score_reference_near_miss.txt")
EDITS = ("element", "bond order", "delete atom", "add atom")
ALL_MODELS = "ar-qm9,ar-moses,vae-qm9,vae-moses,edm-qm9"


def auroc(inlier: np.ndarray, outlier: np.ndarray) -> float:
    """P(score of an outlier > score of an inlier), ties counted half (the Mann-Whitney AUROC)."""
    from scipy.stats import rankdata

    scores = np.concatenate([inlier, outlier])
    ranks = rankdata(scores)
    n_in, n_out = len(inlier), len(outlier)
    return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def draw(smiles: list[str], n: int, seed: int) -> list[str]:
    rows = np.random.default_rng(seed).choice(len(smiles), size=min(n, len(smiles)), replace=False)
    return [smiles[i] for i in sorted(rows)]


def heavy_elements(dataset: str) -> tuple[str, ...]:
    """The heavy elements near misses may use: the dataset's vocabulary without hydrogen."""
    from molgen.chem.elements import VOCABULARIES

    return tuple(e for e in VOCABULARIES["qm9_heavy" if dataset == "qm9" else dataset] if e != "H")


def edit(mol, kind: str, elements: tuple[str, ...], rng: np.random.Generator, max_heavy: int):
    """``mol`` with one edit of ``kind`` (one of :data:`EDITS`) at a random place, sanitised; None where
    the edit has no place to go or RDKit rejects the result."""
    from rdkit import Chem

    from molgen.chem.build import sanitize

    rw = Chem.RWMol(mol)
    Chem.Kekulize(rw, clearAromaticFlags=True)  # bond orders 1-3 only; sanitising aromatises again
    atoms, bonds = list(rw.GetAtoms()), list(rw.GetBonds())
    if kind == "element":
        atom = atoms[rng.integers(len(atoms))]
        atom.SetAtomicNum(Chem.GetPeriodicTable().GetAtomicNumber(
            str(rng.choice([e for e in elements if e != atom.GetSymbol()]))))
        atom.SetFormalCharge(0)
        touched = [atom.GetIdx()]
    elif kind == "bond order":
        if not bonds:
            return None
        bond = bonds[rng.integers(len(bonds))]
        order = int(bond.GetBondTypeAsDouble())
        bond.SetBondType({1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}[
            int(rng.choice([o for o in (1, 2, 3) if o != order]))])
        touched = [bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()]
    elif kind == "delete atom":
        terminal = [a.GetIdx() for a in atoms if a.GetDegree() == 1]
        if len(atoms) < 2 or not terminal:
            return None
        i = int(rng.choice(terminal))
        touched = [n.GetIdx() - (n.GetIdx() > i) for n in rw.GetAtomWithIdx(i).GetNeighbors()]
        rw.RemoveAtom(i)
    else:
        free = [a.GetIdx() for a in atoms if a.GetTotalNumHs() > 0]
        if len(atoms) >= max_heavy or not free:
            return None
        i = int(rng.choice(free))
        j = rw.AddAtom(Chem.Atom(str(rng.choice(elements))))
        rw.AddBond(i, j, Chem.BondType.SINGLE)
        touched = [i, j]
    for i in touched:  # hydrogens follow the new valences
        rw.GetAtomWithIdx(i).SetNoImplicit(False)
        rw.GetAtomWithIdx(i).SetNumExplicitHs(0)
    return sanitize(rw.GetMol())


def near_misses(smiles: list[str], n: int, elements: tuple[str, ...], seed: int) -> tuple[list[str], list[str]]:
    """Up to ``n`` near misses of ``smiles`` (canonical SMILES, each with its edit kind), seeded: each
    from a random molecule with a random edit kind, kept when it sanitises, is one fragment and is
    neither one of ``smiles`` nor an earlier near miss. Gives up after 50 n attempts."""
    from molgen.chem.build import is_connected
    from molgen.chem.convert import canonicalize, to_mol, to_smiles

    rng = np.random.default_rng(seed)
    mols = [to_mol(s) for s in smiles]
    seen = {canonicalize(s) for s in smiles}
    max_heavy = max(m.GetNumHeavyAtoms() for m in mols if m is not None)
    out: list[str] = []
    kinds: list[str] = []
    for _ in range(50 * n):
        if len(out) >= n:
            break
        source, kind = mols[rng.integers(len(mols))], EDITS[rng.integers(len(EDITS))]
        mol = edit(source, kind, elements, rng, max_heavy) if source is not None else None
        text = to_smiles(mol) if mol is not None and is_connected(mol) else None
        if text and text not in seen:
            seen.add(text)
            out.append(text)
            kinds.append(kind)
    return out, kinds


def aurocs(table, out_table) -> dict[str, tuple[float, np.ndarray, np.ndarray]]:
    """The raw (``nll``) and per-atom (``nll_per_atom``) AUROC of inliers ``table`` vs anomalies
    ``out_table``, with the scores used (rows a model cannot score count as the most anomalous)."""
    result = {}
    for column in ("nll", "nll_per_atom"):
        worst = np.nanmax(np.concatenate([table[column], out_table[column]])) + 1.0
        inl = np.nan_to_num(table[column].to_numpy(), nan=worst)
        outl = np.nan_to_num(out_table[column].to_numpy(), nan=worst)
        result[column] = (auroc(inl, outl), inl, outl)
    return result


def near_miss_lines(table, out_table, what: str, per_atom: str, kinds: list[str]) -> list[str]:
    """The near-miss report of one model: both AUROCs, by edit kind, and which score is better."""
    res = aurocs(table, out_table)
    (raw, raw_in, raw_out), (per, per_in, per_out) = res["nll"], res["nll_per_atom"]
    kinds_arr = np.asarray(kinds)
    by_kind = [f"{kind} ({int(sel.sum())}) {auroc(raw_in, raw_out[sel]):.3f} / {auroc(per_in, per_out[sel]):.3f}"
               for kind in EDITS if (sel := kinds_arr == kind).any()]
    return [f"  AUROC {what}: raw NLL {raw:.3f}, NLL per {per_atom} {per:.3f} "
            f"({int(out_table['nll'].isna().sum())} of {len(out_table)} near misses not representable)",
            "    by edit (raw / per atom): " + "; ".join(by_kind),
            f"  better: {'raw NLL' if raw > per else f'NLL per {per_atom}' if per > raw else 'tie'}"]


def reference_part(args, test: dict[str, list[str]]) -> list[str]:
    """The model cards' score references and the other-dataset AUROCs (the study's first part)."""
    import molgen
    from molgen.models.card import update_card

    lines = []
    for name in args.models.split(","):
        model = molgen.load(name)
        dataset = name.split("-", 1)[1]
        with Stopwatch() as clock:
            if model.likelihood_kind == "vlb":
                from benchmarks.studies.edm_constrained import qm9_test_records

                table = model.score(qm9_test_records(args.n // 4, args.seed))
            else:
                table = model.score(test[dataset])
        nll = table["nll"].to_numpy()
        finite = nll[np.isfinite(nll)]
        quantiles = np.quantile(finite, np.linspace(0, 1, 101)).round(4).tolist()
        update_card(model.checkpoint_dir, "score_reference", {
            "command": command_line(), "date": datetime.date.today().isoformat(), "machine": machine(),
            "reference": f"{dataset} test, {len(table)} molecules (seed {args.seed})", "scored": int(len(finite)),
            "bound": model.likelihood_kind, "quantiles": quantiles})
        lines.append(f"{name}: {model.likelihood_kind} NLL of {len(finite)} of {len(table)} {dataset} test molecules in "
                     f"{clock.seconds:.0f} s: median {np.median(finite):.2f} nats, 5-95 % "
                     f"{np.quantile(finite, 0.05):.2f} to {np.quantile(finite, 0.95):.2f}")
        if model.likelihood_kind != "vlb":
            other = "moses" if dataset == "qm9" else "qm9"
            out_table = model.score(test[other])
            res = aurocs(table, out_table)
            for column, label in (("nll", "raw NLL"), ("nll_per_atom", "NLL per heavy atom")):
                lines.append(f"  AUROC {dataset} test (inlier) vs {other} test (anomaly), {label}: {res[column][0]:.3f} "
                             f"({int(out_table['nll'].isna().sum())} of {len(out_table)} {other} molecules not representable)")
        print("\n".join(lines[-1 if model.likelihood_kind == "vlb" else -3:]), flush=True)
    return lines


def near_miss_part(args, test: dict[str, list[str]]) -> list[str]:
    """AUROC of each model's test draw against near misses of it (the study's second part)."""
    import molgen

    lines = []
    misses = {}
    for ds in sorted({name.split("-", 1)[1] for name in args.models.split(",")}):
        with Stopwatch() as clock:
            misses[ds] = near_misses(test[ds], args.n, heavy_elements(ds), args.seed)
        counts = ", ".join(f"{k} {misses[ds][1].count(k)}" for k in EDITS)
        lines.append(f"{ds} near misses: {len(misses[ds][0])} from the {len(test[ds])}-molecule test draw, "
                     f"elements {'/'.join(heavy_elements(ds))}, in {clock.seconds:.0f} s ({counts})")
    for name in args.models.split(","):
        model = molgen.load(name)
        dataset = name.split("-", 1)[1]
        nm, kinds = misses[dataset]
        with Stopwatch() as clock:
            if model.likelihood_kind == "vlb":
                from molgen.chem.convert import to_mol
                from molgen.chem.write import embed_3d

                inl = [embed_3d(to_mol(s), seed=args.seed) for s in test[dataset][:args.edm_n]]
                outl = [embed_3d(to_mol(s), seed=args.seed) for s in nm[:args.edm_n]]
                keep_in = [m for m in inl if m is not None]
                keep_out = [(m, k) for m, k in zip(outl, kinds) if m is not None]
                table, out_table = model.score(keep_in), model.score([m for m, _ in keep_out])
                kinds, per_atom = [k for _, k in keep_out], "atom (H included)"
                what = (f"{dataset} test (inlier, {len(keep_in)} of {len(inl)} embedded) vs near misses "
                        f"({len(keep_out)} of {len(outl)} embedded), ETKDG + MMFF 3D")
            else:
                table, out_table = model.score(test[dataset]), model.score(nm)
                per_atom, what = "heavy atom", f"{dataset} test (inlier, {len(table)}) vs {dataset} near misses"
        lines += [f"{name} ({model.likelihood_kind}, scored in {clock.seconds:.0f} s):",
                  *near_miss_lines(table, out_table, what, per_atom, kinds)]
        print("\n".join(lines[-4:]), flush=True)
    return lines


def merge_results(old_text: str, header: list[str], body: list[str]) -> str:
    """``body`` (this run's lines) merged into a results file's ``old_text``: a block (a line at the left
    margin and the indented lines under it, keyed by its first word) replaces the old block of that key
    and the others stay; the header names this run's keys, then keeps the old header."""
    def blocks(lines: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        key = None
        for line in lines:
            if line and not line.startswith(" "):
                key = line.split()[0].rstrip(":")
                out[key] = [line]
            elif key is not None and line:
                out[key].append(line)
        return out

    old_lines = old_text.splitlines()
    old_header = [line for line in old_lines if line.startswith("#")]
    old_blocks = blocks([line for line in old_lines if not line.startswith("#")])
    new_blocks = blocks(body)
    merged = {**old_blocks, **new_blocks}
    mine = ", ".join(new_blocks)
    head = [f"{header[0]}   (lines of: {mine})", *header[1:2],
            *(line if line.startswith("#   other lines") else f"#   other lines: {line.lstrip('# ')}" for line in old_header)]
    return "\n".join(head + [""] + [line for block in merged.values() for line in block]) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default=ALL_MODELS)
    p.add_argument("--edm-n", type=int, default=300, help="molecules per class for EDM's near-miss AUROC")
    p.add_argument("--near-miss-only", action="store_true",
                   help="only the near-miss AUROCs: no model card or score_reference.txt is rewritten")
    p.add_argument("--reference-only", action="store_true",
                   help="only the model cards' score references (and score_reference.txt)")
    args = p.parse_args()
    if args.n < 2 or args.edm_n < 2:
        raise SystemExit(f"-n and --edm-n must be at least 2, got {args.n} and {args.edm_n}")
    if args.near_miss_only and args.reference_only:
        raise SystemExit("--near-miss-only and --reference-only exclude each other")
    chosen, every = set(args.models.split(",")), set(ALL_MODELS.split(","))
    if chosen - every:
        raise SystemExit(f"unknown model {', '.join(sorted(chosen - every))}; choose among {ALL_MODELS}")
    subset = chosen != every

    from molgen.chem.files import write_atomic
    from molgen.datasets import dataset_smiles

    test = {ds: draw(dataset_smiles(ds, "test"), args.n, args.seed) for ds in ("qm9", "moses")}
    header = [f"# {command_line()}", f"# {machine()}", ""]
    outputs = {} if args.reference_only else {NEAR_MISS_RESULTS: near_miss_part}
    if not args.near_miss_only:
        outputs = {RESULTS: reference_part, **outputs}
    for path, part in outputs.items():
        body = part(args, test)
        if subset and path.exists():
            text = merge_results(path.read_text(), header, body)
        else:
            text = "\n".join(header + body) + "\n"
        write_atomic(path, [text])
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
