"""Sample molecules from a shipped or trained model.

    molgen sample --model edm -n 10 --output out.sdf
    molgen sample --model ar --dataset moses -n 1000 --temperature 1.1 --device auto -o ar.smi
    molgen sample --model edm --fix fragment.xyz --atoms 18 -n 20 -o around.sdf    # 3D inpainting
    molgen sample --model ar --dataset moses --scaffold 'c1ccc2[nH]ccc2c1' -n 100  # every sample holds it
    molgen sample --model vae --dataset moses --scaffold '*c1ccncc1' -n 100        # grows only at '*'
    molgen sample --model vae --condition logp=1 --guidance 2 --candidates 4 -n 100  # p(x | y), latent head
    molgen sample --model ar --dataset moses --condition logp=3.5 --candidates 8 -n 100  # best of 8 by RDKit

``--fix FILE`` (.sdf or .xyz, its first molecule with coordinates) keeps those atoms' elements and
coordinates, in the file's own frame, and generates the rest of each molecule around them (RePaint on
the unconditional EDM; ``--resamplings U`` repeats each step U times for a better fit). The fixed atoms
are the first atoms of every sample; ``--atoms`` is then the total size.

``--scaffold SMILES`` (ar, vae): every sample holds the scaffold; ``*`` marks the atoms that may grow,
each ``*`` a substituent the model must add. ``--scaffold-method auto`` (default) keeps the model's
unconstrained samples that hold it and, past a draw budget, builds the rest on the scaffold's graph;
``filter`` only keeps (an error when the budget runs out), ``decode`` only builds. The summary line
counts the samples of each stage.
"""
from __future__ import annotations

import argparse
import inspect
import sys
import time

from ..nn.precision import PRECISIONS
from .common import parser

OUTPUT_SUFFIXES = (".sdf", ".xyz", ".smi", ".txt", ".csv")


def build_parser() -> argparse.ArgumentParser:
    p = parser("molgen sample", __doc__)
    p.add_argument("--model", default="edm", help="model name: edm, ar or vae (default: edm)")
    p.add_argument("--dataset", default=None, help="which shipped checkpoint: qm9 or moses (default: the model's first, qm9)")
    p.add_argument("-n", "--num", type=int, default=10, help="number of molecules, at most 1,000,000 (default: 10)")
    p.add_argument("--steps", type=int, default=None,
                   help="diffusion sampling steps (edm; default: the checkpoint's default_sampling_steps)")
    p.add_argument("--seed", type=int, default=0, help="random seed, 0 to 2**63 - 1 (default: 0)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (ar, vae)")
    p.add_argument("--top-k", type=int, default=None, help="top-k sampling (ar)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling (ar)")
    p.add_argument("--atoms", type=int, default=None, help="fixed number of atoms per molecule (edm)")
    p.add_argument("--fix", default=None, metavar="FILE",
                   help="edm: keep the atoms of this .sdf/.xyz file where they are and generate around them")
    p.add_argument("--resamplings", type=int, default=None,
                   help="edm with --fix: RePaint passes per step (default: 1)")
    p.add_argument("--scaffold", default=None, metavar="SMILES",
                   help="ar, vae: every sample contains this scaffold; '*' marks where it grows")
    p.add_argument("--scaffold-method", default=None, metavar="METHOD",
                   help="with --scaffold: auto (filter unconstrained samples, decode the rest; default), "
                        "filter or decode only")
    p.add_argument("--max-ring-size", type=int, default=None, metavar="K",
                   help="no ring of more than K atoms (ar, vae; with the valence masks; default: the checkpoint's)")
    p.add_argument("--condition", action="append", default=[], metavar="NAME=VALUE",
                   help="sample p(x | y) from a checkpoint that takes conditions, e.g. --condition logp=2.5 "
                        "--condition qed=0.8 (ar: trained with them; vae: its latent property head) or "
                        "--condition alpha=80 (edm: QM9's alpha Bohr^3, gap/homo/lumo meV, mu D, Cv cal/(mol K)); "
                        "see --list-conditions")
    p.add_argument("--guidance", type=float, default=None,
                   help="with --condition: guidance scale (ar, edm: classifier-free; vae: the likelihood's "
                        "exponent; default 1: plain conditional)")
    p.add_argument("--candidates", type=int, default=None, metavar="K",
                   help="with --condition, 1 to 64: draw K samples per molecule and keep the closest to the "
                        "condition by RDKit's exact values (ar, vae); "
                        "K times the sampling time (default: 1)")
    p.add_argument("--list-conditions", action="store_true",
                   help="list each checkpoint's conditions with their training ranges, and exit")
    p.add_argument("--output", "-o", default=None,
                   help="write .sdf, .xyz or .smi, one record per sample, invalid ones marked (default: SMILES on stdout)")
    p.add_argument("--add-hydrogens", action="store_true",
                   help="edm, .sdf/.xyz output: write the hydrogens RDKit implies as atoms with coordinates "
                        "(placed, then relaxed with the model's atoms fixed; records say added_h; the metrics "
                        "stay the model's)")
    p.add_argument("--conformers", type=int, default=None, metavar="K",
                   help="ar/vae, .sdf output: K seeded ETKDG conformers per molecule as K records, 0 to 50; "
                        "0 writes 2D depictions (default: 1)")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped one)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto, CUDA when available, as molgen train)")
    p.add_argument("--batch-size", type=int, default=None, help="molecules per batch (default: model's)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="edm: the network's precision, fp32 (default) or bf16 (bfloat16 autocast, the diffusion "
                        "arithmetic in float32; CUDA, or a CPU with AVX512-BF16 or AMX)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _sampling_options(args: argparse.Namespace, cls: type) -> dict:
    """The options given, each checked and accepted by this model's ``sample``."""
    from ..chem.geometry import MAX_ATOMS_3D
    from ..chem.scaffold import parse_scaffold
    from ..models.conditioning import parse_condition_args
    from ..models.scaffold_sampling import check_method
    from .common import MAX_SAMPLES, check_count, check_float, check_seed

    if args.num <= 0:
        raise ValueError(f"-n must be a positive number of molecules, got {args.num}")
    check_count(args.num, "-n", 1, MAX_SAMPLES, "; draw more in several runs with different --seed")
    if args.steps is not None and args.steps <= 0:
        raise ValueError(f"--steps must be positive, got {args.steps}")
    check_seed(args.seed)
    check_count(args.batch_size, "--batch-size", 1)
    check_count(args.top_k, "--top-k", 1)
    check_count(args.atoms, "--atoms", 1, MAX_ATOMS_3D)
    check_float(args.temperature, "--temperature")
    check_float(args.top_p, "--top-p", 0.0, 1.0)
    check_count(args.resamplings, "--resamplings", 1, 100)
    check_float(args.guidance, "--guidance", 0.0, 20.0)
    check_count(args.candidates, "--candidates", 1, 64)
    for flag, value in (("--guidance", args.guidance), ("--candidates", args.candidates)):
        if value is not None and not args.condition:
            raise ValueError(f"{flag} applies with --condition only")
    if args.scaffold_method is not None:
        if args.scaffold is None:
            raise ValueError("--scaffold-method applies with --scaffold only")
        try:
            check_method(args.scaffold_method)
        except ValueError as exc:  # the flag's name, not the Python argument's
            raise ValueError(str(exc).replace("scaffold_method", "--scaffold-method")) from None
    if args.max_ring_size is not None:
        if not isinstance(getattr(cls, "max_ring_size", None), property):
            raise ValueError(f"--max-ring-size does not apply to the {args.model} model")
        check_count(args.max_ring_size, "--max-ring-size", 3)
    if args.resamplings is not None and args.fix is None:
        raise ValueError("--resamplings applies with --fix only")
    wanted = {"steps": args.steps, "temperature": args.temperature, "top_k": args.top_k,
              "top_p": args.top_p, "n_atoms": args.atoms, "batch_size": args.batch_size,
              "fixed": _fixed_fragment(args.fix) if args.fix else None, "resamplings": args.resamplings,
              "scaffold": parse_scaffold(args.scaffold) if args.scaffold is not None else None,
              "scaffold_method": args.scaffold_method,
              "condition": parse_condition_args(args.condition) if args.condition else None,
              "guidance": args.guidance, "candidates": args.candidates, "precision": args.precision}
    accepted = inspect.signature(cls.sample).parameters
    opts = {}
    for key, value in wanted.items():
        if value is None:
            continue
        if key not in accepted:
            flag = {"n_atoms": "--atoms", "fixed": "--fix"}.get(key, "--" + key.replace("_", "-"))
            raise ValueError(f"{flag} does not apply to the {args.model} model")
        opts[key] = value
    return opts


def _fixed_fragment(path: str) -> tuple:
    """(atomic numbers, positions in Angstrom) of the first molecule of a 3D file."""
    from ..chem.io import read_molecules

    result = read_molecules(path)
    records = [r for r in result if r.atomic_numbers is not None and r.positions is not None]
    if not records:
        raise ValueError(f"--fix {path}: no molecule with 3D coordinates in it (give an .sdf or .xyz file)")
    return records[0].atomic_numbers, records[0].positions


def _list_conditions(checkpoint: str | None) -> str:
    """One line per checkpoint: its conditions with their training ranges (1st to 99th percentile)."""
    from pathlib import Path

    from ..models.base import PRETRAINED_DIR
    from ..models.checkpoint import read_config
    from ..models.vae.latent_conditioning import read_head_conditions

    folders = [Path(checkpoint)] if checkpoint else sorted(p for p in PRETRAINED_DIR.iterdir() if (p / "config.json").is_file())
    lines = []
    for folder in folders:
        cfg = read_config(folder)["config"]
        names, stats = cfg.get("conditions") or [], cfg.get("condition_stats") or {}
        head = None if names else read_head_conditions(folder)  # a VAE conditioned in latent space
        if head is not None:
            names, stats = head
        ranges = ", ".join(f"{k} {stats[k]['p01']:.3g} to {stats[k]['p99']:.3g}" if k in stats else k for k in names)
        lines.append(f"{folder.name}: {ranges or 'no conditions (unconditional)'}" + (" (latent head)" if head else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_conditions:
        print(_list_conditions(args.checkpoint))
        return 0
    from pathlib import Path

    from .. import models
    from ..models.base import PRETRAINED_DIR
    from .common import check_checkpoint, check_device, check_output_file

    cls = models.model_class(args.model)
    # Every value is checked here, before a model is loaded or a file written.
    opts = _sampling_options(args, cls)
    _check_output_options(args, cls)
    check_checkpoint(args.checkpoint)
    if args.output:  # fail before sampling, not after
        check_output_file(args.output, "--output", OUTPUT_SUFFIXES,
                          {"checkpoint folder": Path(args.checkpoint) if args.checkpoint else None,
                           "folder of shipped checkpoints": PRETRAINED_DIR})
    device = check_device(args.device)
    if args.precision is not None:
        from ..nn.precision import autocast_dtype

        autocast_dtype(args.precision, device, "--precision")  # refused here, before the model loads
    checkpoint = args.checkpoint
    if opts.get("condition") and checkpoint is None:  # the shipped conditional checkpoint, where there is one
        conditional = models.pretrained_path(args.model, args.dataset)
        conditional = conditional.with_name(conditional.name + "-cond")
        checkpoint = conditional if (conditional / "config.json").is_file() else None
    model = models.load(args.model, dataset=args.dataset, checkpoint=checkpoint, device=device)
    if args.max_ring_size is not None:
        model.max_ring_size = args.max_ring_size
    t0 = time.perf_counter()
    result = model.sample(args.num, seed=args.seed, progress=not args.no_progress, **opts)
    seconds = time.perf_counter() - t0
    result.info.setdefault("model", args.model)  # recorded in every file written (titles, properties)
    result.info.setdefault("seed", args.seed)
    result._label_mols()
    notes: list[str] = []
    if args.output:
        import warnings

        if args.add_hydrogens:
            result = result.with_hydrogens()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                result.save(args.output, conformers=args.conformers)
        except OSError as exc:
            raise ValueError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    else:
        for s in result.smiles:
            print(s if s is not None else "<invalid>")
    print(_summary(result, seconds, args.output), file=sys.stderr)
    for note in notes:  # e.g. molecules that could not be embedded, kept with 2D coordinates
        print(f"note: {note}", file=sys.stderr)
    return 0


def _is_3d(cls: type) -> bool:
    """Whether the model draws coordinates (its ``sample`` takes ``n_atoms``: EDM) rather than graphs."""
    return "n_atoms" in inspect.signature(cls.sample).parameters


def _check_output_options(args: argparse.Namespace, cls: type) -> None:
    """``--add-hydrogens`` and ``--conformers``: each for the models and files it applies to."""
    from ..chem.write import MAX_CONFORMERS
    from .common import check_count

    check_count(args.conformers, "--conformers", 0, MAX_CONFORMERS)
    from pathlib import Path

    suffix = Path(args.output).suffix.lower().lstrip(".") if args.output else ""
    if args.conformers is not None:
        if _is_3d(cls):
            raise ValueError(f"--conformers does not apply to the {args.model} model: "
                             "its files hold the model's own coordinates")
        if suffix != "sdf":
            raise ValueError("--conformers applies to .sdf output (-o FILE.sdf)")
    if args.add_hydrogens:
        if not _is_3d(cls):
            raise ValueError(f"--add-hydrogens does not apply to the {args.model} model: "
                             "its SDF/XYZ conformers already have every hydrogen")
        if suffix not in ("sdf", "xyz"):
            raise ValueError("--add-hydrogens applies to .sdf and .xyz output (-o FILE.sdf)")


def _summary(result, seconds: float, output: str | None) -> str:
    valid = [s for s in result.smiles if s is not None]
    line = (f"{len(result)} molecules in {seconds:.1f} s: valid {100 * len(valid) / len(result):.1f} %, "
            f"unique {100 * len(set(valid)) / max(len(valid), 1):.1f} % of valid")
    stab = result.info.get("molecule_stability")
    if stab is not None:
        line += f", stable {100 * stab:.1f} %"
    if "scaffold" in result.info:
        info = result.info
        line += (f", scaffold {info['scaffold']} ({info['scaffold_method']}): {info['scaffold_filtered']} filtered"
                 f" from {info['scaffold_drawn']} unconstrained draws, {info['scaffold_decoded']} decoded"
                 f" ({info['scaffold_redrawn']} redrawn, {info['scaffold_missing']} still without it)")
    if output:
        line += f"; wrote {output}"
    return line
