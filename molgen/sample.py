"""Sample molecules from a shipped or trained model.

    python -m molgen.sample --model edm -n 10 --output out.sdf
"""
from __future__ import annotations

import argparse
import inspect
import sys
import time

from ._cli import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m molgen.sample", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="edm", help="model name: edm, ar or vae (default: edm)")
    p.add_argument("--dataset", default=None, help="which shipped checkpoint: qm9 or moses (default: the model's first, qm9)")
    p.add_argument("-n", "--num", type=int, default=10, help="number of molecules (default: 10)")
    p.add_argument("--steps", type=int, default=None,
                   help="diffusion sampling steps (edm; default: the checkpoint's default_sampling_steps)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (ar, vae)")
    p.add_argument("--top-k", type=int, default=None, help="top-k sampling (ar)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling (ar)")
    p.add_argument("--atoms", type=int, default=None, help="fixed number of atoms per molecule (edm)")
    p.add_argument("--output", "-o", default=None, help="write .sdf, .xyz or .smi (default: SMILES on stdout)")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped one)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--batch-size", type=int, default=None, help="molecules per batch (default: model's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .models import load, model_class

    cls = model_class(args.model)
    if args.num <= 0:
        raise ValueError(f"-n must be a positive number of molecules, got {args.num}")
    if args.steps is not None and args.steps <= 0:
        raise ValueError(f"--steps must be positive, got {args.steps}")
    wanted = {"steps": args.steps, "temperature": args.temperature, "top_k": args.top_k,
              "top_p": args.top_p, "n_atoms": args.atoms, "batch_size": args.batch_size}
    accepted = inspect.signature(cls.sample).parameters
    opts = {}
    for key, value in wanted.items():
        if value is None:
            continue
        if key not in accepted:
            flag = "--atoms" if key == "n_atoms" else "--" + key.replace("_", "-")
            raise ValueError(f"{flag} does not apply to the {args.model} model")
        opts[key] = value
    if args.output:  # fail before sampling, not after
        from pathlib import Path

        out = Path(args.output)
        if out.suffix.lower() not in (".sdf", ".xyz", ".smi", ".txt", ".csv"):
            raise ValueError(f"cannot write {out.suffix or 'files without an extension'}; use .sdf, .xyz or .smi")
        if out.parent and not out.parent.exists():
            raise ValueError(f"cannot write {out}: folder {out.parent} does not exist")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but no CUDA device is available")
    model = load(args.model, dataset=args.dataset, checkpoint=args.checkpoint, device=args.device)
    t0 = time.perf_counter()
    result = model.sample(args.num, seed=args.seed, progress=not args.no_progress, **opts)
    seconds = time.perf_counter() - t0
    if args.output:
        try:
            result.save(args.output)
        except OSError as exc:
            raise ValueError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        for s in result.smiles:
            print(s if s is not None else "<invalid>")
    valid = [s for s in result.smiles if s is not None]
    line = (f"{len(result)} molecules in {seconds:.1f} s: valid {100 * len(valid) / len(result):.1f} %, "
            f"unique {100 * len(set(valid)) / max(len(valid), 1):.1f} % of valid")
    stab = result.info.get("molecule_stability")
    if stab is not None:
        line += f", stable {100 * stab:.1f} %"
    if args.output:
        line += f"; wrote {args.output}"
    print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
