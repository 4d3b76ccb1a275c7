"""Refine 3D geometries with EDM: noise the coordinates to level S, then run the reverse chain back,
keeping each molecule's elements (SDEdit-style refinement of a rough or perturbed geometry).

    molgen denoise rough.sdf --strength 0.2 -o refined.sdf
    python -m molgen.denoise rough.xyz --strength 0.1 -o refined.xyz

``--strength`` is the fraction of the noise chain (0 to 1): small values polish, large ones redraw.
Per molecule it prints the RMSD to the input (Angstrom, after the best superposition) and EDM's
molecule stability before and after; molecules that cannot be refined (no coordinates, elements the
model does not know, too many atoms) are listed with the reason and left out of the output.
"""
from __future__ import annotations

import argparse
import sys

from ..nn.precision import PRECISIONS
from .common import parser

OUTPUT_SUFFIXES = (".sdf", ".xyz")


def build_parser() -> argparse.ArgumentParser:
    p = parser("molgen denoise", __doc__)
    p.add_argument("input", help=".sdf or .xyz file of 3D molecules")
    p.add_argument("--strength", type=float, default=0.2, help="noise level, a fraction of the chain in (0, 1] (default: 0.2)")
    p.add_argument("--output", "-o", required=True, help="refined molecules (.sdf or .xyz)")
    p.add_argument("--model", default="edm", help="a 3D diffusion model (default: edm)")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped one)")
    p.add_argument("--steps", type=int, default=None, help="reverse steps (default: the checkpoint's, scaled by the strength)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="the network's precision: fp32 (default) or bf16 (bfloat16 autocast, the diffusion "
                        "arithmetic in float32; CUDA, or a CPU with AVX512-BF16 or AMX)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto, CUDA when available, as molgen train)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .. import models
    from ..chem.geometry import bond_orders, stability
    from ..chem.io import read_molecules
    from ..models.edm.constrained import kabsch_rmsd
    from .common import check_checkpoint, check_count, check_device, check_float, check_output_file, check_seed

    check_float(args.strength, "--strength", 0.0, 1.0)
    check_count(args.steps, "--steps", 1)
    check_seed(args.seed)
    check_checkpoint(args.checkpoint)
    check_output_file(args.output, "--output", OUTPUT_SUFFIXES, inputs={"input file": args.input})
    device = check_device(args.device)
    from ..nn.precision import autocast_dtype

    autocast_dtype(args.precision, device, "--precision")  # refused here, before the model loads
    result = read_molecules(args.input)
    model = models.load(args.model, checkpoint=args.checkpoint, device=device)
    if not hasattr(model, "refine"):
        raise ValueError(f"the {args.model} model has no 3D refinement; use --model edm")
    known = set(model.type_z.tolist())
    rows, skipped = [], []
    for i, r in enumerate(result):
        if r.atomic_numbers is None or r.positions is None:
            skipped.append((i, "no 3D coordinates"))
        elif not set(int(z) for z in r.atomic_numbers) <= known:
            skipped.append((i, f"elements outside {', '.join(model.atom_types)}"))
        elif len(r.atomic_numbers) > model.max_atoms:
            skipped.append((i, f"{len(r.atomic_numbers)} atoms, more than the model's {model.max_atoms}"))
        else:
            rows.append((i, (r.atomic_numbers, r.positions)))
    if not rows:
        raise ValueError(f"no molecule in {args.input} can be refined" + (f" ({skipped[0][1]})" if skipped else ""))
    for i, reason in skipped:
        print(f"molecule {i}: skipped ({reason})", file=sys.stderr)
    out = model.refine([rec for _, rec in rows], strength=args.strength, seed=args.seed, steps=args.steps,
                       precision=args.precision)
    out.info["input_index"] = [i for i, _ in rows]
    out.save(args.output)
    print("index\tatoms\trmsd_A\tstable_before\tstable_after")
    n_before = n_after = 0
    for (i, (z, x)), x_new in zip(rows, out.positions):
        before = stability(z, bond_orders(z, x)).molecule_stable
        after = stability(z, bond_orders(z, x_new)).molecule_stable
        n_before, n_after = n_before + before, n_after + after
        print(f"{i}\t{len(z)}\t{kabsch_rmsd(x_new, x):.3f}\t{int(before)}\t{int(after)}")
    print(f"refined {len(rows)} molecules at strength {args.strength}: stable {n_before} -> {n_after}"
          + (f", {len(skipped)} skipped" if skipped else "") + f"; wrote {args.output}", file=sys.stderr)
    return 0
