"""The small sample-quality check that EDM's training loop runs periodically (learning curve)."""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from ..chem.geometry import bond_orders, stability


def sample_quality(zs: list[np.ndarray], xs: list[np.ndarray]) -> dict[str, float]:
    """Atom / molecule stability (EDM's rule) and RDKit validity of sampled 3D molecules."""
    from ..chem.build import mol_from_graph, sanitize

    n_atoms = n_stable = n_mol_stable = n_valid = 0
    for z, x in zip(zs, xs):
        order = bond_orders(z, x)
        st = stability(z, order)
        n_atoms += st.n_atoms
        n_stable += st.n_stable
        n_mol_stable += st.molecule_stable
        n_valid += sanitize(mol_from_graph(z, order)) is not None
    n = max(len(zs), 1)
    return {"atom_stability": n_stable / max(n_atoms, 1), "molecule_stability": n_mol_stable / n,
            "validity": n_valid / n}


def make_evaluator(n: int | None = None, steps: int | None = None) -> Callable:
    """Evaluator for the trainer: samples n molecules (MOLGEN_EVAL_N, default 256) with the model's
    default step count (or MOLGEN_EVAL_STEPS) and returns their quality."""
    n = n or int(os.environ.get("MOLGEN_EVAL_N", "256"))
    steps = steps or (int(os.environ["MOLGEN_EVAL_STEPS"]) if "MOLGEN_EVAL_STEPS" in os.environ else None)

    def evaluate(model) -> dict[str, float]:
        zs, xs = model.sample_arrays(n, steps=steps, seed=1234, batch_size=n)
        result = sample_quality(zs, xs)
        result["eval_samples"] = n
        result["eval_steps"] = steps or model.default_sampling_steps
        return result

    return evaluate
