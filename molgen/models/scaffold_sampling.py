"""What the graph models share when they sample around a scaffold: the final check and redraw.

Both constrained decoders (:mod:`molgen.models.ar.scaffold`, :mod:`molgen.models.vae.scaffold`)
build every sample on the scaffold's graph: its atoms and Kekulé bonds. A ring that the model fuses
onto the scaffold can still change its aromaticity (a piperidine fused to a benzene ring becomes a
tetrahydroquinoline, whose shared bond is aromatic), and then RDKit no longer finds the scaffold as
a substructure. Those samples are redrawn, with the same sampler and generator, at most ``rounds``
times; ``info`` reports how many were redrawn and how many still lack it (kept, never dropped).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from rdkit import Chem

from ..chem.convert import to_mol
from ..chem.scaffold import Scaffold, contains

Draw = Callable[[int], tuple[list[Chem.Mol | None], np.ndarray | None]]


def _missing(mols: Sequence[Chem.Mol | None], scaffold: Scaffold) -> list[int]:
    """Indices of the samples that sanitise but do not contain the scaffold (invalid ones are the
    sampler's own result, e.g. without valence masks, and are not redrawn)."""
    out = []
    for i, m in enumerate(mols):
        mol = None if m is None else to_mol(m)
        if mol is not None and not contains(mol, scaffold):
            out.append(i)
    return out


def keep_scaffold(n: int, draw: Draw, scaffold: Scaffold, rounds: int = 20
                  ) -> tuple[list[Chem.Mol | None], np.ndarray | None, dict[str, object]]:
    """``n`` samples from ``draw`` (which returns molecules and their log-probabilities, or None),
    those that lost the scaffold redrawn up to ``rounds`` times; returns molecules, log-probabilities
    and the info entries ``scaffold``, ``scaffold_redrawn`` and ``scaffold_missing``."""
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
    return mols, logp, {"scaffold": scaffold.text, "scaffold_redrawn": redrawn, "scaffold_missing": len(bad)}
