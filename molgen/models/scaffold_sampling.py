"""What the graph models share when they sample around a scaffold: filter, decode, and the final check.

``model.sample(n, scaffold=S, scaffold_method=...)`` (AR and VAE) returns ``n`` molecules that all
hold S (:func:`molgen.chem.scaffold.holds`: substructure, and for ``*`` scaffolds the marked rule).
Two stages, run by :func:`sample_with_scaffold`:

1. **filter**: unconstrained draws from the model, in rounds, keeping those that hold S. Kept
   samples are exact draws of p(x | x holds S) (for the AR, of its p(x); their log-probabilities
   are the model's own). The first round is a plain ``n``-sample draw of the seed, so where every
   sample holds S the result is exactly ``model.sample(n, seed)``. After each round the acceptance
   rate is estimated as (accepted + 1) / (drawn + 2); the next round draws the expected number
   still needed, and filtering stops when that would bring the total past ``FILTER_BUDGET * n``
   draws (50 per requested sample: a scaffold that about 1 in 50 of the model's molecules hold).
2. **decode**: the rest from the model's constrained decoder (:mod:`molgen.models.ar.scaffold`,
   :mod:`molgen.models.vae.scaffold`), which builds every sample on the scaffold's graph and so
   guarantees it, at the price of a distribution that is not p(x | S) (it is the model's choices
   conditioned step by step on the forced scaffold actions; rings and size drift from the data).

``scaffold_method``: ``"auto"`` (default) filter, then decode the rest; ``"filter"`` filter only,
raising ValueError when the budget runs out before ``n`` samples hold S (nothing is returned that is
not an exact draw); ``"decode"`` decode only (the behaviour before filtering existed). Filtered samples
come first, decoded ones after. ``info`` records ``scaffold``, ``scaffold_method``,
``scaffold_filtered`` / ``scaffold_decoded`` (samples from each stage), ``scaffold_drawn`` (unconstrained
draws), ``scaffold_acceptance`` (accepted / drawn, None without draws), and for the decode stage
``scaffold_redrawn`` / ``scaffold_missing`` (:func:`keep_scaffold`).

A constrained sample whose fused rings change the scaffold's aromaticity (a piperidine fused to a
benzene ring becomes a tetrahydroquinoline, whose shared bond is aromatic) no longer holds S; those
are redrawn, with the same sampler and generator, at most ``rounds`` times, and counted (kept, never
dropped) when they still lack it.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from rdkit import Chem

from ..chem.convert import to_mol
from ..chem.scaffold import Scaffold, holds

Draw = Callable[[int], tuple[list[Chem.Mol | None], np.ndarray | None]]

#: the scaffold methods of ``sample(..., scaffold_method=...)``
METHODS = ("auto", "filter", "decode")
#: the filter stage draws at most this many unconstrained samples per requested one
FILTER_BUDGET = 50


def check_method(method: object, scaffold: object = True) -> str:
    """``method`` if it is one of :data:`METHODS` (and, other than "auto", comes with a ``scaffold``),
    else ValueError."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"scaffold_method must be one of {', '.join(METHODS)}, got {method!r}")
    if scaffold is None and method != "auto":
        raise ValueError(f"scaffold_method={method!r} applies with a scaffold only")
    return method


def _status(mols: Sequence[Chem.Mol | None], scaffold: Scaffold) -> list[bool | None]:
    """Per sample, whether it holds the scaffold; None where it does not sanitise."""
    out: list[bool | None] = []
    for m in mols:
        mol = None if m is None else to_mol(m)
        out.append(None if mol is None else holds(mol, scaffold))
    return out


def _holding(mols: Sequence[Chem.Mol | None], scaffold: Scaffold) -> list[bool]:
    """Per sample, whether it sanitises and holds the scaffold."""
    return [s is True for s in _status(mols, scaffold)]


def _missing(mols: Sequence[Chem.Mol | None], scaffold: Scaffold) -> list[int]:
    """Indices of the samples that sanitise but do not hold the scaffold (invalid ones are the
    sampler's own result, e.g. without valence masks, and are not redrawn)."""
    return [i for i, s in enumerate(_status(mols, scaffold)) if s is False]


def keep_scaffold(n: int, draw: Draw, scaffold: Scaffold, rounds: int = 20
                  ) -> tuple[list[Chem.Mol | None], np.ndarray | None, dict[str, object]]:
    """``n`` samples from the constrained ``draw`` (which returns molecules and their
    log-probabilities, or None), those that do not hold the scaffold redrawn up to ``rounds`` times;
    returns molecules, log-probabilities and the info entries ``scaffold_redrawn`` and ``scaffold_missing``."""
    mols, logp = draw(n)
    mols = list(mols)
    redrawn = 0
    bad = _missing(mols, scaffold)
    for _ in range(rounds):
        if not bad:
            break
        redrawn += len(bad)
        new, new_logp = draw(len(bad))
        for k, i in enumerate(bad):
            mols[i] = new[k]
            if logp is not None and new_logp is not None:
                logp[i] = new_logp[k]
        still = set(_missing(new, scaffold))
        bad = [i for k, i in enumerate(bad) if k in still]
    return mols, logp, {"scaffold_redrawn": redrawn, "scaffold_missing": len(bad)}


def filter_scaffold(n: int, draw: Draw, scaffold: Scaffold, budget: int
                    ) -> tuple[list[Chem.Mol | None], list[float] | None, int, int]:
    """Up to ``n`` unconstrained samples of ``draw`` that hold the scaffold, drawn in rounds within
    ``budget`` draws (the rule of the module docstring); returns them, their log-probabilities (None
    when ``draw`` gives none), the number drawn and the number that held it."""
    kept: list[Chem.Mol | None] = []
    kept_logp: list[float] = []
    with_logp = True
    drawn = accepted = 0
    size = n
    while True:
        mols, logp = draw(size)
        drawn += size
        with_logp &= logp is not None
        rows = np.flatnonzero(_holding(mols, scaffold))
        accepted += rows.size
        for i in rows[:n - len(kept)].tolist():
            kept.append(mols[i])
            kept_logp.append(float(logp[i]) if logp is not None else math.nan)
        rest = n - len(kept)
        if rest == 0:
            break
        size = math.ceil(rest * (drawn + 2) / (accepted + 1))  # expected draws for the rest
        if drawn + size > budget:
            break
    return kept, kept_logp if with_logp else None, drawn, accepted


def sample_with_scaffold(n: int, scaffold: Scaffold, method: str, free: Draw, constrained: Draw,
                         budget_per_sample: int = FILTER_BUDGET
                         ) -> tuple[list[Chem.Mol | None], np.ndarray | None, dict[str, object]]:
    """``n`` samples that hold ``scaffold``: ``free`` (unconstrained) draws filtered, then the rest
    from the ``constrained`` decoder, as ``method`` says (see the module docstring); returns the
    molecules (filtered first), their log-probabilities (None where a stage gives none) and ``info``."""
    method = check_method(method)
    mols: list[Chem.Mol | None] = []
    logp: list[float] | None = []
    drawn = accepted = 0
    if method != "decode":
        mols, logp, drawn, accepted = filter_scaffold(n, free, scaffold, budget_per_sample * n)
        if method == "filter" and len(mols) < n:
            raise ValueError(
                f"scaffold {scaffold.text!r}: {accepted} of {drawn} unconstrained samples hold it, too few for "
                f"{n} within the filter budget ({budget_per_sample} draws per sample); use "
                "scaffold_method='auto' to decode the rest")
    info: dict[str, object] = {"scaffold": scaffold.text, "scaffold_method": method, "scaffold_filtered": len(mols),
                               "scaffold_decoded": n - len(mols), "scaffold_drawn": drawn,
                               "scaffold_acceptance": accepted / drawn if drawn else None,
                               "scaffold_redrawn": 0, "scaffold_missing": 0}
    if len(mols) < n:
        dec, dec_logp, extra = keep_scaffold(n - len(mols), constrained, scaffold)
        info.update(extra)
        mols = mols + list(dec)
        logp = None if logp is None or dec_logp is None else logp + [float(x) for x in dec_logp]
    return mols, None if logp is None else np.asarray(logp, dtype=np.float64), info
