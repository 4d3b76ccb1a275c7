"""Score molecules under a model: negative log-likelihood (exact for ar, ELBO for vae, variational bound
for edm), per atom, and the percentile among the model's own test-split molecules (anomaly scoring).

    molgen score molecules.smi --model ar --dataset moses -o scores.csv
    python -m molgen.score samples.sdf --model edm

The CSV has one row per molecule of the file, none dropped: ``smiles``, ``nll`` (nats), ``nll_per_atom``,
``percentile`` (0 to 100; high = less likely than most test molecules), ``bound`` (exact, elbo or vlb) and
``reason`` (why a row has no score). Without ``-o`` the table goes to stdout.
"""
from __future__ import annotations

import argparse
import sys

from .common import parser


def build_parser() -> argparse.ArgumentParser:
    p = parser("molgen score", __doc__)
    p.add_argument("file", help=".smi/.csv/.sdf/.xyz file (gzipped too); 3D files for edm")
    p.add_argument("--model", required=True, help="ar, vae or edm")
    p.add_argument("--dataset", default=None, help="which shipped checkpoint: qm9 or moses (default: qm9)")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped one)")
    p.add_argument("--output", "-o", default=None, help="CSV file to write (default: stdout)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto, CUDA when available, as molgen train)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np

    from .. import models
    from ..chem.files import write_text
    from ..chem.convert import to_mol, to_smiles
    from ..chem.io import read_molecules
    from .common import check_checkpoint, check_device, check_output_file

    check_checkpoint(args.checkpoint)
    if args.output:
        check_output_file(args.output, "--output", (".csv",), inputs={"input file": args.file})
    device = check_device(args.device)
    result = read_molecules(args.file)
    model = models.load(args.model, dataset=args.dataset, checkpoint=args.checkpoint, device=device)
    if model.likelihood_kind == "vlb":  # 3D records; an entry without coordinates is a row with a reason
        items = [(r.atomic_numbers, r.positions) if r.positions is not None else None for r in result]
    else:
        items = [r.mol if r.mol is not None else r.source for r in result]
    table = model.score(items)
    if model.likelihood_kind == "vlb":
        table["smiles"] = [r.mol and to_smiles(to_mol(r.mol)) for r in result]
    if result.unreadable:  # every entry of the file is a row: the unreadable ones with the reader's reason
        import pandas as pd

        rows = table.to_dict("records")
        for pos, why in result.unreadable:
            rows.insert(pos, {"smiles": None, "nll": np.nan, "nll_per_atom": np.nan, "percentile": np.nan,
                              "bound": model.likelihood_kind, "reason": f"unreadable: {why}"})
        table = pd.DataFrame(rows, columns=table.columns)
    text = table.to_csv(index=False, float_format="%.6g", na_rep="")
    if args.output:
        write_text(args.output, text)
    else:
        sys.stdout.write(text)
    scored = int(np.isfinite(table["nll"]).sum())
    ref = "" if table["percentile"].notna().any() else "; no test-split reference in this checkpoint's card (percentile empty)"
    print(f"scored {scored} of {len(table)} molecules ({model.likelihood_kind})" + (
        f", {result.n_failed} of them unreadable (rows with the reason)" if result.n_failed else "") + ref
        + (f"; wrote {args.output}" if args.output else ""), file=sys.stderr)
    return 0
