"""What :func:`molgen.evaluate` returns: :class:`EvaluationResult`, :data:`METRICS`, the label of
every metric key, and :data:`MOSES_KEYS`, the names MOSES' ``get_all_metrics`` gives them."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..chem.files import write_text

__all__ = ["METRICS", "MOSES_KEYS", "EvaluationResult"]

#: Display label and whether the value is a fraction (shown as a percentage), per metric key.
#: Labels containing ``{ref}`` name the comparison set.
METRICS: dict[str, tuple[str, bool]] = {
    "atom_stability": ("atom stability (EDM)", True),
    "molecule_stability": ("molecule stability (EDM)", True),
    "molecule_stability_charged": ("molecule stability (charge-aware)", True),
    "atom_stability_2d": ("atom stability (charge-aware, 2D)", True),
    "molecule_stability_2d": ("molecule stability (charge-aware, 2D)", True),
    "validity": ("validity", True),
    "validity_connected": ("validity (connected)", True),
    "uniqueness": ("uniqueness (of valid)", True),
    "valid_and_unique": ("valid and unique", True),
    "novelty": ("novelty (of unique, vs train)", True),
    "unique@1000": ("unique@1k", True),
    "unique@10000": ("unique@10k", True),
    "fcd": ("FCD/{ref}", False),
    "snn": ("SNN/{ref}", False),
    "frag": ("Frag/{ref}", False),
    "scaf": ("Scaf/{ref}", False),
    "fcd_testsf": ("FCD/TestSF", False),
    "snn_testsf": ("SNN/TestSF", False),
    "frag_testsf": ("Frag/TestSF", False),
    "scaf_testsf": ("Scaf/TestSF", False),
    "intdiv1": ("IntDiv1", False),
    "intdiv2": ("IntDiv2", False),
    "filters": ("Filters (MCF, PAINS)", True),
    "kl_score": ("GuacaMol KL score (vs train)", False),
    "fcd_score": ("GuacaMol FCD score (vs train)", False),
    "qed_mean": ("QED (mean)", False),
    "sa_mean": ("SA score (mean)", False),
    "logp_mean": ("logP (mean)", False),
    "weight_mean": ("mol. weight (mean, g/mol)", False),
    "qed_w1": ("QED W1 distance/{ref}", False),
    "sa_w1": ("SA W1 distance/{ref}", False),
    "logp_w1": ("logP W1 distance/{ref}", False),
    "weight_w1": ("weight W1 distance/{ref} (g/mol)", False),
}

#: MOSES' ``get_all_metrics`` key -> molgen's metric key, in MOSES' order. MOSES' logP, SA, QED
#: and weight are Wasserstein-1 distances to the test set's property distributions, as here.
MOSES_KEYS: dict[str, str] = {
    "valid": "validity", "unique@1000": "unique@1000", "unique@10000": "unique@10000",
    "FCD/Test": "fcd", "SNN/Test": "snn", "Frag/Test": "frag", "Scaf/Test": "scaf",
    "FCD/TestSF": "fcd_testsf", "SNN/TestSF": "snn_testsf", "Frag/TestSF": "frag_testsf",
    "Scaf/TestSF": "scaf_testsf",
    "IntDiv": "intdiv1", "IntDiv2": "intdiv2", "Filters": "filters",
    "logP": "logp_w1", "SA": "sa_w1", "QED": "qed_w1", "weight": "weight_w1", "Novelty": "novelty",
}


@dataclass
class EvaluationResult:
    """Metrics of one set of molecules. Fractions are in [0, 1]; NaN where undefined."""

    metrics: dict[str, float]
    n_molecules: int
    input_kind: str                      # "3d" (atom types + coordinates) or "2d" (graphs / SMILES)
    reference: str | None = None         # "qm9", "moses", a file path, or None
    reference_label: str = ""            # how tables name the comparison set, e.g. "Test"
    n_unreadable: int = 0                # file entries that could not be read at all
    source: str | None = None            # the file evaluated, if any
    notes: list[str] = field(default_factory=list)
    #: With ``evaluate(..., per_molecule=True)``: a pandas DataFrame, one row per input molecule.
    per_molecule: Any = field(default=None, repr=False, compare=False)

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""
        return {"n_molecules": self.n_molecules, "n_unreadable": self.n_unreadable,
                "input": self.input_kind, "source": self.source, "reference": self.reference,
                "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v)
                            for k, v in self.metrics.items()},
                "notes": list(self.notes)}

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`as_dict` as JSON (atomically, creating parent folders)."""
        return write_text(path, json.dumps(self.as_dict(), indent=2) + "\n")

    def moses_table(self) -> dict[str, float]:
        """The metrics under MOSES' own names (``get_all_metrics``: ``valid``, ``unique@1000``,
        ``FCD/Test``, ..., ``FCD/TestSF``, ..., ``IntDiv``, ``Filters``, ``logP``, ``SA``, ``QED``,
        ``weight``, ``Novelty``), in MOSES' order; NaN for one not computed (FCD with
        ``fcd=False``, unique@10000 below 10,000 valid molecules, TestSF for a reference other than
        ``"moses"``; :attr:`notes` says why). ``Test`` is the reference's comparison set."""
        return {name: float(self.metrics.get(key, math.nan)) for name, key in MOSES_KEYS.items()}

    def per_molecule_csv(self, path: str | os.PathLike) -> Path:
        """Write :attr:`per_molecule` as CSV (atomically, creating parent folders), numbers to 6
        significant digits as ``molgen score`` writes them; empty cells where a value does not apply
        (no SMILES, stability of 2D input, novelty without a training set)."""
        if self.per_molecule is None:
            raise ValueError("no per-molecule table: evaluate with per_molecule=True")
        return write_text(path, self.per_molecule.to_csv(index=False, float_format="%.6g", na_rep=""))

    def table(self) -> str:
        """The metrics as an aligned two-column text table, with notes below it."""
        kind = "3D coordinates" if self.input_kind == "3d" else "graphs / SMILES"
        head = f"{self.n_molecules} molecules ({kind})"
        if self.source:
            head += f" from {self.source}"
        head += f"; reference: {self.reference or 'none'}"
        rows = []
        for key, value in self.metrics.items():
            label, percent = METRICS.get(key, (key, False))
            label = label.format(ref=self.reference_label or "reference")
            if isinstance(value, float) and math.isnan(value):
                text = "n/a"
            else:
                text = f"{100 * value:.2f} %" if percent else f"{value:.4f}"
            rows.append((label, text))
        width = max([len(r[0]) for r in rows] + [6])
        lines = [head, "", f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 9}"]
        lines += [f"{label:<{width}}  {text:>9}" for label, text in rows]
        if self.notes:
            lines += [""] + [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
