"""Metrics for generated molecules: pure functions (``core``, ``moses``, ``guacamol``, ``fcd``,
``properties``) and :func:`evaluate`, which runs the ones that apply to a set of molecules."""
from .evaluate import REFERENCES, EvaluationResult, evaluate

__all__ = ["evaluate", "EvaluationResult", "REFERENCES"]
