"""The autoregressive model (``ar``): sampling throughput, and the quality numbers of a checkpoint.

    python -m benchmarks.studies.bench_ar speed [--threads 2 1] [--out benchmarks/results/bench_ar.txt]
    python -m benchmarks.studies.bench_ar quality --dataset qm9 [--checkpoint DIR] [-n 10000] [--no-fcd]

``speed`` times ``model.sample`` end to end (batched decoding plus building and sanitising the RDKit
molecules and their canonical SMILES) for the shipped QM9 and MOSES checkpoints, and also decodes
real test molecules through the sampler (teacher-forced: the same work as sampling molecules of
exactly the data's sizes, whatever the checkpoint's quality). Where a checkpoint is missing it
times a model of the shipped size with random weights that way, labelled as such.

``quality`` samples ``-n`` molecules with and without valence masks, evaluates them with
``molgen.evaluate`` against the dataset, scores the test split (NLL, nats per molecule) and
an out-of-distribution set (QM9 model: MOSES test molecules; MOSES model: QM9 test molecules), and
stores everything, with the command line, as the ``"evaluation"`` of the checkpoint's model card.
"""
from __future__ import annotations

import argparse
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from benchmarks.studies import RESULTS
from benchmarks.timing import Stopwatch, command_line, cpu_name, timed


def _load(dataset: str, checkpoint: str | None = None):
    from molgen.models import load, pretrained_path
    from molgen.models.checkpoint import CheckpointError

    try:
        return load("ar", dataset=dataset, checkpoint=checkpoint), str(checkpoint or pretrained_path("ar", dataset))
    except CheckpointError:
        return None, None


def _forced_rate(model, dataset: str, n: int, batch: int) -> tuple[float, float, int]:
    """Molecules/s decoding ``n`` real molecules of the dataset through the sampler (teacher-forced:
    the same work as sampling molecules of exactly the data's sizes), RDKit molecules included."""
    from molgen.datasets import dataset_smiles
    from molgen.models.ar.encoding import ActionDataset, encode
    from molgen.samples import SampleSet

    smiles = dataset_smiles(dataset, "test")[:n]
    enc = encode(smiles, workers=1)
    data = ActionDataset(enc, model.atom_types, model.max_atoms, model.max_actions)
    warm = np.arange(min(batch, 200, len(data)))
    model._decode(warm.size, forced=data.batch(warm))
    with Stopwatch() as clock:
        for start in range(0, len(data), batch):
            idx = np.arange(start, min(start + batch, len(data)))
            SampleSet.from_mols(model._to_mols(model._decode(idx.size, forced=data.batch(idx))))
    dt = clock.seconds
    return len(data) / dt, float(np.diff(enc.atom_ptr).mean()), len(data)


def _speed_one(dataset: str, n: int, batch: int, device: str) -> list[str]:
    from molgen.datasets import dataset_smiles
    from molgen.models.ar import ARModel, encode, vocabulary
    from molgen.training.setups import default_config

    model, where = _load(dataset)
    lines = []
    if model is not None:
        model = model.to(device)
        model.sample(min(batch, 200), seed=99, batch_size=min(batch, 200))  # warm-up
        out, dt = timed(model.sample, n, seed=0, batch_size=batch)
        atoms = np.mean([m.GetNumAtoms() for m in out.mols if m is not None])
        lines.append(f"{dataset:6s} checkpoint {where}: model.sample({n}, batch_size={batch}): {dt:.2f} s -> "
                     f"{n / dt:,.0f} molecules/s (validity {100 * out.validity:.1f} %, "
                     f"{atoms:.1f} heavy atoms on average)")
        label = "same checkpoint"
    else:  # random weights at the shipped size
        enc = encode(dataset_smiles(dataset, "test")[:2000], workers=1)
        torch.manual_seed(0)
        model = ARModel(atom_types=vocabulary(enc)[0], max_atoms=int(np.diff(enc.atom_ptr).max()),
                        **default_config("ar", dataset)["model"]).to(device).eval()
        label = "RANDOM WEIGHTS (no checkpoint), shipped size"
    rate, atoms, m = _forced_rate(model, dataset, n, batch)
    lines.append(f"{dataset:6s} {label}, decoding {m} real {dataset} test molecules through the sampler "
                 f"(teacher-forced), batch {batch}: {rate:,.0f} molecules/s ({atoms:.1f} heavy atoms on average)")
    return lines


def speed(args: argparse.Namespace) -> None:
    lines = [f"# {command_line()}",
             f"# {datetime.now(timezone.utc).isoformat(timespec='seconds')}; {cpu_name()}; "
             f"{os.cpu_count()} CPUs visible; torch {torch.__version__}; device {args.device}",
             "# the machine is shared with other jobs: the load average (runnable processes on these CPUs) "
             "says how busy it was"]
    targets = {"qm9": 1000, "moses": 100}
    for threads in args.threads:
        torch.set_num_threads(threads)
        lines.append(f"## torch threads {torch.get_num_threads()}; load average before: "
                     f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(lines[-1], flush=True)
        for dataset, n, batch in (("qm9", args.n_qm9, 1000), ("moses", args.n_moses, 500)):
            for line in _speed_one(dataset, n, batch, args.device):
                lines.append(line + f"; target >= {targets[dataset]:,}/s")
                print(lines[-1], flush=True)
    lines.append(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counted half."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def _score(model, smiles: list[str]) -> dict:
    import warnings

    from rdkit import Chem

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ll, reasons = model.log_likelihood(smiles, return_reasons=True)
    ok = np.isfinite(ll)
    atoms = np.array([Chem.MolFromSmiles(s).GetNumHeavyAtoms() if ok[k] else 0 for k, s in enumerate(smiles)])
    kinds: dict[str, int] = {}
    for r in reasons:
        if r is not None:
            key = "outside vocabulary" if "vocabulary" in r else r.split(" (")[0]
            kinds[key] = kinds.get(key, 0) + 1
    nll = -ll[ok]
    return {"n": len(smiles), "n_scored": int(ok.sum()), "not_scored": kinds,
            "nll_mean": float(nll.mean()) if nll.size else None,
            "nll_median": float(np.median(nll)) if nll.size else None,
            "nll_per_atom_mean": float((nll / atoms[ok]).mean()) if nll.size else None,
            "_nll": nll, "_per_atom": nll / np.maximum(atoms[ok], 1)}


def _brics_fragments(smiles: str, max_atoms: int) -> list[str]:
    """BRICS fragments of a molecule with 3..max_atoms heavy atoms, attachment points made hydrogens."""
    from rdkit import Chem
    from rdkit.Chem import BRICS

    out = []
    for frag in BRICS.BRICSDecompose(Chem.MolFromSmiles(smiles)):
        mol = Chem.MolFromSmiles(frag, sanitize=False)
        for atom in mol.GetAtoms():
            if atom.GetAtomicNum() == 0:
                atom.SetAtomicNum(1)
                atom.SetIsotope(0)
        try:
            mol = Chem.RemoveHs(mol)
        except Exception:  # RDKit raises several types
            continue
        if 3 <= mol.GetNumAtoms() <= max_atoms:
            out.append(Chem.MolToSmiles(mol))
    return out


def _ood_molecules(model, dataset: str, n: int, rng: np.random.Generator,
                   n_parents: int = 20_000) -> tuple[list[str], str]:
    """Out-of-distribution molecules for a model trained on ``dataset``.

    QM9 model: drug-like fragments of QM9 size, i.e. BRICS fragments (3..max_atoms heavy atoms) of
    random MOSES test molecules that are not in QM9 (any split). MOSES model: QM9 test molecules.
    """
    from molgen.references import training_smiles
    from molgen.datasets import dataset_smiles

    if dataset == "moses":
        qm9 = dataset_smiles("qm9", "test")
        pick = np.sort(rng.choice(len(qm9), min(n, len(qm9)), replace=False))
        return [qm9[k] for k in pick], f"qm9 test, random {len(pick)} (seed 0)"
    from molgen.chem.convert import canonicalize

    qm9 = set(training_smiles("qm9")) | {canonicalize(x) for split in ("valid", "test")
                                          for x in dataset_smiles("qm9", split)}
    moses = dataset_smiles("moses", "test")
    frags: dict[str, None] = {}
    order = rng.permutation(len(moses))[:n_parents]
    for k in order:
        for f in _brics_fragments(moses[k], model.max_atoms):
            if f not in qm9:
                frags[f] = None
        if len(frags) >= n:
            break
    return list(frags)[:n], (f"{min(n, len(frags))} distinct BRICS fragments (3-{model.max_atoms} heavy atoms, "
                             f"attachment points as H, not in QM9) of up to {order.size} random MOSES test "
                             "molecules (seed 0)")


def quality(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    from molgen.evaluation import evaluate
    from molgen.datasets import dataset_smiles
    from molgen.models.card import update_card

    model, where = _load(args.dataset, args.checkpoint)
    if model is None:
        raise SystemExit(f"no ar checkpoint for {args.dataset} (give --checkpoint)")
    folder = Path(where)
    ev: dict = {"command": command_line(),
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "n_samples": args.n}
    masked, seconds = timed(model.sample, args.n, seed=0, batch_size=args.batch_size)
    ev["sampling_seconds"] = round(seconds, 1)
    raw = model.sample(args.n, seed=1, batch_size=args.batch_size, mask=False)
    ev["validity_no_mask"] = raw.validity
    if args.save_samples:
        masked.save(RESULTS / f"ar_{args.dataset}_samples_{args.n}.smi")
    res = evaluate(masked, reference=args.dataset, fcd=not args.no_fcd)
    ev["metrics"] = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in res.metrics.items()}
    ev["notes"] = res.notes
    from molgen.references import training_smiles

    train = sorted(training_smiles(args.dataset))
    draws = np.random.default_rng(0).choice(len(train), args.n, replace=True)
    ev["uniqueness_of_training_draws"] = {
        "value": len(set(draws.tolist())) / args.n,
        "what": f"uniqueness of {args.n} draws with replacement from the {len(train)} distinct canonical "
                f"{args.dataset} training SMILES (seed 0): what a model that reproduces the training set gets"}
    print(res.table(), flush=True)
    print(f"uniqueness of {args.n} draws from the training set: {100 * ev['uniqueness_of_training_draws']['value']:.2f} %")
    print(f"validity without masks: {100 * raw.validity:.2f} %", flush=True)
    # test-set NLL and the out-of-distribution example
    test_split = "test"
    test = dataset_smiles(args.dataset, test_split)
    rng = np.random.default_rng(0)
    if len(test) > args.n_test:
        test = [test[k] for k in np.sort(rng.choice(len(test), args.n_test, replace=False))]
    ood, ood_label = _ood_molecules(model, args.dataset, args.n_ood, rng)
    with Stopwatch() as clock:
        ind, out = _score(model, test), _score(model, ood)
    ev["nll_seconds"] = round(clock.seconds, 1)
    ev["test_nll"] = {k: v for k, v in ind.items() if not k.startswith("_")}
    ev["test_nll"]["split"] = f"{args.dataset} {test_split} ({len(test)} molecules)"
    ev["ood_nll"] = {k: v for k, v in out.items() if not k.startswith("_")}
    ev["ood_nll"]["split"] = ood_label
    if out["_nll"].size and ind["_nll"].size:
        ev["ood_auroc_nll"] = _auroc(out["_nll"], ind["_nll"])
        ev["ood_auroc_nll_per_atom"] = _auroc(out["_per_atom"], ind["_per_atom"])
    print(json.dumps({k: ev[k] for k in ("test_nll", "ood_nll")}, indent=1))
    print({k: ev.get(k) for k in ("ood_auroc_nll", "ood_auroc_nll_per_atom")})
    print(f"wrote the evaluation into {update_card(folder, 'evaluation', ev)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speed", help="sampling throughput of the shipped checkpoints")
    s.add_argument("--threads", type=int, nargs="+", default=[2], help="torch thread counts to time")
    s.add_argument("--device", default="cpu")
    s.add_argument("--n-qm9", type=int, default=10_000)
    s.add_argument("--n-moses", type=int, default=2_000)
    s.add_argument("--out", default=str(RESULTS / "bench_ar.txt"))
    q = sub.add_parser("quality", help="evaluate a checkpoint and record it in its model card")
    q.add_argument("--dataset", required=True, choices=("qm9", "moses"))
    q.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped one)")
    q.add_argument("-n", type=int, default=10_000, help="molecules to sample (default 10,000)")
    q.add_argument("--batch-size", type=int, default=1000)
    q.add_argument("--n-test", type=int, default=20_000, help="test molecules to score at most")
    q.add_argument("--n-ood", type=int, default=5_000, help="out-of-distribution molecules to score")
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--no-fcd", action="store_true", help="skip FCD (slow on a CPU)")
    q.add_argument("--save-samples", action="store_true",
                   help="write the samples to benchmarks/results/ar_<dataset>_samples_<n>.smi")
    args = p.parse_args()
    speed(args) if args.command == "speed" else quality(args)


if __name__ == "__main__":
    main()
