"""Autoregressive atom-by-atom graph generator (``name = "ar"``).

p(G) = prod_k p(action_k | actions < k) over the canonical action sequence of
:mod:`molgen.models.ar.encoding`: ``ATOM(type, parent, bond)``, ``RING(target, bond)`` and ``STOP``, atoms
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

Two implementations of the same state machine (:mod:`molgen.models.ar.graph_state`): the sampler
(:mod:`molgen.models.ar.decode`) updates a ``GraphState`` one action at a time (KV cache, finished
molecules dropped from the batch), while training and :meth:`ARModel.log_likelihood` compute every
intermediate state of whole sequences in closed form (``teacher_states``, a loop over atoms only).
The tests check that both give the same actions, masks and per-step log-probabilities. Samples are
deterministic for a given ``seed`` and ``batch_size``.
"""
from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ...chem.elements import max_valence
from ...nn.sampling import masked_log_softmax
from ...nn.transformer import BiasedBlock
from .. import _inputs as check
from ..base import GenerativeModel, evaluating, register
from ..conditioning import (ConditionEncoder, check_candidates, check_guidance, closest_to_request,
                            condition_embedding)
from .decode import decode
from .actions import ATOM, RING, ActionDataset, EncodedSet, Linearized, _z_charge, atom_code, code_to_token
from .graph_state import teacher_states

if TYPE_CHECKING:  # RDKit is imported where molecules are built: training needs none (a bare GPU machine)
    from rdkit import Chem

    from ...samples import SampleSet
    from .scaffold import Scaffold, ScaffoldConstraint


class RelationBlock(BiasedBlock):
    """A :class:`~molgen.nn.transformer.BiasedBlock` whose attention bias is a learned scalar per
    head for the graph relation between the atoms of query and key token (``rel``: 0 BOS, 1 same
    atom, 2..4 bonded by order 1..3, 5.. graph distance 2..max_distance)."""

    def __init__(self, d: int, heads: int, ff: int, n_rel: int, dropout: float) -> None:
        super().__init__(d, heads, ff, dropout=dropout)
        self.rel = nn.Embedding(n_rel, heads)
        nn.init.zeros_(self.rel.weight)

    def forward(self, x: torch.Tensor, rel: torch.Tensor,  # type: ignore[override]
                causal: torch.Tensor) -> torch.Tensor:
        """Full sequence: x (B, T, d), rel (B, T, T) relation indices, causal (T, T) additive mask."""
        return super().forward(x, self.rel(rel).permute(0, 3, 1, 2) + causal)

    def step(self, x: torch.Tensor, rel: torch.Tensor, cache: Sequence[torch.Tensor],  # type: ignore[override]
             t: int) -> torch.Tensor:
        """One token per sequence: x (B, 1, d); rel (B, t+1); cache [K, V] of (B, H, cap, dh)."""
        return super().step(x, self.rel(rel).permute(0, 2, 1)[:, :, None, :], cache, t)


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
    the heavy atoms of a molecule (sampling and scoring; :func:`molgen.training.ar.training_setup` sets
    it to the training set's largest molecule, so the model never samples sizes it has not seen);
    sequences hold at most ``2 * max_atoms`` actions; graph distances are clipped at ``max_distance`` bonds.
    ``max_ring_size`` (None: no limit): with the masks on, no ring closure makes a ring of more atoms
    (MOSES' data has no ring of 8 or more, by construction); like the valence masks it shapes sampling
    and the masked likelihood, and a molecule with a larger ring scores -inf there.
    """

    name: ClassVar[str] = "ar"
    likelihood_kind = "exact"
    pretrained_datasets: ClassVar[tuple[str, ...]] = ("qm9", "moses")

    def __init__(self, atom_types: Sequence[str] = ("C", "N", "O", "F"), max_atoms: int = 38,
                 d_model: int = 128, n_layers: int = 4, n_heads: int = 4, d_ff: int = 512,
                 max_distance: int = 12, dropout: float = 0.0, valence_mask_in_loss: bool = False,
                 max_ring_size: int | None = None, conditions: Sequence[str] = (),
                 condition_stats: dict | None = None) -> None:
        super().__init__()
        self.atom_types = tuple(atom_types)
        self.max_atoms = int(max_atoms)
        self.max_actions = 2 * self.max_atoms
        self.max_distance = int(max_distance)
        self.valence_mask_in_loss = bool(valence_mask_in_loss)
        self._max_ring_size = check.ring_size_limit(max_ring_size)
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
        self.blocks = nn.ModuleList(RelationBlock(d, n_heads, d_ff, n_rel, dropout) for _ in range(n_layers))
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
        # conditions p(x | y): an embedding added to every token (zero at initialisation)
        self.conditions = tuple(conditions)
        self.condition_stats = dict(condition_stats or {})
        self.cond_encoder = ConditionEncoder(self.conditions, self.condition_stats, d) if self.conditions else None

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
        S = teacher_states(kind, typ, ptr, bond, self.maxval, valence, self.max_atoms, self.max_actions,
                            self.max_distance, self.max_ring_size)
        N, owners = S["n_atoms"], S["owners"]
        x = self._bos(B)[:, None]
        if L > 1:
            x = torch.cat([x, self._embed(S["feats"])], 1)
        if self.cond_encoder is not None and "cond" in batch:
            x = x + self.cond_encoder(batch["cond"].to(dev), batch["cond_mask"].to(dev))[:, None]
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
        lp_kind = pick(masked_log_softmax(self.kind_head(h), kind_m), kind.clamp(min=0))
        lp_first = pick(torch.log_softmax(self.first_head(h[:, 0]).float(), -1), typ[:, 0])
        # ATOM: parent pointer, then (type, bond)
        lp_par = pick(masked_log_softmax(self._pointer(h, key_p, self.q_parent, self.f_parent, rem, dist),
                                          parent_m), ptr)
        tb = typ * 3 + (bond - 1).clamp(min=0)
        lp_tb = pick(masked_log_softmax(self._atom_logits(h, ctx_p.gather(1, at_ptr), rem_p, dist_p),
                                         self._atom_mask(rem_p, valence)), tb)
        # RING: target pointer, then bond
        lp_tgt = pick(masked_log_softmax(self._pointer(h, key_r, self.q_ring, self.f_ring, rem, dist), ring_m), ptr)
        lp_bond = pick(masked_log_softmax(self._bond_logits(h, ctx_r.gather(1, at_ptr), rem_p, rem_last, dist_p),
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

    def _to_mols(self, res: dict[str, torch.Tensor]) -> list[Chem.Mol]:
        from .encoding import delinearize

        kind, ptr, bond = (res[k].cpu().numpy() for k in ("kind", "ptr", "bond"))
        types, n = res["types"].cpu().numpy(), res["n_atoms"].cpu().numpy()
        return [delinearize([self.atom_types[t] for t in types[b, :n[b]]], kind[b], ptr[b], bond[b])
                for b in range(kind.shape[0])]

    @property
    def max_ring_size(self) -> int | None:
        """The ring-size limit of sampling and the masked likelihood (None: none); settable, and
        kept in the config that :meth:`save_pretrained` writes."""
        return self._max_ring_size

    @max_ring_size.setter
    def max_ring_size(self, value: int | None) -> None:
        self._max_ring_size = check.ring_size_limit(value)
        if hasattr(self, "config"):
            self.config["max_ring_size"] = self._max_ring_size

    def _decode(self, batch: int, gen: torch.Generator | None = None, mask: bool = True, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None,
                forced: dict[str, torch.Tensor] | None = None, constraint: ScaffoldConstraint | None = None,
                cond: torch.Tensor | None = None, guidance: float = 1.0) -> dict[str, torch.Tensor]:
        """The KV-cached sampler (:func:`molgen.models.ar.decode.decode`) for ``batch`` molecules."""
        with torch.no_grad():
            return decode(self, batch, gen, mask, temperature, top_k, top_p, forced, constraint, cond, guidance)

    def condition_vector(self, condition: "dict[str, float] | None") -> torch.Tensor | None:
        """The embedding (d,) of a request such as ``{"logp": 2.5}`` (checked; see
        :func:`molgen.models.conditioning.condition_tensors`), or None for an unconditional draw."""
        return condition_embedding(self.cond_encoder, condition, self.conditions, self.condition_stats, "ar",
                                   self.device)

    def sample(self, n: int, seed: int | None = 0, progress: bool = False, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, batch_size: int = 1000,
               mask: bool = True, scaffold: "str | Scaffold | None" = None, scaffold_method: str = "auto",
               condition: "dict[str, float] | None" = None, guidance: float = 1.0, candidates: int = 1) -> SampleSet:
        """Sample ``n`` molecules in batches of ``batch_size``.

        With ``condition`` (a checkpoint trained with conditions: ``{"logp": 2.5, "qed": 0.8}``, any
        subset of ``self.conditions``) the samples come from p(x | y); ``guidance`` w > 1 sharpens it
        with classifier-free guidance (logits ``uncond + w * (cond - uncond)``; 1: plain conditional), and
        ``info["log_prob"]`` is then that of the guided sampler. ``candidates`` K > 1 (with a condition;
        generate-and-select) draws K samples per molecule and keeps, of each K consecutive ones, the valid
        one whose exact RDKit values of the requested properties are closest to the request, in units of
        each property's training std (:func:`molgen.models.conditioning.closest_to_request`; K times the
        sampling cost, plus RDKit's values of every draw); ``info["candidates"]`` records K and
        ``info["log_prob"]`` each kept sample's own. K = 1 draws exactly the samples of a plain call.

        With ``scaffold`` (a SMILES; ``*`` marks the only atoms that may grow) every sample holds it
        (:mod:`molgen.models.scaffold_sampling`): ``scaffold_method="auto"`` keeps unconstrained samples
        that hold it (exact draws of p(x | scaffold), exact log p(x)) and past ``FILTER_BUDGET`` draws per
        sample decodes the rest with the scaffold's actions interleaved (:mod:`molgen.models.ar.scaffold`,
        that sampler's log-probability); "filter" / "decode": one stage only (filtered samples first).

        ``seed=None`` draws a fresh seed (recorded in ``info["seed"]``). The first k samples of a
        seed depend on ``n`` and ``batch_size`` (molecules of a batch share the generator's stream):
        draw once and slice.

        ``temperature`` divides every log-probability, ``top_k`` / ``top_p`` keep the k most likely /
        the smallest set with probability >= p of each choice. With ``mask=False`` the valence masks
        are off (structural masks stay) and invalid samples come back as None. ``info["log_prob"]``
        holds each sample's action-sequence log-probability in nats (masks as chosen, no temperature).
        """
        from ...samples import SampleSet
        from ..scaffold_sampling import check_method, sample_with_scaffold
        from .scaffold import ScaffoldConstraint

        n = check.positive_int("n", n)
        seed = check.seed_or_fresh(seed)
        temperature = check.positive_float("temperature", temperature)
        top_k = check.optional_positive_int("top_k", top_k)
        top_p = None if top_p is None else check.probability("top_p", top_p)
        batch_size = check.positive_int("batch_size", batch_size)
        guidance = check_guidance(guidance, condition)
        candidates = check_candidates(candidates, condition)
        scaffold_method = check_method(scaffold_method, scaffold)
        constraint = (None if scaffold is None else
                      ScaffoldConstraint(scaffold, self.atom_types, self.max_atoms, self.max_actions))
        cond = self.condition_vector(condition)
        gen = torch.Generator(device=self.device).manual_seed(int(seed))

        def draw(count: int, constraint: ScaffoldConstraint | None = None) -> tuple[list[Chem.Mol], np.ndarray]:
            mols: list[Chem.Mol] = []
            logp: list[np.ndarray] = []
            total = count * candidates
            for start in range(0, total, batch_size):
                m = min(batch_size, total - start)
                res = self._decode(m, gen, mask, temperature, top_k, top_p, constraint=constraint, cond=cond,
                                   guidance=guidance)
                mols.extend(self._to_mols(res))
                logp.append(res["logp"].sum(1).cpu().numpy())
                bar.update(m / candidates)
            log_prob = np.concatenate(logp)
            if candidates == 1:
                return mols, log_prob
            keep = closest_to_request(mols, candidates, condition, self.condition_stats)
            return [mols[i] for i in keep], log_prob[keep]

        with evaluating(self), tqdm(total=n, disable=not progress, desc="sample ar", unit="mol") as bar:
            mols, log_prob, extra = (draw(n) + ({},) if constraint is None else sample_with_scaffold(
                n, constraint.scaffold, scaffold_method, draw, lambda k: draw(k, constraint)))
        if cond is not None:
            extra.update(condition=dict(condition or {}), guidance=guidance, candidates=candidates)
        if self.max_ring_size is not None and mask:
            extra.update(max_ring_size=self.max_ring_size)
        return SampleSet.from_mols(mols, model="ar", seed=seed, log_prob=log_prob, mask=mask,
                                   temperature=temperature, top_k=top_k, top_p=top_p, **extra)

    def sample_actions(self, n: int, seed: int = 0, mask: bool = True, batch_size: int = 1000,
                       temperature: float = 1.0) -> tuple[EncodedSet, np.ndarray]:
        """``n`` unconditional samples as raw action sequences, without RDKit: an :class:`EncodedSet`
        (atom codes and actions; the invalid ones of ``mask=False`` too) and each sample's log-probability
        (nats). The same draws as :meth:`sample` with these settings; build the molecules later with
        :func:`molgen.models.ar.encoding.molecules_from_actions` (a machine with RDKit)."""
        n = check.positive_int("n", n)
        seed = check.seed(seed)
        batch_size = check.positive_int("batch_size", batch_size)
        temperature = check.positive_float("temperature", temperature)
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        codes = np.asarray([atom_code(*_z_charge(t)) for t in self.atom_types], np.int16)
        parts, logp = [], []
        with evaluating(self):
            for start in range(0, n, batch_size):
                res = self._decode(min(batch_size, n - start), gen, mask, temperature)
                kind, ptr, bond, types, n_atoms = (res[k].cpu().numpy() for k in
                                                   ("kind", "ptr", "bond", "types", "n_atoms"))
                items = []
                for b in range(kind.shape[0]):
                    stop = np.flatnonzero((kind[b] != ATOM) & (kind[b] != RING))
                    length = int(stop[0]) if stop.size else kind.shape[1]
                    p = ptr[b, :length].astype(np.int16)
                    p[:1] = -1  # the first atom has no parent
                    items.append(Linearized(codes[types[b, :n_atoms[b]]], kind[b, :length].astype(np.int8), p,
                                            bond[b, :length].astype(np.int8)))
                parts.append(EncodedSet.from_list(items, offset=start))
                logp.append(res["logp"].sum(1).cpu().numpy())
        return EncodedSet.concat(parts), np.concatenate(logp)

    # --- likelihood ------------------------------------------------------------------------------------
    def encode_molecules(self, molecules: "Sequence[str | Chem.Mol] | SampleSet"
                         ) -> tuple[ActionDataset, list[str | None]]:
        """Linearise molecules (SMILES, Mols or a SampleSet) for this model: the dataset and, per
        input, None or why it is unusable."""
        from .encoding import encode

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

    def encoded_log_likelihood(self, data: ActionDataset, mask: bool = True, batch_size: int = 256) -> np.ndarray:
        """Exact log-probability (nats, float64) of each molecule of an encoded ``data`` set (from
        :meth:`encode_molecules`), in its order, scored ``batch_size`` at a time in eval mode
        (``mask``: with the valence masks, as in sampling)."""
        out = []
        with evaluating(self):
            for start in range(0, len(data), batch_size):
                idx = np.arange(start, min(start + batch_size, len(data)))
                out.append(self._teacher(data.batch(idx), valence=mask).double().sum(1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

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
        out[data.encoded.source[data.index]] = self.encoded_log_likelihood(data, mask, batch_size)
        bad = [(i, r) for i, r in enumerate(reasons) if r is not None]
        if bad:
            shown = "; ".join(f"#{i}: {r}" for i, r in bad[:3])
            warnings.warn(f"{len(bad)} of {len(items)} molecules not scored (NaN): {shown}"
                          + (" ..." if len(bad) > 3 else ""), stacklevel=2)
        if return_reasons:
            return out, reasons
        return out

