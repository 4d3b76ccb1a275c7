"""Bring a GPU burst's results home: join the split tars into runs/gpu-burst/<run>/, check that
each run folder loads and resumes (manifest, checksums), score every evaluation's saved samples with
RDKit (what the GPU machine could not compute: EDM's validity; for ar-moses and vae-moses, runs M and V of
run_moses.sh, validity with and without the masks, uniqueness, novelty and FCD against MOSES test, and V's
reconstruction of held-out molecules) into the run's learning curve, and print the curves side by side.

    python -m benchmarks.gpu_burst.collect /work/.device/<files_at> [--into runs/gpu-burst]
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path


def join_tars(src: Path, into: Path) -> list[str]:
    runs = []
    for name in sorted({p.name.split(".tar")[0] for p in src.iterdir() if ".tar" in p.name}):
        parts = sorted(src.glob(f"{name}.tar.*")) or sorted(src.glob(f"{name}.tar"))
        data = b"".join(p.read_bytes() for p in parts)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():  # plain files and folders inside the run folder only
                if not (member.isfile() or member.isdir()) or member.name.startswith(("/", "..")) or ".." in member.name:
                    raise SystemExit(f"error: {parts[0]} holds an unexpected entry {member.name!r}")
            tar.extractall(into, filter="data")
        runs.append(name.split("-")[0])
    return runs


def score_curve(run: Path) -> list[dict]:
    from molgen.chem.build import mol_from_graph, sanitize
    from molgen.chem.geometry import bond_orders
    from molgen._atomic import replace_atomically
    from molgen.training.edm import load_samples

    metrics_path = run / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    for row in metrics.get("learning_curve", []):
        f = run / "eval_samples" / f"step-{row['step']}.npz"
        if row.get("validity") is None and f.exists():
            zs, xs = load_samples(f)
            row["validity"] = sum(sanitize(mol_from_graph(z, bond_orders(z, x))) is not None
                                  for z, x in zip(zs, xs)) / max(len(zs), 1)
            row["validity_scored_by"] = "benchmarks.gpu_burst.collect (RDKit, after the run)"
    text = json.dumps(metrics, indent=2)
    replace_atomically(metrics_path, lambda f: f.write(text.encode()))
    return metrics.get("learning_curve", [])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_burst.collect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files_at", help="the folder the device tool copied $OUT into")
    p.add_argument("--into", default="runs/gpu-burst")
    args = p.parse_args(argv)
    into = Path(args.into)
    into.mkdir(parents=True, exist_ok=True)
    for run in join_tars(Path(args.files_at), into):
        folder = into / run
        from molgen.models.checkpoint import has_train_state, read_config, read_metrics, read_weights
        from molgen.training.saved_samples import SAMPLE_READERS, score_saved_samples

        info = read_config(folder)
        read_weights(folder, info.get("weights_sha256"))  # the weights against their checksum
        print(f"== {run} ({info['model']}): resumable train state: {has_train_state(folder)}")
        if info["model"] in SAMPLE_READERS:  # runs M and V: samples kept raw (action sequences, graphs)
            for row in score_saved_samples(folder, "moses"):
                print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                                       if k != "scored_by"))
            continue
        if info["model"] != "edm":  # the property predictor: its learning curve and test MAE
            card = read_metrics(folder)
            for row in card.get("learning_curve", []):
                print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            print(f"  test MAE: {card.get('evaluation', {}).get('test_mae')}")
            continue
        for row in score_curve(folder):
            print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                                   if k in ("step", "epochs", "wall_seconds", "atom_stability", "molecule_stability",
                                            "validity", "eval_samples", "eval_steps")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
