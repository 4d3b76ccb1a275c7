"""Autoregressive atom-by-atom graph generator (``name = "ar"``).

p(G) = prod_k p(action_k | actions < k) over the canonical action sequence of
:mod:`molgen.models.ar_data`: ``ATOM(type, parent, bond)``, ``RING(target, bond)`` and ``STOP``, atoms
in canonical breadth-first order (RDKit canonical ranks break ties), kekulised bonds, hydrogens
implicit, formal charges part of the atom type. :meth:`ARModel.log_likelihood` is the exact
log-probability (nats) of that canonical sequence, i.e. of the molecule *in the canonical order*;
other orders of the same graph also carry probability, so it is a lower bound on log p(graph).

Network: a causal transformer over the action tokens with a KV cache. Token k embeds action k-1 (atom
type, parent / target type, bond, atom index, index offset, ring size, remaining valence) and predicts
action k. Graph structure enters through a learned per-head attention bias indexed by the relation
between the atoms of query and key token *in the partial graph the query sees*: same atom, bonded
(by order), or shortest-path distance 2..``max_distance``. A dense transformer was chosen over PyG
message passing because its causal structure gives exact teacher-forced likelihoods in one parallel
pass (a GNN must be re-run on every prefix graph: O(n^2) training cost per molecule) and cached
keys make a sampling step cost O(tokens so far) instead of a pass over the whole partial graph.

Each step factorises as: kind (ATOM / RING / STOP); for ATOM a pointer to the parent then a joint
(type, bond) choice; for RING a pointer to the target then the bond. Pointer logits combine the query
with the cached hidden state of each candidate atom plus embeddings of its remaining valence and its
graph distance to the last atom. Valence masks (remaining valence per atom, with charge-dependent
valences from ``CHARGED_VALENCES``) are applied to every choice in batched tensor form, so every
sample sanitises; structural masks keep the sequence breadth-first (parents never decrease, ring
targets lie between the parent and the new atom, increasing). The network is trained without the
valence masks (``valence_mask_in_loss=False``) so that it learns valence itself and sampling with
``mask=False`` reports the unmasked validity; likelihoods and samples use the masks by default.

Two implementations of the same state machine: the sampler updates a :class:`_GraphState` one action
at a time (KV cache, finished molecules dropped from the batch), while training and
:meth:`ARModel.log_likelihood` compute every intermediate state of whole sequences in closed form
(:func:`_teacher_states`, a loop over atoms only). The tests check that both give the same actions,
masks and per-step log-probabilities. Samples are deterministic for a given ``seed`` and ``batch_size``.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from rdkit import Chem
from torch import nn
from tqdm import tqdm

from ..nn.sampling import masked_log_softmax as _masked_log_softmax
from ..samples import SampleSet
from . import _inputs as check
from .ar_data import ATOM, RING, STOP, ActionDataset, code_to_token, delinearize, encode, max_valence
from .base import GenerativeModel, register

_BIG = 1000  # "infinite" graph distance


# --- graph state shared by teacher forcing and sampling ---------------------------------------------
def _action_masks(n: torch.Tensor, last_parent: torch.Tensor, ring_lo: torch.Tensor, rem: torch.Tensor,
                  done: torch.Tensor, valence: bool, max_atoms: int, last_step: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which actions are allowed, for states of any leading shape S (rem: S + (N,)).

    Returns kinds S + (3,) (ATOM, RING, STOP), parents S + (N,) and ring targets S + (N,).
    Structure: parents never precede the last parent (breadth-first order), ring targets lie
    strictly between the lower bound ``ring_lo`` and the last atom, the first action adds an atom,
    the last allowed action (``last_step``) is STOP. Valence: a bond needs remaining valence >= 1 on
    both ends (bond orders are masked by the caller).
    """
    ar = torch.arange(rem.shape[-1], device=rem.device)
    exists = ar < n[..., None]
    last = (n - 1).clamp(min=0)
    parent = exists & (ar >= last_parent[..., None])
    ring = exists & (ar > ring_lo[..., None]) & (ar < last[..., None])
    if valence:
        parent = parent & (rem >= 1)
        ring = ring & (rem >= 1) & (rem.gather(-1, last[..., None]) >= 1)
    first = n == 0
    grow = ~done & ~last_step
    atom_ok = (first | (parent.any(-1) & (n < max_atoms))) & grow
    kind = torch.stack([atom_ok, ring.any(-1) & grow, ~first | done], -1)
    return kind, parent, ring


class _GraphState:
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
        self.dist = torch.full((batch, n_max, n_max), _BIG, dtype=torch.long, device=device)
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
        self.dist = F.pad(self.dist, (0, extra, 0, extra), value=_BIG)
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

    def masks(self, valence: bool, max_atoms: int, last_step: bool
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Allowed kinds (B, 3: ATOM, RING, STOP), parents (B, N) and ring targets (B, N)."""
        return _action_masks(self.n, self.last_parent, self.ring_lo, self.rem, self.done, valence, max_atoms,
                             torch.tensor(last_step, device=self.n.device))

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
        new_row = torch.where(first[:, None], _BIG, dv + 1)
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


def _teacher_states(kind: torch.Tensor, typ: torch.Tensor, ptr: torch.Tensor, bond: torch.Tensor,
                    maxval: torch.Tensor, valence: bool, max_atoms: int, max_actions: int,
                    max_distance: int) -> dict[str, Any]:
    """Everything :class:`_GraphState` would produce step by step, for whole padded action sequences
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
    masks = _action_masks(n_t, last_parent, ring_lo, rem, done, valence, max_atoms,
                          (t_idx == max_actions - 1)[None, :])
    # bond orders and creation times of the final graphs
    flat = N * N
    order = torch.zeros(B, flat + 1, dtype=torch.long, device=dev)
    born = torch.full((B, flat + 1), _BIG, dtype=torch.long, device=dev)
    for x, y in ((u, v), (v, u)):
        idx = torch.where(bonded, x * N + y, flat)
        order.scatter_(1, idx, b)
        born.scatter_(1, idx, t_idx.expand(B, L))
    order, born = order[:, :flat].view(B, N, N), born[:, :flat].view(B, N, N)
    # shortest paths within the complete prefix graphs G_k (atoms < k, all their bonds)
    D = torch.full((B, N, N), _BIG, dtype=torch.long, device=dev)
    prefix = []
    for k in range(N):
        prefix.append(D)
        nb = (order[:, k, :] > 0) & (ar < k)
        row = D.masked_fill(~nb[:, :, None], _BIG).min(1).values + 1
        row = torch.where(ar == k, 0, row.clamp(max=_BIG))
        D = torch.where((ar == k)[None, :, None], row[:, None, :], D)
        D = torch.where((ar == k)[None, None, :], row[:, :, None], D)
        D = torch.minimum(D, row[:, :, None] + row[:, None, :])
    prefix_d = torch.stack(prefix, 1)  # (B, k, N, N)
    # distances from the last atom i at token t: through its neighbours bonded before t
    i_t = (n_t - 1).clamp(min=0)
    nb_t = (order.gather(1, i_t[..., None].expand(B, L, N)) > 0) & (born.gather(1, i_t[..., None].expand(B, L, N))
                                                                    < t_idx[None, :, None])
    d_i = prefix_d.gather(1, i_t[:, :, None, None].expand(B, L, N, N))
    dist = (d_i.masked_fill(~nb_t[..., None], _BIG).min(2).values + 1).clamp(max=_BIG)
    dist = torch.where(ar == i_t[..., None], 0, dist)
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


def _filter(logp: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Temperature, top-k and nucleus (top-p) filtering of log-probabilities (last dim)."""
    x = logp / temperature if temperature != 1.0 else logp
    if top_k is not None and top_k < x.shape[-1]:
        kth = torch.topk(x, top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        srt, idx = torch.sort(x, dim=-1, descending=True)
        cum = torch.softmax(srt, -1).cumsum(-1)
        drop_sorted = (cum - torch.softmax(srt, -1)) >= top_p  # keep the smallest set reaching top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
        x = x.masked_fill(drop, float("-inf"))
    return x


def _choose(logp: torch.Tensor, gen: torch.Generator | None, temperature: float, top_k: int | None,
            top_p: float | None) -> torch.Tensor:
    """Sample an index per row (Gumbel-max on filtered log-probabilities)."""
    x = _filter(logp, temperature, top_k, top_p)
    u = torch.rand(x.shape, generator=gen, device=x.device).clamp_(1e-20, 1.0)
    return torch.argmax(x - torch.log(-torch.log(u)), dim=-1)


# --- transformer with a relational attention bias and a KV cache -------------------------------------
class _Block(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, n_rel: int, dropout: float) -> None:
        super().__init__()
        self.h = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))
        self.rel = nn.Embedding(n_rel, heads)
        nn.init.zeros_(self.rel.weight)
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        return q, k, v

    def _finish(self, x: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        B, H, T, dh = att.shape
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(B, T, H * dh)))
        return x + self.drop(self.ff(self.ln2(x)))

    def forward(self, x: torch.Tensor, rel: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        """Full sequence: x (B, T, d), rel (B, T, T) relation indices, causal (T, T) additive mask."""
        q, k, v = self._split(x)
        bias = (self.rel(rel).permute(0, 3, 1, 2) + causal).to(q.dtype)
        return self._finish(x, F.scaled_dot_product_attention(q, k, v, attn_mask=bias))

    def step(self, x: torch.Tensor, rel: torch.Tensor, cache: list[torch.Tensor], t: int) -> torch.Tensor:
        """One token per sequence: x (B, 1, d); rel (B, t+1); cache [K, V] of (B, H, cap, dh)."""
        q, k, v = self._split(x)
        cache[0][:, :, t] = k[:, :, 0]
        cache[1][:, :, t] = v[:, :, 0]
        bias = self.rel(rel).permute(0, 2, 1)[:, :, None, :].to(q.dtype)
        att = F.scaled_dot_product_attention(q, cache[0][:, :, :t + 1], cache[1][:, :, :t + 1], attn_mask=bias)
        return self._finish(x, att)


class _Head(nn.Module):
    """Two-layer MLP head."""

    def __init__(self, d: int, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register
class ARModel(GenerativeModel):
    """Autoregressive graph transformer over canonical BFS action sequences (see module docstring).

    ``atom_types`` are (element, charge) tokens such as ``"C"``, ``"N+"``, ``"O-"``; ``max_atoms`` caps
    the heavy atoms of a molecule (sampling and scoring; :meth:`training_setup` sets it to the
    training set's largest molecule, so the model never samples sizes it has not seen); sequences hold
    at most ``2 * max_atoms`` actions; graph distances are clipped at ``max_distance`` bonds.
    """

    name: ClassVar[str] = "ar"
    pretrained_datasets: ClassVar[tuple[str, ...]] = ("qm9", "moses")

    def __init__(self, atom_types: Sequence[str] = ("C", "N", "O", "F"), max_atoms: int = 38,
                 d_model: int = 128, n_layers: int = 4, n_heads: int = 4, d_ff: int = 512,
                 max_distance: int = 12, dropout: float = 0.0, valence_mask_in_loss: bool = False) -> None:
        super().__init__()
        self.atom_types = tuple(atom_types)
        self.max_atoms = int(max_atoms)
        self.max_actions = 2 * self.max_atoms
        self.max_distance = int(max_distance)
        self.valence_mask_in_loss = bool(valence_mask_in_loss)
        V, d = len(self.atom_types), d_model
        self.V, self.d = V, d
        self.register_buffer("maxval", torch.tensor([max_valence(t) for t in self.atom_types]), persistent=False)
        n_rel = self.max_distance + 4
        # token embedding
        self.e_kind = nn.Embedding(3, d)   # ATOM, RING, BOS
        self.e_type = nn.Embedding(V + 1, d)
        self.e_ptype = nn.Embedding(V + 1, d)
        self.e_bond = nn.Embedding(4, d)
        self.e_offset = nn.Embedding(self.max_atoms, d)
        self.e_ring = nn.Embedding(self.max_distance + 2, d)
        self.e_pos = nn.Embedding(self.max_atoms, d)
        self.e_rem = nn.Embedding(8, d)
        self.blocks = nn.ModuleList(_Block(d, n_heads, d_ff, n_rel, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d)
        # heads
        self.kind_head = nn.Linear(d, 3)
        self.first_head = nn.Linear(d, V)
        self.q_parent, self.q_ring = nn.Linear(d, d), nn.Linear(d, d)
        # per-atom projections of its hidden state: parent key, ring key, parent / ring context
        self.atom_proj = nn.Linear(d, 4 * d)
        self.f_parent = nn.Embedding(8 + self.max_distance + 2, d)  # remaining valence, distance
        self.f_ring = nn.Embedding(8 + self.max_distance + 2, d)
        self.g_atom = nn.Embedding(8 + self.max_distance + 2, d)
        self.g_ring = nn.Embedding(2 * 8 + self.max_distance + 2, d)
        self.atom_head = _Head(d, 3 * V)
        self.bond_head = _Head(d, 3)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding) and m.weight.shape[1] > 16:
            nn.init.normal_(m.weight, std=0.02)

    # --- pieces shared by teacher forcing and sampling -------------------------------------------------
    def _embed(self, f: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token embedding of applied actions (features from :meth:`_GraphState.apply`)."""
        V, A = self.V, self.max_atoms
        return (self.e_kind(f["kind"]) + self.e_type(f["typ"]) + self.e_ptype(f["ptype"].masked_fill(f["ptype"] < 0, V))
                + self.e_bond(f["bond"]) + self.e_offset(f["offset"].clamp(0, A - 1))
                + self.e_ring(f["ring"].clamp(0, self.max_distance + 1)) + self.e_pos(f["pos"].clamp(max=A - 1))
                + self.e_rem(f["rem"].clamp(0, 7)))

    def _bos(self, batch: int) -> torch.Tensor:
        return self.e_kind.weight[2].expand(batch, -1)

    def _dist_index(self, d: torch.Tensor) -> torch.Tensor:
        return 8 + d.clamp(max=self.max_distance + 1)

    def _pointer(self, h: torch.Tensor, keys: torch.Tensor, q: nn.Linear, feat: nn.Embedding,
                 rem: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        """Pointer logits over atoms: h (..., d); keys (B, N, d); rem, dist (..., N)."""
        qh = q(h)
        content = torch.einsum("b...d,bnd->b...n", qh, keys)
        table = qh @ feat.weight.t().to(qh.dtype)  # (..., 8 + D)
        feats = table.gather(-1, rem.clamp(0, 7)) + table.gather(-1, self._dist_index(dist))
        return (content + feats) / math.sqrt(self.d)

    def _atom_logits(self, h: torch.Tensor, pa: torch.Tensor, rem_p: torch.Tensor, dist_p: torch.Tensor
                     ) -> torch.Tensor:
        """Joint (type, bond) logits (..., 3V) given the parent's projected state ``pa``."""
        x = h + pa + self.g_atom(rem_p.clamp(0, 7)) + self.g_atom(self._dist_index(dist_p))
        return self.atom_head(x)

    def _bond_logits(self, h: torch.Tensor, pr: torch.Tensor, rem_t: torch.Tensor, rem_last: torch.Tensor,
                     dist_t: torch.Tensor) -> torch.Tensor:
        x = (h + pr + self.g_ring(rem_t.clamp(0, 7)) + self.g_ring(8 + rem_last.clamp(0, 7))
             + self.g_ring(8 + self._dist_index(dist_t)))
        return self.bond_head(x)

    def _atom_mask(self, rem_p: torch.Tensor, valence: bool) -> torch.Tensor:
        """Allowed (type, bond) pairs (..., 3V): bond order <= remaining valence of parent and type."""
        shape = (*rem_p.shape, self.V, 3)
        if not valence:
            return torch.ones(shape, dtype=torch.bool, device=rem_p.device).flatten(-2)
        order = torch.arange(1, 4, device=rem_p.device)
        ok = (order <= rem_p[..., None, None]) & (order <= self.maxval[:, None])
        return ok.expand(shape).flatten(-2)

    @staticmethod
    def _bond_mask(rem_t: torch.Tensor, rem_last: torch.Tensor, valence: bool) -> torch.Tensor:
        order = torch.arange(1, 4, device=rem_t.device)
        if not valence:
            return torch.ones((*rem_t.shape, 3), dtype=torch.bool, device=rem_t.device)
        return (order <= rem_t[..., None]) & (order <= rem_last[..., None])

    # --- teacher forcing ---------------------------------------------------------------------------------
    def _teacher(self, batch: dict[str, torch.Tensor], valence: bool) -> torch.Tensor:
        """Per-step log-probabilities (B, L) of the given action sequences (0 on padding)."""
        kind, typ, ptr, bond = (batch[k].to(self.device) for k in ("kind", "typ", "ptr", "bond"))
        B, L = kind.shape
        dev, d = self.device, self.d
        S = _teacher_states(kind, typ, ptr, bond, self.maxval, valence, self.max_atoms, self.max_actions,
                            self.max_distance)
        N, owners = S["n_atoms"], S["owners"]
        x = self._bos(B)[:, None]
        if L > 1:
            x = torch.cat([x, self._embed(S["feats"])], 1)
        causal = torch.full((L, L), float("-inf"), device=dev).triu(1)
        for blk in self.blocks:
            x = blk(x, S["rel"], causal)
        h = self.ln_f(x)
        kind_m, parent_m, ring_m = S["masks"]
        rem, dist = S["rem"], S["dist"]
        # per-atom projections of the hidden state of the token that created the atom (action + 1)
        is_atom_act = kind == ATOM
        t_idx = torch.arange(L, device=dev).expand(B, L)
        tok_of_atom = torch.zeros(B, N + 1, dtype=torch.long, device=dev)
        atom_idx = torch.where(is_atom_act, torch.cumsum(is_atom_act.long(), 1) - 1, N)
        tok_of_atom.scatter_(1, atom_idx, (t_idx + 1).clamp(max=L - 1))
        proj = self.atom_proj(h.gather(1, tok_of_atom[:, :N, None].expand(-1, -1, d)))
        key_p, key_r, ctx_p, ctx_r = proj.split(d, -1)
        at_ptr = ptr[..., None].expand(-1, -1, d)
        rem_p = rem.gather(-1, ptr[..., None]).squeeze(-1)
        dist_p = dist.gather(-1, ptr[..., None]).squeeze(-1)
        rem_last = rem.gather(-1, owners.clamp(min=0)[..., None]).squeeze(-1)
        pick = lambda logp, i: logp.gather(-1, i[..., None]).squeeze(-1)  # noqa: E731
        lp_kind = pick(_masked_log_softmax(self.kind_head(h), kind_m), kind.clamp(min=0))
        lp_first = pick(torch.log_softmax(self.first_head(h[:, 0]).float(), -1), typ[:, 0])
        # ATOM: parent pointer, then (type, bond)
        lp_par = pick(_masked_log_softmax(self._pointer(h, key_p, self.q_parent, self.f_parent, rem, dist),
                                          parent_m), ptr)
        tb = typ * 3 + (bond - 1).clamp(min=0)
        lp_tb = pick(_masked_log_softmax(self._atom_logits(h, ctx_p.gather(1, at_ptr), rem_p, dist_p),
                                         self._atom_mask(rem_p, valence)), tb)
        # RING: target pointer, then bond
        lp_tgt = pick(_masked_log_softmax(self._pointer(h, key_r, self.q_ring, self.f_ring, rem, dist), ring_m), ptr)
        lp_bond = pick(_masked_log_softmax(self._bond_logits(h, ctx_r.gather(1, at_ptr), rem_p, rem_last, dist_p),
                                           self._bond_mask(rem_p, rem_last, valence)), (bond - 1).clamp(min=0))
        zero = torch.zeros_like(lp_kind)
        extra = torch.where(kind == ATOM, torch.where(t_idx == 0, lp_first[:, None], lp_par + lp_tb),
                            torch.where(kind == RING, lp_tgt + lp_bond, zero))
        return torch.where(kind >= 0, lp_kind + extra, zero)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean negative log-likelihood per action (nats); logs the NLL per molecule."""
        step = self._teacher(batch, valence=self.valence_mask_in_loss)
        n_act = (batch["kind"] >= 0).sum().to(step.device)
        nll_mol = -step.sum(1)
        return nll_mol.sum() / n_act, {"nll_per_mol": float(nll_mol.mean().detach())}

    # --- sampling ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _decode(self, batch: int, gen: torch.Generator | None = None, mask: bool = True,
                temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                forced: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Run the incremental (KV-cached) decoder for ``batch`` molecules, sampling each action or
        following ``forced`` (padded action tensors as made by ``ActionDataset.batch``).

        Returns the actions (B, T), the per-step log-probabilities (B, T) in nats under the model with
        the chosen masks (temperature and filtering change what is drawn, not the reported values),
        and the atom types / counts of the finished graphs.
        """
        dev, d = self.device, self.d
        T = self.max_actions
        st = _GraphState(batch, min(16, self.max_atoms), dev, sparse=True)
        heads = self.blocks[0].h if len(self.blocks) else 1
        cap = 16
        caches = [[torch.zeros(batch, heads, cap, d // heads, device=dev) for _ in range(2)] for _ in self.blocks]
        proj = torch.zeros(batch, st.N, 4 * d, device=dev)
        owners = torch.full((batch, T), -1, dtype=torch.long, device=dev)
        out = {k: torch.full((batch, T), -1 if k == "kind" else 0, dtype=torch.long, device=dev)
               for k in ("kind", "typ", "ptr", "bond")}
        logps = torch.zeros(batch, T, device=dev)
        final_types = torch.zeros(batch, self.max_atoms, dtype=torch.long, device=dev)
        final_n = torch.zeros(batch, dtype=torch.long, device=dev)
        ids = torch.arange(batch, device=dev)  # batch row of each molecule still being built
        x = self._bos(batch)[:, None]
        created = torch.zeros(batch, dtype=torch.bool, device=dev)
        g = lambda logp, i: logp.gather(1, i[:, None]).squeeze(1)  # noqa: E731

        def forced_at(key: str) -> torch.Tensor:
            assert forced is not None
            return forced[key][ids, t].to(dev)

        def draw(logp: torch.Tensor, key: str | None, value: "torch.Tensor | None" = None) -> torch.Tensor:
            if forced is not None:
                return value if value is not None else forced_at(str(key)).clamp(min=0)
            return _choose(logp, gen, temperature, top_k, top_p)

        def finish(rows_done: torch.Tensor) -> None:
            final_types[ids[rows_done], :st.N] = st.types[rows_done]
            final_n[ids[rows_done]] = st.n[rows_done]

        for t in range(T):
            if t >= cap:
                cap *= 2
                caches = [[F.pad(c, (0, 0, 0, cap - c.shape[2])) for c in kv] for kv in caches]
            if int(st.n.max()) >= st.N and st.N < self.max_atoms:
                st.grow(min(2 * st.N, self.max_atoms))
                proj = F.pad(proj, (0, 0, 0, st.N - proj.shape[1]))
            rows = st.rows
            if t > 0:
                owners[:, t] = st.last
            rel = st.relation(owners[:, :t + 1], self.max_distance)
            for blk, kv in zip(self.blocks, caches):
                x = blk.step(x, rel, kv, t)
            h = self.ln_f(x[:, 0])
            if t > 0:  # the token just embedded created atom `last` if its action was ATOM
                proj[rows, st.last] = torch.where(created[:, None], self.atom_proj(h), proj[rows, st.last])
            key_p, key_r, ctx_p, ctx_r = proj.split(d, -1)
            kind_m, parent_m, ring_m = st.masks(mask, self.max_atoms, t == T - 1)
            rem, dist = st.rem, st.row(st.dist, st.last)
            rem_last = rem[rows, st.last]
            # kind
            lk = _masked_log_softmax(self.kind_head(h), kind_m)
            kind = draw(lk, None, torch.where(forced_at("kind") < 0, STOP, forced_at("kind"))
                        if forced is not None else None)
            kind = torch.where(st.done, STOP, kind)
            # ATOM: parent, then (type, bond); the first atom: type only
            if t == 0:
                lfirst = torch.log_softmax(self.first_head(h).float(), -1)
                typ = draw(lfirst, "typ")
                par = torch.zeros_like(typ)
                a_bond = torch.zeros_like(typ)
                lp_atom = g(lfirst, typ)
            else:
                lpar = _masked_log_softmax(self._pointer(h, key_p, self.q_parent, self.f_parent, rem, dist),
                                           parent_m)
                par = draw(lpar, "ptr")
                rem_p = rem[rows, par]
                ltb = _masked_log_softmax(self._atom_logits(h, ctx_p[rows, par], rem_p, dist[rows, par]),
                                          self._atom_mask(rem_p, mask))
                tb = draw(ltb, None, forced_at("typ") * 3 + (forced_at("bond") - 1).clamp(min=0)
                          if forced is not None else None)
                typ, a_bond = tb // 3, tb % 3 + 1
                lp_atom = g(lpar, par) + g(ltb, tb)
            # RING: target, then bond
            is_ring = kind == RING
            tgt, rb, lp_ring = torch.zeros_like(kind), torch.zeros_like(kind), torch.zeros_like(lp_atom)
            if bool(is_ring.any()):
                lring = _masked_log_softmax(self._pointer(h, key_r, self.q_ring, self.f_ring, rem, dist), ring_m)
                tgt = draw(lring, "ptr")
                rem_t = rem[rows, tgt]
                lbond = _masked_log_softmax(self._bond_logits(h, ctx_r[rows, tgt], rem_t, rem_last, dist[rows, tgt]),
                                            self._bond_mask(rem_t, rem_last, mask))
                rb = draw(lbond, None, (forced_at("bond") - 1).clamp(min=0) if forced is not None else None)
                lp_ring = g(lring, tgt) + g(lbond, rb)
            # assemble the action and its log-probability
            ptr = torch.where(is_ring, tgt, par)
            bond = torch.where(is_ring, rb + 1, a_bond)
            live = ~st.done
            lp = g(lk, kind) + torch.where(kind == ATOM, lp_atom, torch.where(is_ring, lp_ring, 0.0))
            logps[ids, t] = torch.where(live, lp, 0.0)
            out["kind"][ids, t] = torch.where(live, kind, -1)
            out["typ"][ids, t] = torch.where(live & (kind == ATOM), typ, 0)
            out["ptr"][ids, t] = torch.where(live & (kind != STOP), ptr, 0)
            out["bond"][ids, t] = torch.where(live & (kind != STOP), bond, 0)
            created = kind == ATOM
            feats = st.apply(kind, typ, ptr, bond, self.maxval)
            n_done = int(st.done.sum())
            if n_done == st.B:
                finish(st.rows)
                T = t + 1
                break
            x = self._embed(feats)[:, None]
            if n_done >= max(st.B // 4, 1):  # drop finished molecules from the batch
                keep = torch.nonzero(~st.done).squeeze(1)
                finish(torch.nonzero(st.done).squeeze(1))
                st.select(keep)
                ids, x, created, owners, proj = ids[keep], x[keep], created[keep], owners[keep], proj[keep]
                caches = [[c[keep] for c in kv] for kv in caches]
        return {**{k: v[:, :T] for k, v in out.items()}, "logp": logps[:, :T], "types": final_types,
                "n_atoms": final_n}

    def _to_mols(self, res: dict[str, torch.Tensor]) -> list[Chem.Mol]:
        kind, ptr, bond = (res[k].cpu().numpy() for k in ("kind", "ptr", "bond"))
        types, n = res["types"].cpu().numpy(), res["n_atoms"].cpu().numpy()
        return [delinearize([self.atom_types[t] for t in types[b, :n[b]]], kind[b], ptr[b], bond[b])
                for b in range(kind.shape[0])]

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, progress: bool = False, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, batch_size: int = 1000,
               mask: bool = True) -> SampleSet:
        """Sample ``n`` molecules in batches of ``batch_size``.

        ``temperature`` divides every log-probability, ``top_k`` / ``top_p`` keep the k most likely /
        the smallest set with probability >= p of each choice. With ``mask=False`` the valence masks
        are off (structural masks stay) and invalid samples come back as None. ``info["log_prob"]``
        holds each sample's action-sequence log-probability in nats (masks as chosen, no temperature).
        """
        n = check.positive_int("n", n)
        seed = check.seed(seed)
        temperature = check.positive_float("temperature", temperature)
        top_k = check.optional_positive_int("top_k", top_k)
        top_p = None if top_p is None else check.probability("top_p", top_p)
        batch_size = check.positive_int("batch_size", batch_size)
        was_training = self.training
        self.eval()
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        mols: list[Chem.Mol] = []
        logp: list[np.ndarray] = []
        with tqdm(total=n, disable=not progress, desc="sample ar", unit="mol") as bar:
            for start in range(0, n, batch_size):
                m = min(batch_size, n - start)
                res = self._decode(m, gen, mask, temperature, top_k, top_p)
                mols.extend(self._to_mols(res))
                logp.append(res["logp"].sum(1).cpu().numpy())
                bar.update(m)
        self.train(was_training)
        return SampleSet.from_mols(mols, log_prob=np.concatenate(logp), mask=mask, temperature=temperature,
                                   top_k=top_k, top_p=top_p)

    # --- likelihood ------------------------------------------------------------------------------------
    def encode_molecules(self, molecules: "Sequence[str | Chem.Mol] | SampleSet"
                         ) -> tuple[ActionDataset, list[str | None]]:
        """Linearise molecules (SMILES, Mols or a SampleSet) for this model: the dataset and, per
        input, None or why it is unusable."""
        molecules = check.molecule_list(molecules)
        enc = encode(molecules, workers=1)
        data = ActionDataset(enc, self.atom_types, self.max_atoms, self.max_actions)
        reasons: list[str | None] = [None] * len(molecules)
        for i, why in enc.failed.items():
            reasons[i] = why
        kept = set(data.index.tolist())
        vocab = set(self.atom_types)
        for k in range(len(enc)):
            if k in kept:
                continue
            codes = enc.codes[enc.atom_ptr[k]:enc.atom_ptr[k + 1]]
            bad = sorted({code_to_token(c) for c in codes.tolist()} - vocab)
            n_at, n_act = codes.size, enc.act_ptr[k + 1] - enc.act_ptr[k] + 1
            reasons[int(enc.source[k])] = (
                f"atom types {', '.join(bad)} are outside the model's vocabulary ({', '.join(self.atom_types)})"
                if bad else f"{n_at} heavy atoms / {n_act} actions exceed the model's limits "
                            f"({self.max_atoms} / {self.max_actions})")
        return data, reasons

    @torch.no_grad()
    def log_likelihood(self, molecules: "str | Chem.Mol | Sequence[str | Chem.Mol] | SampleSet", mask: bool = True,
                       batch_size: int = 256, return_reasons: bool = False
                       ) -> "np.ndarray | tuple[np.ndarray, list[str | None]]":
        """Exact log-probability (nats per molecule) of each molecule's canonical action sequence.

        Accepts a SMILES string, an RDKit Mol, a list of them or a :class:`~molgen.SampleSet`
        (its molecules; an invalid sample gets NaN). Molecules that do not parse, are disconnected
        or contain atom types outside the vocabulary get NaN; the reasons come back with
        ``return_reasons=True`` (None where scored) and are summarised in a warning. ``mask``
        applies the valence masks (as in sampling; a molecule the masks forbid gets -inf).
        """
        items = check.molecule_list(molecules)
        batch_size = check.positive_int("batch_size", batch_size)
        data, reasons = self.encode_molecules(items)
        out = np.full(len(items), np.nan)
        was_training = self.training
        self.eval()
        for start in range(0, len(data), batch_size):
            idx = np.arange(start, min(start + batch_size, len(data)))
            step = self._teacher(data.batch(idx), valence=mask)
            src = data.encoded.source[data.index[idx]]
            out[src] = step.double().sum(1).cpu().numpy()
        self.train(was_training)
        bad = [(i, r) for i, r in enumerate(reasons) if r is not None]
        if bad:
            shown = "; ".join(f"#{i}: {r}" for i, r in bad[:3])
            warnings.warn(f"{len(bad)} of {len(items)} molecules not scored (NaN): {shown}"
                          + (" ..." if len(bad) > 3 else ""), stacklevel=2)
        if return_reasons:
            return out, reasons
        return out

    # --- training --------------------------------------------------------------------------------------
    #: Network sizes per dataset (QM9: CPU-trainable; MOSES: sized for a short GPU run).
    MODEL_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "qm9": {"d_model": 128, "n_layers": 4, "n_heads": 4, "d_ff": 512},
        "moses": {"d_model": 256, "n_layers": 4, "n_heads": 8, "d_ff": 1024},
    }
    #: TrainConfig defaults per dataset. QM9: one CPU core for under an hour (a few thousand steps, hence
    #: the short EMA horizon). MOSES: one GPU, where a step costs about the same up to large batches
    #: (kernel-launch bound); on a CPU use ``--batch-size 64 --lr 5e-4``.
    TRAIN_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "qm9": {"batch_size": 128, "lr": 5e-4, "ema_decay": 0.995, "checkpoint_every": 500,
                "eval_every": 1000, "log_every": 50},
        "moses": {"batch_size": 1024, "lr": 7e-4, "ema_decay": 0.999, "checkpoint_every": 2000,
                  "eval_every": 2000, "log_every": 100},
    }

    @classmethod
    def training_setup(cls, dataset: str, model_cfg: dict[str, Any], train_cfg: dict[str, Any]) -> Any:
        """Model, encoded training set, defaults and a sampling evaluator for ``qm9`` or ``moses``."""
        import time

        from ..training import TrainingSetup
        from ..datasets import dataset_smiles
        from .ar_data import encode_cached, vocabulary

        if dataset not in cls.MODEL_DEFAULTS:
            raise ValueError(f"unknown dataset {dataset!r} for the ar model; choose from "
                             f"{', '.join(cls.MODEL_DEFAULTS)}")
        t0 = time.perf_counter()
        smiles = dataset_smiles(dataset, "train")
        enc = encode_cached(f"{dataset}-train", smiles)
        seconds = time.perf_counter() - t0
        tokens, counts = vocabulary(enc)
        largest = int(np.diff(enc.atom_ptr).max())  # the data's largest molecule bounds the support
        cfg = {**cls.MODEL_DEFAULTS[dataset], "atom_types": tokens, "max_atoms": largest, **model_cfg}
        model = cls(**cfg)
        data = ActionDataset(enc, model.atom_types, model.max_atoms, model.max_actions)
        held_split = "valid" if dataset == "qm9" else "test"
        held = dataset_smiles(dataset, held_split)
        held = [held[k] for k in np.random.default_rng(0).choice(len(held), 1000, replace=False)]
        state: dict[str, Any] = {}

        def evaluate(m: GenerativeModel) -> dict[str, float]:
            assert isinstance(m, ARModel)
            if "train" not in state:  # reference set for novelty, built on first use
                from ..chem.convert import canonicalize

                state["train"] = (set(filter(None, map(canonicalize, smiles))) if dataset == "qm9"
                                  else set(smiles))  # MOSES ships RDKit-canonical SMILES
                state["held"] = m.encode_molecules(held)[0]
            return _sample_metrics(m, state["train"], state["held"])

        metrics = {"dataset": dataset, "train_split": "train", "train_molecules": len(data),
                   "train_dropped": {**data.dropped, "not_linearisable": len(enc.failed)},
                   "atom_type_counts": counts, "linearise_seconds": round(seconds, 1),
                   "heldout_for_curve": f"1000 random {dataset} {held_split} molecules (seed 0)"}
        return TrainingSetup(model=model, data=data, train_defaults=dict(cls.TRAIN_DEFAULTS[dataset]),
                             evaluate=evaluate, metrics=metrics)


def _sample_metrics(model: ARModel, train: set[str], held: ActionDataset, n: int = 500) -> dict[str, float]:
    """Learning-curve metrics: validity with / without masks, uniqueness, novelty, held-out NLL."""
    s = model.sample(n, seed=1234, batch_size=n)
    valid = [x for x in s.smiles if x is not None]
    uniq = set(valid)
    raw = model.sample(n // 2, seed=4321, batch_size=n // 2, mask=False)
    nll = []
    was = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(held), 250):
            idx = np.arange(start, min(start + 250, len(held)))
            nll.append(-model._teacher(held.batch(idx), valence=True).double().sum(1).cpu().numpy())
    model.train(was)
    return {"validity": s.validity, "validity_no_mask": raw.validity,
            "uniqueness": len(uniq) / max(len(valid), 1),
            "novelty": len(uniq - train) / max(len(uniq), 1),
            "heldout_nll": float(np.concatenate(nll).mean())}
