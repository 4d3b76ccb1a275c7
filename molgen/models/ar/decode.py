"""The autoregressive model's sampler: one action per step for a whole batch, with a KV cache.

Each step embeds the action just taken, runs one position through every block against the cached
keys and values (:meth:`molgen.nn.transformer.BiasedBlock.step`), and picks the next action under
the masks of :class:`~molgen.models.ar.graph_state.GraphState`; finished molecules leave the batch.
With ``forced`` it follows given action sequences instead (the tests compare it with teacher forcing).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ...nn.sampling import gumbel_draw, masked_log_softmax
from .actions import ATOM, RING, STOP
from .graph_state import GraphState

if TYPE_CHECKING:
    from .model import ARModel
    from .scaffold import ScaffoldConstraint


@torch.no_grad()
def decode(model: "ARModel", batch: int, gen: torch.Generator | None = None, mask: bool = True,
           temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           forced: dict[str, torch.Tensor] | None = None, constraint: "ScaffoldConstraint | None" = None,
           cond: torch.Tensor | None = None, guidance: float = 1.0) -> dict[str, torch.Tensor]:
    """Run ``model``'s incremental (KV-cached) decoder for ``batch`` molecules, sampling each action or
    following ``forced`` (padded action tensors as made by ``ActionDataset.batch``); with
    ``constraint`` every molecule contains its scaffold (:mod:`molgen.models.ar.scaffold`).

    ``cond`` (d,) is the condition embedding added to every token (:mod:`molgen.models.conditioning`);
    with ``guidance`` w != 1 the network also runs without it (a second half of the rows) and every
    choice uses the logits ``uncond + w * (cond - uncond)`` (classifier-free guidance).

    Returns the actions (B, T), the per-step log-probabilities (B, T) in nats under the model with
    the chosen masks (temperature and filtering change what is drawn, not the reported values),
    and the atom types / counts of the finished graphs.
    """
    dev, d = model.device, model.d
    T = model.max_actions
    st = GraphState(batch, min(16, model.max_atoms), dev, sparse=True)
    heads = model.blocks[0].heads if len(model.blocks) else 1
    cap = 16
    two = cond is not None and guidance != 1.0  # network rows: conditional, then unconditional
    dup = (lambda z: torch.cat([z, z])) if two else (lambda z: z)  # noqa: E731
    mix = ((lambda z: z[st.B:] + guidance * (z[:st.B] - z[st.B:])) if two else (lambda z: z))  # noqa: E731
    R = 2 * batch if two else batch
    cvec = None if cond is None else dup(cond.to(dev).expand(batch, d))
    if two:
        cvec[batch:] = 0
    caches = [[torch.zeros(R, heads, cap, d // heads, device=dev) for _ in range(2)] for _ in model.blocks]
    proj = torch.zeros(R, st.N, 4 * d, device=dev)
    owners = torch.full((batch, T), -1, dtype=torch.long, device=dev)
    out = {k: torch.full((batch, T), -1 if k == "kind" else 0, dtype=torch.long, device=dev)
           for k in ("kind", "typ", "ptr", "bond")}
    logps = torch.zeros(batch, T, device=dev)
    final_types = torch.zeros(batch, model.max_atoms, dtype=torch.long, device=dev)
    final_n = torch.zeros(batch, dtype=torch.long, device=dev)
    ids = torch.arange(batch, device=dev)  # batch row of each molecule still being built
    x = model._bos(R)[:, None] if cvec is None else (model._bos(R) + cvec)[:, None]
    created = torch.zeros(batch, dtype=torch.bool, device=dev)
    g = lambda logp, i: logp.gather(1, i[:, None]).squeeze(1)  # noqa: E731
    con = constraint
    if con is not None:
        con.start(batch, dev)

    def forced_at(key: str) -> torch.Tensor:
        assert forced is not None
        return forced[key][ids, t].to(dev)

    def draw(logp: torch.Tensor, key: str | None, value: "torch.Tensor | None" = None) -> torch.Tensor:
        if forced is not None:
            return value if value is not None else forced_at(str(key)).clamp(min=0)
        return gumbel_draw(logp, gen, temperature, top_k, top_p)

    def finish(rows_done: torch.Tensor) -> None:
        final_types[ids[rows_done], :st.N] = st.types[rows_done]
        final_n[ids[rows_done]] = st.n[rows_done]

    for t in range(T):
        if t >= cap:
            cap *= 2
            caches = [[F.pad(c, (0, 0, 0, cap - c.shape[2])) for c in kv] for kv in caches]
        if int(st.n.max()) >= st.N and st.N < model.max_atoms:
            st.grow(min(2 * st.N, model.max_atoms))
            proj = F.pad(proj, (0, 0, 0, st.N - proj.shape[1]))
        rows = st.rows
        if t > 0:
            owners[:, t] = st.last
        rel = dup(st.relation(owners[:, :t + 1], model.max_distance))
        for blk, kv in zip(model.blocks, caches):
            x = blk.step(x, rel, kv, t)
        h = model.ln_f(x[:, 0])
        prow = torch.arange(h.shape[0], device=dev)
        if t > 0:  # the token just embedded created atom `last` if its action was ATOM
            plast = dup(st.last)
            proj[prow, plast] = torch.where(dup(created)[:, None], model.atom_proj(h), proj[prow, plast])
        key_p, key_r, ctx_p, ctx_r = proj.split(d, -1)
        rem, dist = st.rem, st.row(st.dist, st.last)
        mrem = rem if con is None else con.free_rem(rem)  # valence the masks may use
        # a scaffold brings its own rings: the ring-size limit applies to unconstrained sampling
        kind_m, parent_m, ring_m = st.masks(mask, model.max_atoms, t == T - 1, mrem,
                                            model.max_ring_size if con is None else None)
        if con is not None:
            kind_m, parent_m, ring_m = con.masks(st.n, t, model.max_actions, kind_m, parent_m, ring_m,
                                                 st.last, st.done)
        rem_last = rem[rows, st.last]
        # kind
        lk = masked_log_softmax(mix(model.kind_head(h)), kind_m)
        kind = draw(lk, None, torch.where(forced_at("kind") < 0, STOP, forced_at("kind"))
                    if forced is not None else None)
        kind = torch.where(st.done, STOP, kind)
        # ATOM: parent, then (type, bond); the first atom: type only
        if t == 0:
            lfirst = (torch.log_softmax(mix(model.first_head(h)).float(), -1) if con is None else
                      masked_log_softmax(mix(model.first_head(h)), con.first_mask(st.B, model.V, dev)))
            typ = draw(lfirst, "typ")
            par = torch.zeros_like(typ)
            a_bond = torch.zeros_like(typ)
            tb = torch.zeros_like(typ)
            lp_atom = g(lfirst, typ)
        else:
            lpar = masked_log_softmax(mix(model._pointer(h, key_p, model.q_parent, model.f_parent, dup(rem),
                                                         dup(dist))), parent_m)
            par = draw(lpar, "ptr")
            rem_p = rem[rows, par]
            tb_m = model._atom_mask(mrem[rows, par], mask)
            if con is not None:
                tb_m = con.atom_mask(par, tb_m)
            ltb = masked_log_softmax(mix(model._atom_logits(h, ctx_p[prow, dup(par)], dup(rem_p),
                                                            dup(dist[rows, par]))), tb_m)
            tb = draw(ltb, None, forced_at("typ") * 3 + (forced_at("bond") - 1).clamp(min=0)
                      if forced is not None else None)
            typ, a_bond = tb // 3, tb % 3 + 1
            lp_atom = g(lpar, par) + g(ltb, tb)
        # RING: target, then bond
        is_ring = kind == RING
        tgt, rb, lp_ring = torch.zeros_like(kind), torch.zeros_like(kind), torch.zeros_like(lp_atom)
        if bool(is_ring.any()):
            lring = masked_log_softmax(mix(model._pointer(h, key_r, model.q_ring, model.f_ring, dup(rem),
                                                          dup(dist))), ring_m)
            tgt = draw(lring, "ptr")
            rem_t = rem[rows, tgt]
            bond_m = model._bond_mask(mrem[rows, tgt], mrem[rows, st.last], mask)
            if con is not None:
                bond_m = con.bond_mask(bond_m)
            lbond = masked_log_softmax(mix(model._bond_logits(h, ctx_r[prow, dup(tgt)], dup(rem_t), dup(rem_last),
                                                              dup(dist[rows, tgt]))), bond_m)
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
        if con is not None:
            con.advance(kind, ptr, tb, bond, st.n, live)
        feats = st.apply(kind, typ, ptr, bond, model.maxval)
        n_done = int(st.done.sum())
        if n_done == st.B:
            finish(st.rows)
            T = t + 1
            break
        x = dup(model._embed(feats))
        x = (x if cvec is None else x + cvec)[:, None]
        if n_done >= max(st.B // 4, 1):  # drop finished molecules from the batch
            keep = torch.nonzero(~st.done).squeeze(1)
            knet = torch.cat([keep, keep + st.B]) if two else keep
            finish(torch.nonzero(st.done).squeeze(1))
            st.select(keep)
            ids, created, owners = ids[keep], created[keep], owners[keep]
            x, proj = x[knet], proj[knet]
            cvec = None if cvec is None else cvec[knet]
            caches = [[c[knet] for c in kv] for kv in caches]
            if con is not None:
                con.select(keep)
    return {**{k: v[:, :T] for k, v in out.items()}, "logp": logps[:, :T], "types": final_types,
            "n_atoms": final_n}
