"""The one canonical atom order of the graph models: breadth-first from canonical rank 0.

Atoms are ranked by RDKit's canonical ranks (``CanonicalRankAtoms`` with ties broken) and visited
breadth-first from the atom of rank 0, the neighbours of each atom in rank order. Ranks and
neighbours come from the sanitised molecule as given (aromatic bonds included): kekulisation does
not change which atoms are bonded, so the order does not depend on it. Which Kekulé structure an
encoding then takes is the encoding's own choice: the autoregressive model kekulises the molecule
renumbered by rank (so its bond orders do not depend on how the input was written), the VAE in the
input's numbering; both are kept as their trained weights expect.
"""
from __future__ import annotations

import numpy as np
from rdkit import Chem


def canonical_ranks(mol: Chem.Mol) -> np.ndarray:
    """``by_rank[r]``: the index of the atom of canonical rank ``r`` (ties broken), int64."""
    return np.argsort(list(Chem.CanonicalRankAtoms(mol, breakTies=True))).astype(np.int64)


def canonical_bfs_order(mol: Chem.Mol, by_rank: np.ndarray | None = None) -> np.ndarray:
    """Atom indices of ``mol`` in canonical breadth-first order (int64; ``by_rank``: its
    :func:`canonical_ranks`, if already computed). A disconnected molecule gives only the atoms
    reachable from rank 0."""
    by_rank = canonical_ranks(mol) if by_rank is None else by_rank
    bonded = Chem.GetAdjacencyMatrix(mol, useBO=True)[np.ix_(by_rank, by_rank)] > 0  # in rank numbering
    neighbours = [np.flatnonzero(row).tolist() for row in bonded]
    bfs, seen = [0], [False] * len(neighbours)
    if not neighbours:
        return np.zeros(0, np.int64)
    seen[0] = True
    for i in bfs:  # the list grows while it is walked
        for nb in neighbours[i]:
            if not seen[nb]:
                seen[nb] = True
                bfs.append(nb)
    return by_rank[np.asarray(bfs, np.int64)]
