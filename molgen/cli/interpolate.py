"""Walk the graph VAE's latent space between two molecules and print the decoded molecules.

    molgen interpolate "CC(=O)O" "c1ccccc1O" --steps 8
    molgen interpolate SMILES_A SMILES_B --dataset moses --spherical

Both molecules are encoded to their posterior means; ``--steps`` evenly spaced points from the first
to the second (both included) are decoded greedily. One canonical SMILES per line is printed
("<invalid>" where a point decodes to nothing RDKit accepts; never with the default valence masks).
"""
from __future__ import annotations

import argparse

from .common import parser

#: The most points on one path (each is decoded into a molecule).
MAX_STEPS = 10_000


def build_parser() -> argparse.ArgumentParser:
    p = parser("molgen interpolate", __doc__)
    p.add_argument("start", metavar="SMILES_A", help="first molecule")
    p.add_argument("end", metavar="SMILES_B", help="second molecule")
    p.add_argument("--steps", type=int, default=8, help="points on the path, endpoints included, 2 to 10,000 (default: 8)")
    p.add_argument("--dataset", default=None, help="which shipped checkpoint: qm9 or moses (default: qm9)")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped one)")
    p.add_argument("--spherical", action="store_true", help="spherical instead of linear interpolation")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto, CUDA when available, as molgen train)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..models import load
    from .common import check_checkpoint, check_count, check_device

    check_count(args.steps, "--steps", 2, MAX_STEPS)
    check_checkpoint(args.checkpoint)
    model = load("vae", dataset=args.dataset, checkpoint=args.checkpoint, device=check_device(args.device))
    for smiles in model.interpolate(args.start, args.end, steps=args.steps, spherical=args.spherical):
        print(smiles if smiles is not None else "<invalid>")
    return 0
