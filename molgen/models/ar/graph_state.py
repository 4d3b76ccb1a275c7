"""The autoregressive model's graph state machine, in two equivalent forms.

:class:`GraphState` holds the partial graphs of a sampling batch and applies one action per
molecule at a time; :func:`teacher_states` computes every intermediate state of whole action
sequences at once (teacher forcing: training and exact likelihoods). Both give the same allowed
actions (:func:`action_masks`), remaining valences, graph distances, attention relations and token
features; the tests check it. Actions are those of :mod:`molgen.models.ar.encoding`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .actions import ATOM, RING, STOP

BIG = 1000  # "infinite" graph distance


def action_masks(n: torch.Tensor, last_parent: torch.Tensor, ring_lo: torch.Tensor, rem: torch.Tensor,
                  done: torch.Tensor, valence: bool, max_atoms: int, last_step: torch.Tensor,
                  ring_dist: torch.Tensor | None = None, max_ring: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which actions are allowed, for states of any leading shape S (rem: S + (N,)).

    Returns kinds S + (3,) (ATOM, RING, STOP), parents S + (N,) and ring targets S + (N,).
    Structure: parents never precede the last parent (breadth-first order), ring targets lie
    strictly between the lower bound ``ring_lo`` and the last atom, the first action adds an atom,
    the last allowed action (``last_step``) is STOP. Valence: a bond needs remaining valence >= 1 on
    both ends (bond orders are masked by the caller). Ring size, with ``valence`` and ``max_ring``: a
    ring bond from the last atom to an atom ``ring_dist`` (S + (N,)) bonds away closes a ring of
    ``ring_dist + 1`` atoms, at most ``max_ring``.
    """
    ar = torch.arange(rem.shape[-1], device=rem.device)
    exists = ar < n[..., None]
    last = (n - 1).clamp(min=0)
    parent = exists & (ar >= last_parent[..., None])
    ring = exists & (ar > ring_lo[..., None]) & (ar < last[..., None])
    if valence:
        parent = parent & (rem >= 1)
        ring = ring & (rem >= 1) & (rem.gather(-1, last[..., None]) >= 1)
        if max_ring is not None:
            ring = ring & (ring_dist < max_ring)
    first = n == 0
    grow = ~done & ~last_step
    atom_ok = (first | (parent.any(-1) & (n < max_atoms))) & grow
    kind = torch.stack([atom_ok, ring.any(-1) & grow, ~first | done], -1)
    return kind, parent, ring


class GraphState:
    """Partial graphs of B molecules under construction (room for N atoms each), as tensors.

    ``sparse=True`` restricts the O(B N^2) ring-closure distance update to the rows that close a
    ring (cheaper on CPUs; the dense form avoids a device sync on GPUs).
    """

    def __init__(self, batch: int, n_max: int, device: torch.device, sparse: bool = False) -> None:
        self.N, self.B, self.sparse = n_max, batch, sparse
        self.rows = torch.arange(batch, device=device)
        self.n = torch.zeros(batch, dtype=torch.long, device=device)
        self.types = torch.zeros(batch, n_max, dtype=torch.long, device=device)
        self.rem = torch.zeros(batch, n_max, dtype=torch.long, device=device)
        self.adj = torch.zeros(batch, n_max, n_max, dtype=torch.long, device=device)
        self.dist = torch.full((batch, n_max, n_max), BIG, dtype=torch.long, device=device)
        self.last_parent = torch.zeros(batch, dtype=torch.long, device=device)
        self.ring_lo = torch.zeros(batch, dtype=torch.long, device=device)
        self.done = torch.zeros(batch, dtype=torch.bool, device=device)

    @property
    def ar(self) -> torch.Tensor:
        return torch.arange(self.N, device=self.n.device)

    def grow(self, n_max: int) -> None:
        """Make room for ``n_max`` atoms per molecule."""
        extra = n_max - self.N
        if extra <= 0:
            return
        self.types = F.pad(self.types, (0, extra))
        self.rem = F.pad(self.rem, (0, extra))
        self.adj = F.pad(self.adj, (0, extra, 0, extra))
        self.dist = F.pad(self.dist, (0, extra, 0, extra), value=BIG)
        self.N = n_max

    def select(self, idx: torch.Tensor) -> None:
        """Keep only the molecules ``idx`` (drop finished ones from a sampling batch)."""
        for name in ("n", "types", "rem", "adj", "dist", "last_parent", "ring_lo", "done"):
            setattr(self, name, getattr(self, name)[idx])
        self.B = int(idx.numel())
        self.rows = torch.arange(self.B, device=idx.device)

    @property
    def last(self) -> torch.Tensor:
        return (self.n - 1).clamp(min=0)

    def row(self, m: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``m[b, idx[b], :]`` for a (B, N, N) tensor."""
        return m[self.rows, idx]

    def masks(self, valence: bool, max_atoms: int, last_step: bool, rem: torch.Tensor | None = None,
              max_ring: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Allowed kinds (B, 3: ATOM, RING, STOP), parents (B, N) and ring targets (B, N); valence
        from ``rem`` where given (e.g. less what a scaffold still needs), else the remaining valence;
        with ``max_ring`` no ring closure makes a ring of more atoms (see :func:`action_masks`)."""
        ring_dist = self.row(self.dist, self.last) if max_ring is not None else None
        return action_masks(self.n, self.last_parent, self.ring_lo, self.rem if rem is None else rem, self.done,
                             valence, max_atoms, torch.tensor(last_step, device=self.n.device), ring_dist, max_ring)

    def apply(self, kind: torch.Tensor, typ: torch.Tensor, ptr: torch.Tensor, bond: torch.Tensor,
              maxval: torch.Tensor) -> dict[str, torch.Tensor]:
        """Apply one action per molecule; return the features of the token that embeds it."""
        rows = self.rows
        live = ~self.done
        is_atom = (kind == ATOM) & live
        is_ring = (kind == RING) & live
        first = is_atom & (self.n == 0)
        bonded = (is_atom & ~first) | is_ring
        u = torch.where(is_atom, self.n, self.last).clamp(max=self.N - 1)
        v = ptr.clamp(min=0, max=self.N - 1)
        b = torch.where(bonded, bond, torch.zeros_like(bond))
        du, dv = self.dist[rows, u], self.dist[rows, v]
        ring_size = torch.where(is_ring, dv.gather(1, u[:, None]).squeeze(1) + 1, torch.zeros_like(u))
        # atoms and remaining valence
        self.types[rows, u] = torch.where(is_atom, typ, self.types[rows, u])
        self.rem[rows, u] += torch.where(is_atom, maxval[typ], 0) - b
        self.rem[rows, v] -= torch.where(bonded, b, 0)
        # bonds
        self.adj[rows, u, v] = torch.where(bonded, b, self.adj[rows, u, v])
        self.adj[rows, v, u] = self.adj[rows, u, v]
        # shortest-path distances: a new atom hangs off its parent; a ring bond may shorten paths
        new_row = torch.where(first[:, None], BIG, dv + 1)
        new_row[rows, u] = 0
        new_row = torch.where(is_atom[:, None], new_row, du)
        self.dist[rows, u] = new_row
        self.dist[rows, :, u] = new_row
        if self.sparse:
            idx = torch.nonzero(is_ring).squeeze(1)
            if idx.numel():
                a, c = du[idx], dv[idx]
                via = torch.minimum(a[:, :, None] + 1 + c[:, None, :], c[:, :, None] + 1 + a[:, None, :])
                self.dist[idx] = torch.minimum(self.dist[idx], via)
        else:
            via = torch.minimum(du[:, :, None] + 1 + dv[:, None, :], dv[:, :, None] + 1 + du[:, None, :])
            self.dist = torch.where(is_ring[:, None, None], torch.minimum(self.dist, via), self.dist)
        # breadth-first bookkeeping
        self.n = self.n + is_atom.long()
        parent = torch.where(first, 0, v)
        self.last_parent = torch.where(is_atom, parent, self.last_parent)
        self.ring_lo = torch.where(is_atom, parent, torch.where(is_ring, v, self.ring_lo))
        self.done = self.done | (kind == STOP)
        owner = self.last
        return {"kind": is_ring.long(), "typ": self.types[rows, owner],
                "ptype": torch.where(bonded, self.types[rows, v], -1),
                "bond": b, "offset": torch.where(bonded, owner - v, 0), "ring": ring_size,
                "pos": owner, "rem": self.rem[rows, owner]}

    def relation(self, owners: torch.Tensor, max_distance: int) -> torch.Tensor:
        """Relation index of the current token (owner = last atom) to tokens with ``owners`` (B, T):
        0 BOS, 1 same atom, 2..4 bonded (order 1..3), 5.. distance 2..max_distance."""
        o = owners.clamp(min=0, max=self.N - 1)
        d = self.dist[self.rows, self.last].gather(1, o)
        order = self.adj[self.rows, self.last].gather(1, o)
        rel = torch.where(d == 0, 1, torch.where(d == 1, 1 + order, 3 + d.clamp(max=max_distance)))
        bos = (owners < 0) | (self.n == 0)[:, None]
        return torch.where(bos, 0, rel)


def teacher_states(kind: torch.Tensor, typ: torch.Tensor, ptr: torch.Tensor, bond: torch.Tensor,
                    maxval: torch.Tensor, valence: bool, max_atoms: int, max_actions: int,
                    max_distance: int, max_ring: int | None = None) -> dict[str, Any]:
    """Everything :class:`GraphState` would produce step by step, for whole padded action sequences
    (B, L) at once: masks, remaining valences, distances from the last atom, attention relations and
    token features. Only a loop over atoms (prefix-graph distances) remains, not over actions.
    """
    B, L = kind.shape
    dev = kind.device
    t_idx = torch.arange(L, device=dev)
    is_atom, is_ring = kind == ATOM, kind == RING
    cum = torch.cumsum(is_atom.long(), 1)
    n_t = cum - is_atom.long()  # atoms before action t = in the state token t sees
    N = max(int(cum[:, -1].max()), 1)
    ar = torch.arange(N, device=dev)
    u = torch.where(is_atom, n_t, n_t - 1).clamp(0, N - 1)
    v = ptr.clamp(0, N - 1)
    bonded = (is_atom & (n_t > 0)) | is_ring
    b = torch.where(bonded, bond, 0)
    types = torch.zeros(B, N + 1, dtype=torch.long, device=dev)
    types.scatter_(1, torch.where(is_atom, n_t, N), typ)
    types = types[:, :N]
    # remaining valence before each action
    contrib = torch.zeros(B, L, N, dtype=torch.long, device=dev)
    contrib.scatter_add_(2, u[..., None], b[..., None]).scatter_add_(2, v[..., None], b[..., None])
    used = torch.cumsum(contrib, 1) - contrib
    rem = (ar < n_t[..., None]) * maxval[types][:, None, :] - used
    # breadth-first bookkeeping
    last_atom_act = torch.cummax(torch.where(is_atom, t_idx, -1), 1).values
    la = torch.cat([torch.full((B, 1), -1, device=dev, dtype=torch.long), last_atom_act[:, :-1]], 1)
    last_parent = torch.where(la >= 0, v.gather(1, la.clamp(min=0)), 0)
    ring_lo = torch.cat([torch.zeros(B, 1, dtype=torch.long, device=dev), v[:, :-1]], 1)
    stops = torch.cumsum((kind == STOP).long(), 1)
    done = (stops - (kind == STOP).long()) > 0
    # bond orders and creation times of the final graphs
    flat = N * N
    order = torch.zeros(B, flat + 1, dtype=torch.long, device=dev)
    born = torch.full((B, flat + 1), BIG, dtype=torch.long, device=dev)
    for x, y in ((u, v), (v, u)):
        idx = torch.where(bonded, x * N + y, flat)
        order.scatter_(1, idx, b)
        born.scatter_(1, idx, t_idx.expand(B, L))
    order, born = order[:, :flat].view(B, N, N), born[:, :flat].view(B, N, N)
    # shortest paths within the complete prefix graphs G_k (atoms < k, all their bonds)
    D = torch.full((B, N, N), BIG, dtype=torch.long, device=dev)
    prefix = []
    for k in range(N):
        prefix.append(D)
        nb = (order[:, k, :] > 0) & (ar < k)
        row = D.masked_fill(~nb[:, :, None], BIG).min(1).values + 1
        row = torch.where(ar == k, 0, row.clamp(max=BIG))
        D = torch.where((ar == k)[None, :, None], row[:, None, :], D)
        D = torch.where((ar == k)[None, None, :], row[:, :, None], D)
        D = torch.minimum(D, row[:, :, None] + row[:, None, :])
    prefix_d = torch.stack(prefix, 1)  # (B, k, N, N)
    # distances from the last atom i at token t: through its neighbours bonded before t
    i_t = (n_t - 1).clamp(min=0)
    nb_t = (order.gather(1, i_t[..., None].expand(B, L, N)) > 0) & (born.gather(1, i_t[..., None].expand(B, L, N))
                                                                    < t_idx[None, :, None])
    d_i = prefix_d.gather(1, i_t[:, :, None, None].expand(B, L, N, N))
    dist = (d_i.masked_fill(~nb_t[..., None], BIG).min(2).values + 1).clamp(max=BIG)
    dist = torch.where(ar == i_t[..., None], 0, dist)
    masks = action_masks(n_t, last_parent, ring_lo, rem, done, valence, max_atoms,
                          (t_idx == max_actions - 1)[None, :], dist, max_ring)
    # attention relations: query token t (atom i_t) to key token m (its owner atom)
    owners = torch.cat([torch.full((B, 1), -1, dtype=torch.long, device=dev), cum[:, :-1] - 1], 1)
    o = owners.clamp(min=0)[:, None, :].expand(B, L, L)
    d = dist.gather(2, o)
    bo = order.gather(1, i_t[..., None].expand(B, L, N)).gather(2, o)
    rel = torch.where(d == 0, 1, torch.where(d == 1, 1 + bo, 3 + d.clamp(max=max_distance)))
    rel = torch.where((owners < 0)[:, None, :] | (n_t == 0)[:, :, None], 0, rel)
    # features of tokens 1..L-1 (token t + 1 embeds action t)
    owner = owners[:, 1:].clamp(min=0)
    feats = {"kind": is_ring[:, :-1].long(), "typ": types.gather(1, owner),
             "ptype": torch.where(bonded, types.gather(1, v), -1)[:, :-1], "bond": b[:, :-1],
             "offset": torch.where(bonded[:, :-1], owner - v[:, :-1], 0),
             "ring": torch.where(is_ring, dist.gather(2, v[..., None]).squeeze(-1) + 1, 0)[:, :-1],
             "pos": owner, "rem": rem[:, 1:].gather(2, owner[..., None]).squeeze(-1)}
    return {"masks": masks, "rem": rem, "dist": dist, "rel": rel, "feats": feats, "owners": owners,
            "n_atoms": N}
