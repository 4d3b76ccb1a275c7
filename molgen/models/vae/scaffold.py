"""Scaffold-constrained decoding for the graph VAE: the scaffold is decoded first, then the model.

The decoder places atoms one at a time, each bonding to any earlier atoms (at least one), so a
scaffold can simply be its first atoms: the scaffold's atoms (canonical breadth-first order, as in
training) and their bonds are forced, and the decoder, given z from the prior, adds the rest under
its valence masks. New atoms bond only to scaffold atoms that may grow (those bonded to a ``*`` when
the scaffold marks any), each ``*`` is filled before END (a bond of order k fills k of them), and a
new atom is made to bond to an open ``*`` when the atoms left would not suffice otherwise. This is
a constrained decode, not a latent search: it guarantees the scaffold's graph and keeps the
diversity of the prior; the reported log-probabilities are those of the constrained decoder.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...chem.order import canonical_bfs_order
from ...chem.scaffold import Scaffold, parse_scaffold
from .featurization import featurize


@dataclass(frozen=True)
class ScaffoldPrefix:
    """The first ``len(atoms)`` decoding steps, forced: atom tokens (S,), Kekulé bond orders (S, S),
    whether each atom may take new bonds (S,) and its open ``*`` count (S,)."""

    scaffold: Scaffold
    atoms: torch.Tensor
    bonds: torch.Tensor
    ok: torch.Tensor
    stars: torch.Tensor

    @classmethod
    def build(cls, scaffold: "str | Scaffold", tokens: tuple[str, ...], max_atoms: int) -> "ScaffoldPrefix":
        sc = parse_scaffold(scaffold)
        feat = featurize(sc.mol, tokens, max_atoms)
        if isinstance(feat, str):
            raise ValueError(f"scaffold {sc.text!r} cannot be decoded by this model: {feat}")
        nodes, edges, _ = feat
        S = nodes.shape[0]
        if S + sum(sc.stars) > max_atoms:
            raise ValueError(f"scaffold {sc.text!r} has {S} heavy atoms and {sum(sc.stars)} attachment points; "
                             f"this model decodes at most {max_atoms} heavy atoms")
        bonds = torch.zeros(S, S, dtype=torch.long)
        for t, j, order, *_ in edges.tolist():
            bonds[t, j] = bonds[j, t] = order
        bfs = canonical_bfs_order(sc.mol).tolist()   # the featurisation's order
        return cls(sc, torch.as_tensor(nodes[:, 0].astype("int64")), bonds,
                   torch.as_tensor([sc.attachable[a] for a in bfs]),
                   torch.as_tensor([sc.stars[a] for a in bfs], dtype=torch.long))

    def __len__(self) -> int:
        return int(self.atoms.numel())
