"""Graph VAE benchmarks.

Sampling throughput (molecules per second from the prior, valence-masked decoding, end to end:
latent draw, decoding, RDKit sanitising and canonical SMILES) of the shipped checkpoints, or of
random weights at the shipped size where a checkpoint is not installed (labelled as such):

    python -m benchmarks.studies.bench_vae [--device cpu|cuda] [--threads 1] [--out benchmarks/results/bench_vae.txt]

Quality of a checkpoint (the issue's acceptance numbers), written as the "evaluation" of its model
card (metrics.json, through molgen.models.card.update_card) together with the command line:

    python -m benchmarks.studies.bench_vae --quality --dataset qm9 -n 10000

validity with and without the valence masks, uniqueness, novelty against the training split,
reconstruction accuracy (exact canonical SMILES, greedy decoding of the posterior mean) on the test
split, and the mean ELBO (nats) on test molecules; plus ``molgen.evaluate`` on the samples.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.studies import RESULTS
from benchmarks.timing import Stopwatch, command_line, cpu_name, timed


def _model(dataset: str, checkpoint: str | None, device: str):
    """The shipped (or given) checkpoint, else random weights at the shipped size; and a label."""
    from molgen.models import load, pretrained_path
    from molgen.models.vae import GraphVAE, scan_atom_tokens
    from molgen.training.setups import default_config
    from molgen.training.vae import atom_vocabulary, dataset_split_smiles

    folder = Path(checkpoint) if checkpoint else pretrained_path("vae", dataset)
    if (folder / "config.json").exists():
        return load("vae", checkpoint=folder, device=device), f"checkpoint {os.path.relpath(folder)}"
    train, _ = dataset_split_smiles(dataset)
    counts, largest = scan_atom_tokens(train)
    tokens = atom_vocabulary(counts)
    torch.manual_seed(0)
    model = GraphVAE(**{**default_config("vae", dataset)["model"], "atom_types": tokens, "max_atoms": largest})
    return model.to(device).eval(), "RANDOM WEIGHTS at the shipped size (no checkpoint installed)"


def throughput(args: argparse.Namespace) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"# {command_line()}", f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, "
             f"{cpu_name()} ({os.cpu_count()} cores, load average {load:.1f}), torch {torch.__version__}, "
             f"{torch.get_num_threads()} CPU thread(s), device {args.device}"
             + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""),
             "# end to end: prior draw, valence-masked decoding (sampled, temperature 1), RDKit sanitising "
             "and canonical SMILES", ""]
    lines.append(f"{'dataset':<8} {'n':>6} {'batch':>6} {'seconds':>8} {'mol/s':>8} {'valid %':>8} "
                 f"{'unique %':>8}  weights")
    for dataset in args.datasets:
        model, label = _model(dataset, None, args.device)
        n = args.n or (2000 if dataset == "qm9" else 1000)
        batch = args.batch_size or model.sample_batch_size
        model.sample(min(n, 64), seed=1, batch_size=min(batch, 64))  # warm-up
        out, seconds = timed(model.sample, n, seed=0, batch_size=batch, device=args.device)
        valid = [s for s in out.smiles if s is not None]
        lines.append(f"{dataset:<8} {n:>6} {batch:>6} {seconds:>8.2f} {n / seconds:>8.1f} "
                     f"{100 * len(valid) / n:>8.2f} {100 * len(set(valid)) / max(len(valid), 1):>8.2f}  {label}")
    return "\n".join(lines) + "\n"


def quality(args: argparse.Namespace) -> dict:
    from molgen.models.vae import GraphVAE

    dataset = args.dataset
    model, label = _model(dataset, args.checkpoint, args.device)
    if not isinstance(model, GraphVAE) or label.startswith("RANDOM"):
        raise SystemExit(f"error: no trained vae checkpoint for {dataset}")
    from molgen.datasets import dataset_smiles

    test = dataset_smiles(dataset, "test")
    n = args.n
    result: dict = {"command": command_line(), "weights": label, "n_samples": n, "seed": 0,
                    "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}"}
    from molgen.chem.convert import canonicalize
    from molgen.references import training_smiles

    known = set(training_smiles(dataset))
    result["novelty_reference"] = f"molgen.references.training_smiles({dataset!r})"
    for constrained in (True, False):
        out, seconds = timed(model.sample, n, seed=0, constrained=constrained, progress=args.progress)
        valid = [s for s in out.smiles if s is not None]
        unique = set(valid)
        key = "constrained" if constrained else "unconstrained"
        result[key] = {"validity": len(valid) / n, "uniqueness": len(unique) / max(len(valid), 1),
                       "novelty": sum(s not in known for s in unique) / max(len(unique), 1),
                       "valid_unique_novel": sum(s not in known for s in unique) / n,
                       "sampling_seconds": round(seconds, 1)}
        if constrained:
            samples = out
        print(key, json.dumps(result[key]), flush=True)
    # reconstruction on the test split (or a seeded subset of it)
    if args.recon_n and args.recon_n < len(test):
        pick = np.sort(np.random.default_rng(0).choice(len(test), args.recon_n, replace=False))
        test = [test[i] for i in pick]
    table = model.graphs(test)
    ok = np.flatnonzero(table.status == 1)
    targets = [canonicalize(s) for s in test]
    hits = 0
    with Stopwatch() as clock:
        for s in range(0, ok.size, 2000):
            rows = ok[s:s + 2000]
            decoded = model.reconstruct([test[i] for i in rows])
            hits += sum(d == targets[i] for d, i in zip(decoded, rows))
    result["reconstruction"] = {
        "accuracy": hits / len(test), "test_molecules": len(test), "representable": int(ok.size),
        "accuracy_of_representable": hits / max(int(ok.size), 1), "seconds": round(clock.seconds, 1),
        "definition": "exact canonical non-isomeric SMILES after greedy decoding of the posterior mean; "
                      "molecules the model cannot represent count as failures"}
    print("reconstruction", json.dumps(result["reconstruction"]), flush=True)
    elbo = model.log_likelihood([test[i] for i in ok[:args.elbo_n]], samples=1, seed=0)
    result["elbo_test_nats"] = {"mean": float(np.nanmean(elbo)), "molecules": int(min(args.elbo_n, ok.size)),
                                "note": "ELBO (lower bound on log p), 1 posterior sample per molecule"}
    if args.evaluate:
        from molgen.evaluation import evaluate

        ev = evaluate(samples, reference=dataset, fcd=args.fcd)
        result["molgen_evaluate"] = ev.as_dict()["metrics"]
        print(ev.table(), flush=True)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--datasets", nargs="+", default=["qm9", "moses"], help="throughput: which checkpoints")
    p.add_argument("-n", type=int, default=None, help="molecules (throughput: 2000 qm9 / 1000 moses; quality: 10000)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--out", default=str(RESULTS / "bench_vae.txt"), help="throughput results file")
    p.add_argument("--quality", action="store_true", help="evaluate one checkpoint instead")
    p.add_argument("--dataset", default="qm9", help="quality: qm9 or moses")
    p.add_argument("--checkpoint", default=None, help="quality: checkpoint folder (default: the shipped one)")
    p.add_argument("--recon-n", type=int, default=None, help="quality: test molecules to reconstruct (default: all)")
    p.add_argument("--elbo-n", type=int, default=2000, help="quality: test molecules for the mean ELBO")
    p.add_argument("--no-evaluate", dest="evaluate", action="store_false", help="skip molgen.evaluate")
    p.add_argument("--fcd", action="store_true", help="quality: include FCD in molgen.evaluate")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.quality:
        args.n = args.n or 10_000
        result = quality(args)
        from molgen.models import pretrained_path
        from molgen.models.card import update_card

        folder = Path(args.checkpoint) if args.checkpoint else pretrained_path("vae", args.dataset)
        evaluation = json.loads(json.dumps(result, default=float))  # numpy numbers as JSON numbers
        print(f"wrote the evaluation into {update_card(folder, 'evaluation', evaluation)}")
        return 0
    text = throughput(args)
    print(text, end="")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
