"""The graph VAE's decoder p(G | z): atoms in canonical BFS order, each followed by its bonds to the
earlier atoms, from a causal transformer conditioned on z (see :mod:`molgen.models.vae.model`).

Teacher forcing (:meth:`SequentialGraphDecoder.nll`) scores every decision in one pass; generation
(:meth:`SequentialGraphDecoder.generate`) adds one position at a time against cached keys and values
and gives the same states. Both apply the same valence and connectivity masks.

A conditional model adds a condition embedding ``cond`` (B, dim) to the projected latent, so every
position sees it (:mod:`molgen.models.conditioning`). ``generate`` with ``guidance`` w != 1 runs two
rows per molecule, with and without the condition, that take the same decisions from the mixed
logits ``uncond + w * (cond - uncond)`` (classifier-free guidance).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...nn.sampling import masked_choice, masked_log_softmax
from ...nn.transformer import BiasedBlock
from .graphs import VALENCE_BINS

if TYPE_CHECKING:
    from .scaffold import ScaffoldPrefix


BIG = 1000  # "infinite" graph distance


def ring_distances(bonds: torch.Tensor) -> torch.Tensor:
    """``d[b, t, j]`` (B, N, N), for j < t: bonds from atom t to atom j in the graph of atoms 0..t-1
    with t's bonds to the atoms before j (BIG where t has none of those yet). A bond t-j where the
    distance is d closes a ring of d + 1 atoms; that is the decoder's order of decisions."""
    b, n = bonds.shape[:2]
    d = torch.full((b, n, n), BIG, dtype=torch.long, device=bonds.device)
    out = torch.full_like(d, BIG)
    d.diagonal(dim1=1, dim2=2).zero_()
    ar = torch.arange(n, device=bonds.device)
    for t in range(1, n):
        to = bonds[:, t, :t] > 0                                   # (B, t): t's bonds to earlier atoms
        via = d[:, :t, :t] + 1                                     # via earlier atom k to j
        before = to[:, :, None] & (ar[:t, None] < ar[None, :t])    # k bonded to t and k < j
        out[:, t, :t] = via.masked_fill(~before, BIG).min(1).values.clamp(max=BIG)
        dt = via.masked_fill(~to[:, :, None], BIG).min(1).values.clamp(max=BIG)  # t to every earlier atom
        d[:, t, :t], d[:, :t, t] = dt, dt
        d[:, :t, :t] = torch.minimum(d[:, :t, :t], (dt[:, :, None] + dt[:, None, :]).clamp(max=BIG))
    return out


def _reverse_later(open_: torch.Tensor) -> torch.Tensor:
    """``out[..., j]`` = whether any ``open_[..., j']`` with ``j' > j`` is true."""
    c = open_.long().flip(-1).cumsum(-1).flip(-1)
    return (c - open_.long()) > 0


class SequentialGraphDecoder(nn.Module):
    """p(G | z): atoms in canonical BFS order, each followed by its bonds to earlier atoms.

    ``caps`` are the valence caps of the atom tokens; index ``len(caps)`` is the END token.
    ``max_ring`` (None: no limit): under the valence masks, no bond closes a ring of more atoms.
    """

    def __init__(self, caps: Sequence[int], max_atoms: int, latent_dim: int, dim: int, layers: int,
                 heads: int, dropout: float = 0.0, mlp_ratio: int = 4, max_ring: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"decoder_dim ({dim}) must be a multiple of decoder_heads ({heads})")
        self.max_ring = max_ring
        self.n_types, self.max_atoms, self.heads, self.n_layers = len(caps), max_atoms, heads, layers
        self.register_buffer("caps", torch.tensor(list(caps), dtype=torch.long), persistent=False)
        self.z_in = nn.Linear(latent_dim, dim)
        self.bos = nn.Parameter(torch.zeros(dim))
        self.atom_emb = nn.Embedding(self.n_types, dim)
        self.pos_emb = nn.Embedding(max_atoms, dim)
        self.back_emb = nn.Embedding(VALENCE_BINS, dim)
        self.bond_bias = nn.Embedding(4, layers * heads)
        nn.init.zeros_(self.bond_bias.weight)
        self.blocks = nn.ModuleList(BiasedBlock(dim, heads, mlp_ratio * dim, attn_dropout=dropout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.atom_head = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, self.n_types + 1))
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_atom, self.k_atom = nn.Embedding(self.n_types, dim), nn.Embedding(self.n_types, dim)
        self.rem_emb, self.used_emb = nn.Embedding(VALENCE_BINS, dim), nn.Embedding(VALENCE_BINS, dim)
        self.off_emb = nn.Embedding(max_atoms, dim)
        self.edge_mlp = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 4))

    @property
    def end(self) -> int:
        return self.n_types

    def states(self, z: torch.Tensor, atoms: torch.Tensor, bonds: torch.Tensor,
               cond: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (B, P + 1, dim): position 0 is the start (it sees only z and the condition),
        position t + 1 follows atom t. ``atoms`` (B, P) with -1 padding; ``bonds`` (B, P, P) symmetric
        orders; ``cond`` (B, dim) a condition embedding or None."""
        b, p = atoms.shape
        zc = self.z_in(z) if cond is None else self.z_in(z) + cond
        back = torch.tril(bonds, -1).sum(-1).clamp(max=VALENCE_BINS - 1)
        nodes = (self.atom_emb(atoms.clamp(min=0)) + self.pos_emb.weight[:p] + self.back_emb(back)
                 + zc[:, None])
        x = torch.cat([(self.bos + zc)[:, None], nodes], dim=1)
        length = p + 1
        bias = self.bond_bias(F.pad(bonds, (1, 0, 1, 0))).permute(0, 3, 1, 2)
        causal = torch.full((length, length), float("-inf"), device=z.device).triu(1)
        bias = bias + causal
        for i, block in enumerate(self.blocks):
            x = block(x, bias[:, i * self.heads:(i + 1) * self.heads])
        return self.norm(x)

    def _next_state(self, zc: torch.Tensor, p: int, atoms: torch.Tensor, bonds: torch.Tensor,
                    cache: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Final hidden state of position ``p`` (B, dim), given atoms 0..p-1 with their bonds and
        the key/value cache of positions 0..p-1; position p's keys and values are added to it."""
        b = zc.shape[0]
        if p == 0:
            x = self.bos + zc
            row = torch.zeros((b, 1), dtype=torch.long, device=zc.device)
        else:
            back = bonds[:, p - 1, :p - 1].sum(-1).clamp(max=VALENCE_BINS - 1)
            x = self.atom_emb(atoms[:, p - 1].clamp(min=0)) + self.pos_emb.weight[p - 1] + self.back_emb(back) + zc
            row = F.pad(bonds[:, p - 1, :p], (1, 0))     # keys: start, atoms 0..p-2, itself (no bond)
        bias = self.bond_bias(row).transpose(1, 2)[:, :, None, :]   # (B, layers * heads, 1, p + 1)
        x = x[:, None]
        for i, block in enumerate(self.blocks):
            x = block.step(x, bias[:, i * self.heads:(i + 1) * self.heads], cache[i], p)
        return self.norm(x[:, 0])

    def _edge_logits(self, q: torch.Tensor, k: torch.Tensor, rem_k: torch.Tensor, used: torch.Tensor,
                     offset: torch.Tensor) -> torch.Tensor:
        """Bond logits (none, single, double, triple) from the projected query (new atom) and key
        (earlier atom) and the valence bookkeeping of the pair."""
        u = (q + k + self.rem_emb(rem_k.clamp(0, VALENCE_BINS - 1))
             + self.used_emb(used.clamp(0, VALENCE_BINS - 1)) + self.off_emb(offset.clamp(0, self.max_atoms - 1)))
        return self.edge_mlp(u)

    def nll(self, z: torch.Tensor, atoms: torch.Tensor, bonds: torch.Tensor, n_atoms: torch.Tensor,
            valence_masks: bool, cond: torch.Tensor | None = None) -> torch.Tensor:
        """-log p(G | z) per molecule (nats) under teacher forcing; all decisions in one pass.

        With ``valence_masks`` the logits are masked as in constrained decoding (the likelihood of
        the sampler, ring-size limit included); without, only the connectivity rule and the atom limit
        are applied.
        """
        b, big_n = atoms.shape
        dev = z.device
        h = self.states(z, atoms, bonds, cond)                             # (B, N + 1, dim)
        ar = torch.arange(big_n + 1, device=dev)
        exists = ar[None, :big_n] < n_atoms[:, None]                       # (B, N)
        caps = torch.where(exists, self.caps[atoms.clamp(min=0)], 0)       # (B, N)
        # rem[b, t, j]: remaining valence of atom j once atoms 0..t-1 are placed (t = 0..N)
        placed = F.pad(bonds.cumsum(-1), (1, 0))                           # (B, j, t)
        rem = (caps[:, :, None] - placed).transpose(1, 2)                  # (B, t, j)
        earlier = ar[None, :big_n] < ar[:, None]                           # (N + 1, N): j < t

        # atom decisions: position p gives atom p's token, or END at p = n
        logits_a = self.atom_head(h)
        target = torch.where(ar[None, :big_n] < n_atoms[:, None], atoms, -1)
        target = F.pad(target, (0, 1), value=-1)
        target[torch.arange(b, device=dev), n_atoms] = self.end
        types_ok = (ar < self.max_atoms)[None].expand(b, -1)
        if valence_masks:
            free = ((rem >= 1) & exists[:, None, :] & earlier[None]).any(-1)
            types_ok = types_ok & (free | (ar == 0)[None])
        allowed = torch.ones(b, big_n + 1, self.n_types + 1, dtype=torch.bool, device=dev)
        allowed[:, :, :self.end] = types_ok[..., None]
        allowed[:, 0, self.end] = False
        logp_a = masked_log_softmax(logits_a, allowed)
        picked = logp_a.gather(-1, target.clamp(min=0)[..., None])[..., 0]
        nll = -torch.where(target >= 0, picked, 0.0).sum(-1)

        # bond decisions for pairs j < t < n
        pairs = torch.tril(torch.ones(big_n, big_n, dtype=torch.bool, device=dev), -1)[None] & exists[:, :, None]
        bi, ti, ji = pairs.nonzero(as_tuple=True)
        if bi.numel():
            used_all = bonds.cumsum(-1) - bonds                            # orders given to j' < j
            used = used_all[bi, ti, ji]
            rem_j = rem[bi, ti, ji]
            q = self.q_proj(h[:, :big_n]) + self.q_atom(atoms.clamp(min=0))    # query of atom t: state before it
            k = self.k_proj(h[:, 1:]) + self.k_atom(atoms.clamp(min=0))        # key of atom j: state after it
            logits_e = self._edge_logits(q[bi, ti], k[bi, ji], rem_j, used, ti - ji - 1)
            has = used > 0
            if valence_masks:
                later = _reverse_later((rem[:, :big_n] >= 1) & pairs)[bi, ti, ji]
                cap = torch.minimum(rem_j, caps[bi, ti] - used)
            else:
                later = ji < ti - 1
                cap = torch.full_like(used, 3)
            allowed_e = torch.stack([has | later, cap >= 1, cap >= 2, cap >= 3], dim=-1)
            if valence_masks and self.max_ring is not None:  # a ring bond closes at most max_ring atoms
                small = ring_distances(bonds)[bi, ti, ji] < self.max_ring
                allowed_e[:, 1:] &= (~has | small)[:, None]
            logp_e = masked_log_softmax(logits_e, allowed_e)
            step_nll = -logp_e.gather(-1, bonds[bi, ti, ji][:, None])[:, 0]
            nll = nll.index_add(0, bi, step_nll)
        return nll

    @torch.no_grad()
    def generate(self, z: torch.Tensor, temperature: float = 1.0, greedy: bool = False,
                 constrained: bool = True, generator: torch.Generator | None = None,
                 prefix: "ScaffoldPrefix | None" = None, cond: torch.Tensor | None = None,
                 guidance: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode a batch of latents: ``(atoms (B, A) with -1 padding, bonds (B, A, A), n_atoms (B,),
        log p(G | z) (B,) in nats of the decisions taken, under the masks used)``. With ``prefix``
        the scaffold's atoms and bonds come first (:mod:`molgen.models.vae.scaffold`), and the ring-size
        limit does not apply (a scaffold brings its own rings). ``cond`` (B, dim):
        a condition embedding; ``guidance`` w != 1 mixes conditional and unconditional logits.

        The transformer runs incrementally: each step adds one position and attends to cached keys
        and values (exactly what :meth:`states` computes, without recomputing the prefix).
        """
        b, big_a, dev = z.shape[0], self.max_atoms, z.device
        zc = self.z_in(z)
        cfg = cond is not None and guidance != 1.0
        if cfg:  # rows 0..B-1 conditional, B..2B-1 unconditional; both follow the same decisions
            zc = torch.cat([zc + cond, zc])
        elif cond is not None:
            zc = zc + cond

        def rows(t: torch.Tensor) -> torch.Tensor:  # per-molecule state, for every network row
            return torch.cat([t, t]) if cfg else t

        def mix(logits: torch.Tensor) -> torch.Tensor:
            if not cfg:
                return logits
            lc, lu = logits.chunk(2)
            return lu + guidance * (lc - lu)

        r, dim = zc.shape
        cache = [(zc.new_zeros(r, self.heads, big_a + 1, dim // self.heads),
                  zc.new_zeros(r, self.heads, big_a + 1, dim // self.heads)) for _ in self.blocks]
        hs = zc.new_zeros(r, big_a + 1, dim)
        atoms = torch.full((b, big_a), -1, dtype=torch.long, device=dev)
        bonds = torch.zeros((b, big_a, big_a), dtype=torch.long, device=dev)
        rem = torch.zeros((b, big_a), dtype=torch.long, device=dev)
        n_atoms = torch.zeros(b, dtype=torch.long, device=dev)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        logp = torch.zeros(b, device=dev)
        n_fixed = 0 if prefix is None else len(prefix)
        ok = torch.ones(b, big_a, dtype=torch.bool, device=dev)     # may take new bonds
        need = torch.zeros(b, big_a, dtype=torch.long, device=dev)  # open '*' bonds of scaffold atoms
        marked = torch.zeros(big_a, dtype=torch.bool, device=dev)  # atoms of a scaffold with '*'
        if prefix is not None:
            ok[:, :n_fixed] = prefix.ok.to(dev)
            need[:, :n_fixed] = prefix.stars.to(dev)
            marked[:n_fixed] = prefix.scaffold.marked
        limit = self.max_ring if constrained and prefix is None else None
        if limit is not None:  # all-pair bond distances of the atoms placed so far
            dist = torch.full((b, big_a, big_a), BIG, dtype=torch.long, device=dev)
            dist.diagonal(dim1=1, dim2=2).zero_()

        def free(upto: int) -> torch.Tensor:  # valence atoms 0..upto-1 may still give new bonds
            # a marked scaffold atom at most its open '*' (the hydrogens written on it stay)
            return torch.where(marked[:upto], torch.minimum(rem[:, :upto], need[:, :upto]), rem[:, :upto])
        for p in range(big_a + 1):
            hs[:, p] = self._next_state(zc, p, rows(atoms), rows(bonds), cache)
            allowed = torch.ones(b, self.n_types + 1, dtype=torch.bool, device=dev)
            if p < n_fixed:
                allowed[:] = False
                allowed[:, int(prefix.atoms[p])] = True
            elif p == 0:
                allowed[:, self.end] = False
            elif p == big_a:
                allowed[:, :self.end] = False
            elif constrained:
                allowed[:, :self.end] = ((free(p) >= 1) & ok[:, :p]).any(-1)[:, None]
            if n_fixed and n_fixed <= p < big_a:
                allowed[:, self.end] &= need.sum(1) == 0
            a, lp = masked_choice(mix(self.atom_head(hs[:, p])), allowed, temperature, greedy, generator)
            logp = logp + torch.where(done, 0.0, lp)
            new = ~done & (a != self.end)
            done |= a == self.end
            if not bool(new.any()):
                break
            a = torch.where(new, a, 0)
            atoms[:, p] = torch.where(new, a, -1)
            cap_p = self.caps[a]
            if p == 0:
                rem[:, 0] = cap_p
                n_atoms[new] = 1
                continue
            offsets = (p - 1 - torch.arange(p, device=dev))[None].expand(b, -1)
            free_p = free(p)
            open_ = (free_p >= 1) & ok[:, :p]
            later = _reverse_later(open_)
            # the atoms left must suffice for the open '*': else this one bonds to the first of them
            open_star = need[:, :p] > 0
            urgent = (big_a - p) <= need.sum(1)
            first_star = torch.where(open_star.any(1) & urgent, open_star.long().argmax(1), -1)
            used = torch.zeros(b, dtype=torch.long, device=dev)
            if limit is not None:
                dp = torch.full((b, p), BIG, dtype=torch.long, device=dev)  # from atom p, by its bonds so far
            q = self.q_proj(hs[:, p]) + self.q_atom(rows(a))
            k = self.k_proj(hs[:, 1:p + 1]) + self.k_atom(rows(atoms[:, :p].clamp(min=0)))
            # everything but the running used-valence term is fixed for this atom: precompute it
            base = (q[:, None] + k + self.rem_emb(rows(rem[:, :p].clamp(0, VALENCE_BINS - 1)))
                    + self.off_emb(rows(offsets)))
            for j in range(p):
                logits = mix(self.edge_mlp(base[:, j] + self.used_emb(rows(used.clamp(0, VALENCE_BINS - 1)))))
                has = used > 0
                if constrained:
                    cap = torch.minimum(free_p[:, j], cap_p - used)
                    first_ok = has | later[:, j]
                else:
                    cap = torch.full_like(used, 3)
                    first_ok = has | torch.full_like(has, j < p - 1)
                allowed_e = torch.stack([first_ok | ~new, cap >= 1, cap >= 2, cap >= 3], dim=-1)
                allowed_e[:, 1:] &= (new & ok[:, j] & ~(j < first_star))[:, None]
                allowed_e[:, 0] &= ~((first_star == j) & (cap >= 1))
                if limit is not None:  # a ring bond (not p's first) closes a ring of dp + 1 atoms
                    allowed_e[:, 1:] &= (~has | (dp[:, j] < limit))[:, None]
                if p < n_fixed:  # a scaffold bond
                    allowed_e = F.one_hot(prefix.bonds[p, j].to(dev), 4).bool().expand(b, 4)
                order, lp = masked_choice(logits, allowed_e, temperature, greedy, generator)
                logp = logp + torch.where(new, lp, 0.0)
                bonds[:, p, j] = order
                bonds[:, j, p] = order
                used = used + order
                rem[:, j] = rem[:, j] - order
                if limit is not None:
                    dp = torch.where((order > 0)[:, None], torch.minimum(dp, dist[:, j, :p] + 1), dp)
                if p >= n_fixed:
                    need[:, j] = (need[:, j] - order).clamp(min=0)
            rem[:, p] = torch.where(new, cap_p - used, 0)
            n_atoms[new] = p + 1
            if limit is not None:
                dist[:, p, :p], dist[:, :p, p] = dp, dp
                dist[:, :p, :p] = torch.minimum(dist[:, :p, :p], (dp[:, :, None] + dp[:, None, :]).clamp(max=BIG))
        return atoms, bonds, n_atoms, logp
