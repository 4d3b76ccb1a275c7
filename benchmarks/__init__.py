"""molgen's benchmarks: the benchmark suite (this package) and single-purpose studies (benchmarks/studies/).

The suite (``python -m benchmarks.run``, see :mod:`benchmarks.run`) samples the shipped models,
scores them with ``molgen.metrics`` against QM9 or MOSES, quotes published numbers
(:mod:`benchmarks.published`, each with its source), measures speed and memory, draws figures and
writes ``benchmarks/results/<name>.json`` and the report ``benchmarks/RESULTS.md``.

It is also a library: any generator with a ``sample(n)`` method returning SMILES strings, RDKit
Mols or a molgen ``SampleSet`` can be scored and put in the same tables::

    from benchmarks import Run, score, write_report

    row = score(my_model, n=1000, dataset="qm9", name="mine")     # sample, evaluate, time
    print(row.metrics["validity"], row.metrics["fcd"])

    run = Run.load("benchmarks/results/suite-qm9.json")            # the committed QM9 run
    run.add(row)                                                     # rows must share the dataset
    write_report([run], "my_report.md")                             # same tables, your row included

``score`` also takes molecules drawn earlier (``score(samples="mine.sdf", dataset="qm9", name="mine")``),
``nll_molecules=k`` to score k test molecules with the generator's ``log_likelihood`` (SMILES, or
QM9 atom types and coordinates for 3D generators), and ``fcd=False`` to skip ChemNet. Compare rows
with the same number of molecules: FCD, SNN and the other set metrics depend on the sample size.
:func:`check_run` lists any metric out of range (what ``--quick`` enforces in CI).
"""
from __future__ import annotations

from typing import Any

__all__ = ["score", "Row", "Run", "run_suite", "data_rows", "write_report", "render", "check_run", "PUBLISHED"]

_EXPORTS = {"score": "suite", "Row": "suite", "Run": "suite", "run_suite": "suite", "data_rows": "suite",
            "write_report": "report", "render": "report", "check_run": "report", "PUBLISHED": "published"}


def __getattr__(name: str) -> Any:
    # Lazy, so that the studies importing benchmarks.timing do not load torch and RDKit.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"benchmarks.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'benchmarks' has no attribute {name!r}")
