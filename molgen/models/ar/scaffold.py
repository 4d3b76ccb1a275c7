"""Scaffold-constrained decoding for the autoregressive model: every sample contains the scaffold.

The sampler builds a breadth-first action sequence (:mod:`molgen.models.ar.encoding`) whose parents
never move back. A scaffold cannot simply be decoded first, because its early atoms could then take
no substituents. Instead its own canonical action sequence is *interleaved* with free actions: the
molecule is rooted at the scaffold's first atom, and the scaffold's atoms, bonds and ring closures
are taken in their order while the model adds other atoms in between:

- while the scaffold's next action is an atom with scaffold parent ``j``, free atoms may hang only on
  atoms up to ``j``'s (so the breadth-first front never passes ``j`` before that child exists);
  choosing ``j`` as the parent places the scaffold atom (its type and bond are forced);
- a scaffold ring closure is taken right after its atom, as in the encoding;
- valence that the scaffold's pending bonds need is reserved on the atoms already placed;
- STOP waits until the scaffold is complete, and free actions are refused when the scaffold's
  remaining actions would no longer fit within the model's atom and action limits;
- no new bond joins two scaffold atoms (free ring closures would bridge the scaffold itself);
- atoms without an attachment point (when the scaffold marks some with ``*``) take no new bonds,
  and each ``*`` must be filled: STOP waits for it, and the breadth-first front may not pass an atom
  whose ``*`` is still open (a substituent bond, or a ring bond from a new atom, fills it); a marked
  atom takes new bonds of total order at most its open ``*`` (a bond of order k fills k), so every
  sample holds the scaffold by :func:`molgen.chem.scaffold.holds`' marked rule.

Every sequence this allows is one the model's state machine allows, so the samples sanitise under
the valence masks like unconstrained ones. The reported log-probability is that of the constrained
sampler (forced choices count 0), not the model's likelihood of the molecule.
"""
from __future__ import annotations

import numpy as np
import torch

from ...chem.order import canonical_bfs_order
from ...chem.scaffold import Scaffold, parse_scaffold
from .encoding import ATOM, RING, atom_code, code_to_token, linearize, _z_charge


class ScaffoldConstraint:
    """The scaffold's action sequence and, per molecule of a sampling batch, how far it has got."""

    def __init__(self, scaffold: "str | Scaffold", atom_types: tuple[str, ...], max_atoms: int,
                 max_actions: int) -> None:
        sc = parse_scaffold(scaffold)
        lin = linearize(sc.mol)
        if isinstance(lin, str):
            raise ValueError(f"scaffold {sc.text!r} cannot be used: it {lin}")
        index = {atom_code(*_z_charge(t)): i for i, t in enumerate(atom_types)}
        bad = sorted({code_to_token(c) for c in lin.codes.tolist() if c not in index})
        if bad:
            raise ValueError(f"scaffold {sc.text!r} has atom types {', '.join(bad)} outside the model's "
                             f"vocabulary ({', '.join(atom_types)})")
        S, Q = lin.codes.size, lin.kind.size
        stars = sum(sc.stars)
        if S + stars > max_atoms or Q + stars + 1 > max_actions:
            raise ValueError(f"scaffold {sc.text!r} has {S} heavy atoms and {stars} attachment points; this model "
                             f"builds at most {max_atoms} heavy atoms")
        self.scaffold = sc
        self.S, self.Q = S, Q
        self.kind = torch.as_tensor(lin.kind.astype(np.int64))
        self.ptr = torch.as_tensor(lin.ptr.astype(np.int64)).clamp(min=0)
        self.bond = torch.as_tensor(lin.bond.astype(np.int64))
        types = torch.as_tensor([index[c] for c in lin.codes.tolist()])
        atom_of = np.cumsum(lin.kind == ATOM) - 1          # scaffold atom created by (or owning) action q
        self.atom_of = torch.as_tensor(atom_of.astype(np.int64))
        self.tb = types[self.atom_of] * 3 + (self.bond - 1).clamp(min=0)  # forced (type, bond) choice
        self.first_type = int(types[0])
        bfs = canonical_bfs_order(sc.mol)                  # scaffold atom k is sc.mol's atom bfs[k]
        self.attach = torch.as_tensor([sc.attachable[int(a)] for a in bfs])
        self.stars = torch.as_tensor([sc.stars[int(a)] for a in bfs])
        # stars_after[k]: the '*' bonds of scaffold atoms k.. (not placed yet once k atoms are)
        self.stars_after = torch.as_tensor(np.append(np.cumsum(self.stars.numpy()[::-1])[::-1], 0).copy())
        # reserved[q, s]: bond orders scaffold atom s still needs once actions < q are done
        reserved = np.zeros((Q + 1, S), np.int64)
        for q in range(Q - 1, -1, -1):
            reserved[q] = reserved[q + 1]
            if q > 0:
                reserved[q, atom_of[q]] += lin.bond[q]
                reserved[q, lin.ptr[q]] += lin.bond[q]
        self.reserved = torch.as_tensor(reserved)
        self.max_atoms, self.max_actions = max_atoms, max_actions

    # --- per-batch state -------------------------------------------------------------------------
    def start(self, batch: int, device: torch.device) -> None:
        for name in ("kind", "ptr", "bond", "atom_of", "tb", "attach", "stars", "stars_after", "reserved"):
            setattr(self, name, getattr(self, name).to(device))
        self.q = torch.zeros(batch, dtype=torch.long, device=device)
        self.m = torch.full((batch, self.S), -1, dtype=torch.long, device=device)  # molecule index of scaffold atoms
        self.ok = torch.ones(batch, self.max_atoms, dtype=torch.bool, device=device)  # may take new bonds
        self.need = torch.zeros(batch, self.max_atoms, dtype=torch.long, device=device)  # open '*' bonds
        self.scaf = torch.zeros(batch, self.max_atoms, dtype=torch.bool, device=device)  # scaffold atoms

    def select(self, idx: torch.Tensor) -> None:
        for name in ("q", "m", "ok", "need", "scaf"):
            setattr(self, name, getattr(self, name)[idx])

    def _next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The scaffold's next action per molecule: its index, whether it is a pending atom or ring
        closure, and the molecule index of its scaffold parent / ring target (placed already)."""
        q = self.q.clamp(max=self.Q - 1)
        pending = self.q < self.Q
        mp = self.m.gather(1, self.ptr[q][:, None]).squeeze(1)
        return q, pending & (self.kind[q] == ATOM), pending & (self.kind[q] == RING), mp

    # --- masks -----------------------------------------------------------------------------------
    def free_rem(self, rem: torch.Tensor) -> torch.Tensor:
        """Remaining valence (B, N) less what the scaffold's pending bonds need; on the atoms of a
        scaffold with ``*``, at most their open ``*`` (the hydrogens written on a marked atom stay)."""
        B, N = rem.shape
        res = torch.zeros(B, N + 1, dtype=rem.dtype, device=rem.device)
        cols = torch.where(self.m >= 0, self.m, N).clamp(max=N)
        res.scatter_(1, cols, self.reserved[self.q])
        free = rem - res[:, :N]
        if self.scaffold.marked:
            free = torch.where(self.scaf[:, :N], torch.minimum(free, self.need[:, :N]), free)
        return free

    def masks(self, n: torch.Tensor, t: int, T: int, kind_m: torch.Tensor, parent_m: torch.Tensor,
              ring_m: torch.Tensor, last: torch.Tensor, done: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The model's masks (computed with :meth:`free_rem`) restricted to what keeps the scaffold."""
        N = parent_m.shape[1]
        q, pend_atom, pend_ring, mp = self._next()
        need = self.need[:, :N]
        open_ = need > 0
        ar = torch.arange(N, device=n.device)
        lim = torch.where(open_.any(1), open_.long().argmax(1), N)  # the front may not pass an open '*'
        placed = (self.m >= 0).sum(1)
        stars = need.sum(1) + self.stars_after[placed]             # '*' bonds still to make, placed or not
        left = self.Q - self.q + stars                             # actions the scaffold still needs
        atoms_left = self.S - placed + stars
        room = ~done & ((T - 2 - t) >= left) & (n + 1 + atoms_left <= self.max_atoms)
        fill = ~done & ((T - 1 - t) >= left) & (n + atoms_left <= self.max_atoms)  # an atom that fills a '*'
        ok = self.ok[:, :N]
        free_parent = (parent_m & ok & torch.where(open_, fill[:, None], room[:, None]) & (ar <= lim[:, None])
                       & torch.where(pend_atom[:, None], ar <= mp[:, None], True))
        forced = pend_atom & (mp <= lim)
        parent = free_parent | (forced[:, None] & (ar == mp[:, None]))
        scaf = self.scaf[:, :N]  # no new bond joins two scaffold atoms (no bridges across the scaffold)
        ring_free = ring_m & ok & ok.gather(1, last[:, None]) & room[:, None] & ~(scaf & scaf.gather(1, last[:, None]))
        ring = torch.where(pend_ring[:, None], ar == mp[:, None], ring_free)
        atom_k = torch.where(pend_ring, False, forced | (kind_m[:, 0] & free_parent.any(1)))
        ring_k = pend_ring | (kind_m[:, 1] & ring_free.any(1))
        stop_k = kind_m[:, 2] & (self.q >= self.Q) & ~open_.any(1)
        return torch.stack([atom_k, ring_k, stop_k], 1), parent, ring

    def atom_mask(self, par: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """(type, bond) mask (B, 3V): the scaffold atom's own when ``par`` is its scaffold parent."""
        q, pend_atom, _, mp = self._next()
        forced = pend_atom & (par == mp)
        one = torch.nn.functional.one_hot(self.tb[q], base.shape[-1]).bool()
        return torch.where(forced[:, None], one, base)

    def bond_mask(self, base: torch.Tensor) -> torch.Tensor:
        q, _, pend_ring, _ = self._next()
        one = torch.nn.functional.one_hot((self.bond[q] - 1).clamp(min=0), 3).bool()
        return torch.where(pend_ring[:, None], one, base)

    def first_mask(self, batch: int, n_types: int, device: torch.device) -> torch.Tensor:
        mask = torch.zeros(batch, n_types, dtype=torch.bool, device=device)
        mask[:, self.first_type] = True
        return mask

    # --- bookkeeping -----------------------------------------------------------------------------
    def advance(self, kind: torch.Tensor, par: torch.Tensor, tb: torch.Tensor, bond: torch.Tensor,
                n: torch.Tensor, live: torch.Tensor) -> None:
        """Record the action just chosen (before it is applied: ``par`` the parent or ring target,
        ``bond`` its order, ``n`` the new atom's index)."""
        q, pend_atom, pend_ring, mp = self._next()
        first = n == 0
        took_atom = live & (kind == ATOM) & pend_atom & (first | ((par == mp) & (tb == self.tb[q])))
        took_ring = live & (kind == RING) & pend_ring
        s = self.atom_of[q]
        rows = torch.nonzero(took_atom).squeeze(1)
        if rows.numel():
            u = n[rows].clamp(max=self.max_atoms - 1)
            self.m[rows, s[rows]] = u
            self.ok[rows, u] = self.attach[s[rows]]
            self.need[rows, u] = self.stars[s[rows]]
            self.scaf[rows, u] = True
        # a free bond fills the open '*' of the scaffold atoms it touches
        free_atom = live & (kind == ATOM) & ~took_atom & ~first
        free_ring = live & (kind == RING) & ~took_ring
        for rows, u in ((torch.nonzero(free_atom).squeeze(1), par),
                        (torch.nonzero(free_ring).squeeze(1), par),
                        (torch.nonzero(free_ring).squeeze(1), (n - 1).clamp(min=0))):
            if rows.numel():
                self.need[rows, u[rows]] = (self.need[rows, u[rows]] - bond[rows]).clamp(min=0)
        self.q = self.q + (took_atom | took_ring).long()
