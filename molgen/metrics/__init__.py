"""Metrics for generated molecules: pure functions over Mols, SMILES and 3D structures (``core``, ``moses``,
``guacamol``, ``fcd``, ``properties``), and :class:`~molgen.metrics.result.EvaluationResult`. They import
:mod:`molgen.chem` and the cache only; :func:`molgen.evaluation.evaluate` runs the ones that apply against a
reference from :mod:`molgen.references`."""
from .result import METRICS, EvaluationResult

__all__ = ["EvaluationResult", "METRICS"]
