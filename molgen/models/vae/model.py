"""Graph VAE: a GNN encoder to a Gaussian q(z | G), a standard normal prior p(z), and a
valence-masked sequential graph decoder p(G | z) in the spirit of CGVAE (Liu et al., NeurIPS 2018).

Molecules are heavy-atom graphs. An atom is a *token*, an element with its formal charge ("C", "N+",
"O-"); bonds are Kekulé bonds (single, double, triple); hydrogens are implicit and RDKit fills them
up to the atom's valence, so a decoded graph determines the molecule. Atoms are numbered in a
canonical breadth-first order (RDKit's canonical atom ranks pick the start atom and break ties).

Decoder. A causal transformer runs over the atoms decoded so far, conditioned on z; attention from
atom t to an earlier atom j gets a learned per-head bias for the bond between them. For t = 0, 1, ...
it picks the token of atom t or END; then, for each earlier atom j = 0 .. t-1 in order, the bond t-j
(none, single, double, triple) from the pair's states, the remaining valence of j, the valence t has
used so far and the distance t - j. With ``constrained=True`` (the default) logits are masked so that

- no bond order exceeds the remaining valence of either atom (valence caps from
  :data:`molgen.chem.elements.CHARGED_VALENCES`, e.g. C 4, N 3, N+ 4, O 2, O- 1, S 6);
- a new atom is started only while some earlier atom has free valence, and it bonds to at least one
  earlier atom (graphs stay connected);
- at most ``max_atoms`` atoms are decoded.

Every decoded graph therefore sanitises in RDKit: samples are valid without post-hoc correction.
``constrained=False`` drops the valence masks (keeping only the connectivity rule and the atom limit)
to measure how often the network alone respects valences.

Training minimises, per molecule in nats, ``NLL(G | z) + beta(step) * KL(q(z|G) || N(0, I))`` with
z drawn by the reparameterisation trick. The KL weight is annealed linearly (Bowman et al., 2016):
``beta(step) = beta * clip((step - kl_start_step) / kl_warmup_steps, 0, 1)``; the step counter is a
buffer of the model, so it is checkpointed and resumed with the weights. By default the training NLL
uses only the connectivity masks, so the network learns valences itself and the valence masks act
as a guarantee; this NLL upper-bounds the masked decoder's NLL, so training maximises a lower bound
of the masked model's ELBO.

``log_likelihood`` returns per-molecule ELBO estimates in nats (a lower bound on log p(G), with the
atom order fixed to the canonical one), or an importance-weighted bound (Burda et al., 2016).
"""
from __future__ import annotations

import contextlib
import math
import numbers
import time
import warnings
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from rdkit import Chem
from torch import nn

from ..chem.build import mol_from_graph
from ..chem.elements import atomic_number
from ..nn.graph_encoder import GraphEncoder
from ..nn.sampling import masked_log_softmax as _masked_log_softmax
from ..samples import SampleSet
from ..training.setup import TrainingSetup
from .base import GenerativeModel, register
from .._cache import digest_strings
from . import _inputs as check
from .vae_data import (_MAX_HS, _VALENCE_BINS, MIN_TOKEN_COUNT, GraphTable, _canonical_hash, _dataset_smiles,
                       _has_valence, cached_scan, collate, featurize, max_valence, parse_token,
                       scan_atom_tokens, token_name)

__all__ = ["GraphVAE", "GraphTable", "featurize", "gaussian_kl", "scan_atom_tokens", "max_valence",
           "parse_token", "token_name"]

# --- the decoder ----------------------------------------------------------------------------------
def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) in nats, summed over the last dimension."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def _reverse_later(open_: torch.Tensor) -> torch.Tensor:
    """``out[..., j]`` = whether any ``open_[..., j']`` with ``j' > j`` is true."""
    c = open_.long().flip(-1).cumsum(-1).flip(-1)
    return (c - open_.long()) > 0


class _Block(nn.Module):
    """Pre-norm transformer block whose attention takes an additive bias (B, heads, L, L)."""

    def __init__(self, dim: int, heads: int, dropout: float, mlp_ratio: int) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                           dropout_p=self.dropout if self.training else 0.0)
        x = x + self.out(a.transpose(1, 2).reshape(b, length, dim))
        return x + self.mlp(self.norm2(x))

    def step(self, x: torch.Tensor, bias: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor],
             p: int) -> torch.Tensor:
        """One new position ``p`` (x: (B, 1, dim)) attending to the cached keys and values of
        positions 0..p-1 (``cache``: two (B, heads, L, dim / heads) buffers, filled in place)."""
        b, _, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, 1, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        keys, values = cache
        keys[:, :, p] = k[:, :, 0]
        values[:, :, p] = v[:, :, 0]
        a = F.scaled_dot_product_attention(q, keys[:, :, :p + 1], values[:, :, :p + 1], attn_mask=bias.to(q.dtype))
        x = x + self.out(a.transpose(1, 2).reshape(b, 1, dim))
        return x + self.mlp(self.norm2(x))


class SequentialGraphDecoder(nn.Module):
    """p(G | z): atoms in canonical BFS order, each followed by its bonds to earlier atoms.

    ``caps`` are the valence caps of the atom tokens; index ``len(caps)`` is the END token.
    """

    def __init__(self, caps: Sequence[int], max_atoms: int, latent_dim: int, dim: int, layers: int,
                 heads: int, dropout: float = 0.0, mlp_ratio: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"decoder_dim ({dim}) must be a multiple of decoder_heads ({heads})")
        self.n_types, self.max_atoms, self.heads, self.n_layers = len(caps), max_atoms, heads, layers
        self.register_buffer("caps", torch.tensor(list(caps), dtype=torch.long), persistent=False)
        self.z_in = nn.Linear(latent_dim, dim)
        self.bos = nn.Parameter(torch.zeros(dim))
        self.atom_emb = nn.Embedding(self.n_types, dim)
        self.pos_emb = nn.Embedding(max_atoms, dim)
        self.back_emb = nn.Embedding(_VALENCE_BINS, dim)
        self.bond_bias = nn.Embedding(4, layers * heads)
        nn.init.zeros_(self.bond_bias.weight)
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout, mlp_ratio) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.atom_head = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, self.n_types + 1))
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_atom, self.k_atom = nn.Embedding(self.n_types, dim), nn.Embedding(self.n_types, dim)
        self.rem_emb, self.used_emb = nn.Embedding(_VALENCE_BINS, dim), nn.Embedding(_VALENCE_BINS, dim)
        self.off_emb = nn.Embedding(max_atoms, dim)
        self.edge_mlp = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 4))

    @property
    def end(self) -> int:
        return self.n_types

    def states(self, z: torch.Tensor, atoms: torch.Tensor, bonds: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, P + 1, dim): position 0 is the start (it sees only z), position t + 1
        follows atom t. ``atoms`` (B, P) with -1 padding; ``bonds`` (B, P, P) symmetric orders."""
        b, p = atoms.shape
        zc = self.z_in(z)
        back = torch.tril(bonds, -1).sum(-1).clamp(max=_VALENCE_BINS - 1)
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
            back = bonds[:, p - 1, :p - 1].sum(-1).clamp(max=_VALENCE_BINS - 1)
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
        u = (q + k + self.rem_emb(rem_k.clamp(0, _VALENCE_BINS - 1))
             + self.used_emb(used.clamp(0, _VALENCE_BINS - 1)) + self.off_emb(offset.clamp(0, self.max_atoms - 1)))
        return self.edge_mlp(u)

    def nll(self, z: torch.Tensor, atoms: torch.Tensor, bonds: torch.Tensor, n_atoms: torch.Tensor,
            valence_masks: bool) -> torch.Tensor:
        """-log p(G | z) per molecule (nats) under teacher forcing; all decisions in one pass.

        With ``valence_masks`` the logits are masked as in constrained decoding (the likelihood of
        the sampler); without, only the connectivity rule and the atom limit are applied.
        """
        b, big_n = atoms.shape
        dev = z.device
        h = self.states(z, atoms, bonds)                                   # (B, N + 1, dim)
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
        logp_a = _masked_log_softmax(logits_a, allowed)
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
            logp_e = _masked_log_softmax(logits_e, allowed_e)
            step_nll = -logp_e.gather(-1, bonds[bi, ti, ji][:, None])[:, 0]
            nll = nll.index_add(0, bi, step_nll)
        return nll

    @torch.no_grad()
    def generate(self, z: torch.Tensor, temperature: float = 1.0, greedy: bool = False,
                 constrained: bool = True, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode a batch of latents: ``(atoms (B, A) with -1 padding, bonds (B, A, A), n_atoms (B,),
        log p(G | z) (B,) in nats of the decisions taken, under the masks used)``.

        The transformer runs incrementally: each step adds one position and attends to cached keys
        and values (exactly what :meth:`states` computes, without recomputing the prefix).
        """
        b, big_a, dev = z.shape[0], self.max_atoms, z.device
        zc = self.z_in(z)
        dim = zc.shape[-1]
        cache = [(zc.new_zeros(b, self.heads, big_a + 1, dim // self.heads),
                  zc.new_zeros(b, self.heads, big_a + 1, dim // self.heads)) for _ in self.blocks]
        hs = zc.new_zeros(b, big_a + 1, dim)
        atoms = torch.full((b, big_a), -1, dtype=torch.long, device=dev)
        bonds = torch.zeros((b, big_a, big_a), dtype=torch.long, device=dev)
        rem = torch.zeros((b, big_a), dtype=torch.long, device=dev)
        n_atoms = torch.zeros(b, dtype=torch.long, device=dev)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        logp = torch.zeros(b, device=dev)
        for p in range(big_a + 1):
            hs[:, p] = self._next_state(zc, p, atoms, bonds, cache)
            allowed = torch.ones(b, self.n_types + 1, dtype=torch.bool, device=dev)
            if p == 0:
                allowed[:, self.end] = False
            elif p == big_a:
                allowed[:, :self.end] = False
            elif constrained:
                allowed[:, :self.end] = (rem[:, :p] >= 1).any(-1)[:, None]
            a, lp = _pick(self.atom_head(hs[:, p]), allowed, temperature, greedy, generator)
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
            open_ = rem[:, :p] >= 1
            later = _reverse_later(open_)
            used = torch.zeros(b, dtype=torch.long, device=dev)
            q = self.q_proj(hs[:, p]) + self.q_atom(a)
            k = self.k_proj(hs[:, 1:p + 1]) + self.k_atom(atoms[:, :p].clamp(min=0))
            # everything but the running used-valence term is fixed for this atom: precompute it
            base = (q[:, None] + k + self.rem_emb(rem[:, :p].clamp(0, _VALENCE_BINS - 1)) + self.off_emb(offsets))
            for j in range(p):
                logits = self.edge_mlp(base[:, j] + self.used_emb(used.clamp(0, _VALENCE_BINS - 1)))
                has = used > 0
                if constrained:
                    cap = torch.minimum(rem[:, j], cap_p - used)
                    first_ok = has | later[:, j]
                else:
                    cap = torch.full_like(used, 3)
                    first_ok = has | torch.full_like(has, j < p - 1)
                allowed_e = torch.stack([first_ok | ~new, cap >= 1, cap >= 2, cap >= 3], dim=-1)
                allowed_e[:, 1:] &= new[:, None]
                order, lp = _pick(logits, allowed_e, temperature, greedy, generator)
                logp = logp + torch.where(new, lp, 0.0)
                bonds[:, p, j] = order
                bonds[:, j, p] = order
                used = used + order
                rem[:, j] = rem[:, j] - order
            rem[:, p] = torch.where(new, cap_p - used, 0)
            n_atoms[new] = p + 1
        return atoms, bonds, n_atoms, logp


def _pick(logits: torch.Tensor, allowed: torch.Tensor, temperature: float, greedy: bool,
          generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A choice per row (argmax, or a draw at ``temperature``) and its log-probability (nats) under
    the masked distribution at temperature 1."""
    logits = logits.float().masked_fill(~allowed, float("-inf"))
    if greedy:
        choice = logits.argmax(-1)
    else:
        choice = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)[:, 0]
    return choice, torch.log_softmax(logits, dim=-1).gather(-1, choice[:, None])[:, 0]


# --- the model ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _evaluating(module: nn.Module) -> Iterator[None]:
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was)


@register
class GraphVAE(GenerativeModel):
    """Graph VAE with a valence-masked sequential decoder (see the module docstring).

    Args:
        atom_types: atom tokens (element + charge, e.g. "N+"), computed from the training set.
        max_atoms: most heavy atoms a decoded molecule may have.
        latent_dim: size of z.
        encoder_hidden, encoder_layers: width and depth of the GINE encoder.
        decoder_dim, decoder_layers, decoder_heads, decoder_mlp_ratio: the decoder transformer
            (width, blocks, attention heads, feed-forward width / decoder_dim).
        dropout: attention dropout in the decoder.
        beta: final KL weight; beta < 1 trades prior fit for reconstruction (a beta-VAE).
        kl_start_step, kl_warmup_steps: the KL weight is 0 before ``kl_start_step`` and reaches
            ``beta`` linearly ``kl_warmup_steps`` later.
        valence_masks_in_loss: train with the sampler's valence masks instead of learning valences.
        sample_batch_size: molecules decoded at once by ``sample``.
    """

    name = "vae"
    pretrained_datasets = ("qm9", "moses")

    def __init__(self, atom_types: Sequence[str] = ("C", "N", "O", "F"), max_atoms: int = 9,
                 latent_dim: int = 64, encoder_hidden: int = 128, encoder_layers: int = 4,
                 decoder_dim: int = 128, decoder_layers: int = 4, decoder_heads: int = 4,
                 decoder_mlp_ratio: int = 4, dropout: float = 0.0, beta: float = 1.0, kl_start_step: int = 0,
                 kl_warmup_steps: int = 2000, valence_masks_in_loss: bool = False,
                 sample_batch_size: int = 1000) -> None:
        super().__init__()
        self.atom_types = tuple(atom_types)
        if not self.atom_types or len(set(self.atom_types)) != len(self.atom_types):
            raise ValueError(f"atom_types must be distinct tokens, got {list(self.atom_types)}")
        caps = [max_valence(t) for t in self.atom_types]
        self.max_atoms, self.latent_dim = int(max_atoms), int(latent_dim)
        self.beta, self.kl_start_step, self.kl_warmup_steps = float(beta), int(kl_start_step), int(kl_warmup_steps)
        self.valence_masks_in_loss = bool(valence_masks_in_loss)
        self.sample_batch_size = int(sample_batch_size)
        self._z = [atomic_number(parse_token(t)[0]) for t in self.atom_types]
        self._charges = [parse_token(t)[1] for t in self.atom_types]
        self.encoder = GraphEncoder(node_sizes=(len(self.atom_types), _MAX_HS + 1, 2, 2), edge_sizes=(4, 2, 2),
                                    hidden=encoder_hidden, layers=encoder_layers, out_dim=2 * latent_dim)
        self.decoder = SequentialGraphDecoder(caps, self.max_atoms, latent_dim, decoder_dim, decoder_layers,
                                              decoder_heads, dropout, decoder_mlp_ratio)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    # --- training ---------------------------------------------------------------------------------
    def kl_weight(self, step: int | None = None) -> float:
        """The annealed KL weight beta(step)."""
        s = int(self.step) if step is None else step
        if self.kl_warmup_steps <= 0:
            return self.beta if s >= self.kl_start_step else 0.0
        return self.beta * min(max((s - self.kl_start_step) / self.kl_warmup_steps, 0.0), 1.0)

    def posterior(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | G), each (B, latent_dim); log-variance clamped to [-10, 4]."""
        out = self.encoder(batch["x"], batch["edge_index"], batch["edge_attr"], batch["batch"],
                           batch["atoms"].shape[0]).float()
        mu, logvar = out.chunk(2, dim=-1)
        return mu, logvar.clamp(-10.0, 4.0)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean over the batch of NLL + beta(step) * KL (nats per molecule)."""
        mu, logvar = self.posterior(batch)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        nll = self.decoder.nll(z, batch["atoms"], batch["bonds"], batch["n_atoms"], self.valence_masks_in_loss)
        kl = gaussian_kl(mu, logvar)
        beta = self.kl_weight()
        if self.training:
            self.step += 1
        loss = (nll + beta * kl).mean()
        return loss, {"nll": float(nll.mean().detach()), "kl": float(kl.mean().detach()), "beta": beta,
                      "elbo": float(-(nll + kl).mean().detach())}

    @classmethod
    def training_setup(cls, dataset: str, model_cfg: dict, train_cfg: dict) -> TrainingSetup:
        """Model, featurised training set, defaults and learning-curve evaluator for a dataset.

        The vocabulary and ``max_atoms`` come from the training split (unless ``model_cfg`` sets
        them). The training set is featurised once, in parallel, and cached on disk by its full
        content (:meth:`GraphTable.cached`); batches are then cut from the cached arrays.
        """
        if dataset not in _DATASET_DEFAULTS:
            raise ValueError(f"unknown dataset {dataset!r} for the vae; choose from {', '.join(_DATASET_DEFAULTS)}")
        t0 = time.perf_counter()
        train, holdout = _dataset_smiles(dataset)
        digest = digest_strings(train)
        counts, largest = cached_scan(f"{dataset}-train", train, digest=digest)
        cfg = {**_DATASET_DEFAULTS[dataset]["model"], **model_cfg}
        if "atom_types" not in cfg:
            cfg["atom_types"] = [t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                                 if c >= MIN_TOKEN_COUNT and _has_valence(t)]
        cfg.setdefault("max_atoms", largest)
        model = cls(**cfg)
        table = GraphTable.cached(f"{dataset}-train", train, model.atom_types, model.max_atoms, digest=digest)
        setup_seconds = time.perf_counter() - t0
        left_out = {t: c for t, c in counts.items() if t not in model.atom_types}
        metrics = {"dataset": dataset, "train_split": "train", "train_molecules": len(train),
                   "train_not_representable": len(table.reasons),
                   "atom_token_counts": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
                   "tokens_left_out": left_out, "setup_seconds": round(setup_seconds, 1)}
        return TrainingSetup(model=model, data=table, train_defaults=dict(_DATASET_DEFAULTS[dataset]["train"]),
                             evaluate=CurveEvaluator(table, holdout), metrics=metrics)

    # --- featurising user input --------------------------------------------------------------------
    def graphs(self, molecules: "str | Chem.Mol | Sequence[str | Chem.Mol] | SampleSet") -> GraphTable:
        """Featurise molecules (SMILES, Mols or a SampleSet) for this model; reasons for rejects in
        ``.reasons``."""
        table = GraphTable(check.molecule_list(molecules), self.atom_types, self.max_atoms)
        table.ensure(np.arange(len(table)))
        return table

    def _batch_to(self, table: GraphTable, rows: np.ndarray) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in collate(table, rows).items()}

    def _chunks(self, rows: np.ndarray, size: int) -> Iterator[np.ndarray]:
        for s in range(0, rows.size, size):
            yield rows[s:s + size]

    # --- latent tools ------------------------------------------------------------------------------
    def encode(self, molecules: "str | Chem.Mol | Sequence[str | Chem.Mol] | SampleSet", sample: bool = False,
               seed: int | None = None, batch_size: int = 512) -> torch.Tensor:
        """Latent vectors (B, latent_dim): the posterior means (or draws from q(z|G) with ``sample``).

        Raises ValueError naming the first molecule that cannot be parsed or represented.
        """
        items = check.molecule_list(molecules)
        if not items:
            raise ValueError("molecules is empty: nothing to encode")
        batch_size = check.positive_int("batch_size", batch_size)
        seed = None if seed is None else check.seed(seed)
        table = self.graphs(items)
        bad = np.flatnonzero(table.status != 1)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"cannot encode {_label(items[i])}: {table.reasons[i]}")
        gen = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        out = []
        with _evaluating(self):
            for rows in self._chunks(np.arange(len(items)), batch_size):
                mu, logvar = self.posterior(self._batch_to(table, rows))
                if sample:
                    eps = torch.randn(mu.shape, generator=gen, device=mu.device)
                    mu = mu + eps * (0.5 * logvar).exp()
                out.append(mu)
        return torch.cat(out)

    def _decode_graphs(self, z: torch.Tensor, temperature: float, greedy: bool, constrained: bool,
                       seed: int | None, batch_size: int | None) -> list[Chem.Mol]:
        gen = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        size = batch_size or self.sample_batch_size
        mols: list[Chem.Mol] = []
        with _evaluating(self):
            for s in range(0, z.shape[0], size):
                atoms, bonds, n, _ = self.decoder.generate(z[s:s + size].to(self.device), temperature, greedy,
                                                           constrained, gen)
                mols.extend(self._to_mols(atoms.cpu().numpy(), bonds.cpu().numpy(), n.cpu().numpy()))
        return mols

    def _to_mols(self, atoms: np.ndarray, bonds: np.ndarray, n: np.ndarray) -> list[Chem.Mol]:
        zs, charges = np.array(self._z), np.array(self._charges)
        return [mol_from_graph(zs[atoms[i, :k]], bonds[i, :k, :k], charges[atoms[i, :k]])
                for i, k in enumerate(n.tolist())]

    def decode(self, z: torch.Tensor, greedy: bool = True, temperature: float = 1.0, constrained: bool = True,
               seed: int | None = None, batch_size: int | None = None) -> SampleSet:
        """Molecules decoded from latents ``z`` (B, latent_dim, finite): greedy (most likely choice
        at each step) by default, else sampled at ``temperature``."""
        check.finite_latents(z, self.latent_dim)
        temperature = check.positive_float("temperature", temperature)
        seed = None if seed is None else check.seed(seed)
        batch_size = check.optional_positive_int("batch_size", batch_size)
        mols = self._decode_graphs(z, temperature, greedy, constrained, seed, batch_size)
        return SampleSet.from_mols(mols, constrained=constrained, greedy=greedy)

    def reconstruct(self, molecules: "str | Chem.Mol | Sequence[str | Chem.Mol] | SampleSet") -> list[str | None]:
        """Canonical SMILES decoded greedily from the posterior mean of each molecule."""
        return self.decode(self.encode(molecules)).smiles

    def interpolate(self, a: "str | Chem.Mol", b: "str | Chem.Mol", steps: int = 8,
                    spherical: bool = False) -> list[str | None]:
        """Greedy decodings of ``steps`` evenly spaced points from z(a) to z(b), both included
        (posterior means; linear, or spherical-linear with ``spherical``)."""
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 2:
            raise ValueError(f"steps must be an integer of at least 2 (both end points included), got {steps!r}")
        for name, x in (("a", a), ("b", b)):
            if not isinstance(x, (str, Chem.Mol)):
                raise ValueError(f"{name} must be one SMILES string or RDKit Mol, got {type(x).__name__}")
        z = self.encode([a, b])
        t = torch.linspace(0.0, 1.0, steps, device=z.device)[:, None]
        if spherical:
            na, nb = z[0].norm(), z[1].norm()
            cos = torch.dot(z[0] / na, z[1] / nb).clamp(-1.0, 1.0)
            omega = torch.arccos(cos)
            if float(omega) < 1e-4:
                path = (1 - t) * z[0] + t * z[1]
            else:
                path = (torch.sin((1 - t) * omega) * z[0] + torch.sin(t * omega) * z[1]) / torch.sin(omega)
        else:
            path = (1 - t) * z[0] + t * z[1]
        return self.decode(path).smiles

    def neighbours(self, molecule: "str | Chem.Mol", n: int = 10, scale: float = 0.5,
                   seed: int = 0) -> list[str | None]:
        """Greedy decodings of ``n`` points ``z(molecule) + scale * eps``, eps ~ N(0, I)."""
        n = check.positive_int("n", n)
        scale = check.nonnegative_float("scale", scale)
        seed = check.seed(seed)
        if not isinstance(molecule, (str, Chem.Mol)):
            raise ValueError(f"molecule must be one SMILES string or RDKit Mol, got {type(molecule).__name__}")
        z = self.encode(molecule)
        gen = torch.Generator(device=z.device).manual_seed(seed)
        eps = torch.randn((n, self.latent_dim), generator=gen, device=z.device)
        return self.decode(z + scale * eps).smiles

    # --- sampling and likelihood --------------------------------------------------------------------
    def sample(self, n: int, seed: int = 0, progress: bool = False, temperature: float = 1.0,
               batch_size: int | None = None, constrained: bool = True, greedy: bool = False,
               prior_scale: float = 1.0) -> SampleSet:
        """``n`` molecules from z ~ N(0, prior_scale^2 I), decoded by sampling at ``temperature`` (or greedily).

        With ``constrained`` (default) the valence masks make every sample valid; ``prior_scale`` other
        than 1 draws z from a narrower or wider Gaussian than the prior (more typical or more unusual
        molecules). The SampleSet's ``info`` records the settings.
        """
        n = check.positive_int("n", n)
        seed = check.seed(seed)
        temperature = check.positive_float("temperature", temperature)
        prior_scale = check.positive_float("prior_scale", prior_scale)
        size = check.positive_int("batch_size", batch_size) if batch_size is not None else self.sample_batch_size
        gen = torch.Generator(device=self.device).manual_seed(seed)
        z = prior_scale * torch.randn((n, self.latent_dim), generator=gen, device=self.device)
        mols: list[Chem.Mol] = []
        from tqdm import tqdm

        with tqdm(total=n, disable=not progress, desc="sample vae", unit="mol") as bar:
            for s in range(0, n, size):
                mols.extend(self._decode_graphs(z[s:s + size], temperature, greedy, constrained,
                                                (seed * 1_000_003 + s) % check.SEED_LIMIT, size))
                bar.update(min(size, n - s))
        return SampleSet.from_mols(mols, model="vae", constrained=constrained, temperature=temperature,
                                   greedy=greedy, seed=seed, prior_scale=prior_scale)

    def log_likelihood(self, molecules: "str | Chem.Mol | Sequence[str | Chem.Mol] | SampleSet", samples: int = 1,
                       importance_weighted: bool = False, constrained: bool = True, seed: int = 0,
                       batch_size: int = 256, return_reasons: bool = False
                       ) -> "np.ndarray | tuple[np.ndarray, list[str | None]]":
        """Per-molecule lower bounds on log p(G) in nats.

        Default: the ELBO ``E_q[log p(G|z)] - KL(q(z|G) || p(z))``, the expectation estimated with
        ``samples`` draws and the KL in closed form. With ``importance_weighted``: the IWAE bound
        ``log (1/k) sum_i p(G|z_i) p(z_i) / q(z_i|G)`` with k = ``samples`` (tighter as k grows).
        Both use the decoder's canonical atom order, so they also bound log p(G) over all orders.
        ``constrained`` scores the valence-masked decoder (the sampler). ``molecules``: a SMILES
        string, an RDKit Mol, a list of them or a :class:`~molgen.SampleSet` (its molecules).
        Molecules that cannot be parsed or represented, and invalid samples, get NaN;
        ``return_reasons`` also returns the reason per molecule (None where the value is finite),
        otherwise a warning lists the first few.
        """
        items = check.molecule_list(molecules)
        samples = check.positive_int("samples", samples)
        seed = check.seed(seed)
        batch_size = check.positive_int("batch_size", batch_size)
        table = self.graphs(items)
        out = np.full(len(items), np.nan)
        rows = np.flatnonzero(table.status == 1)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        with _evaluating(self):
            for chunk in self._chunks(rows, batch_size):
                batch = self._batch_to(table, chunk)
                mu, logvar = self.posterior(batch)
                std = (0.5 * logvar).exp()
                terms = []
                for _ in range(samples):
                    eps = torch.randn(mu.shape, generator=gen, device=mu.device)
                    z = mu + eps * std
                    log_px = -self.decoder.nll(z, batch["atoms"], batch["bonds"], batch["n_atoms"], constrained)
                    if importance_weighted:
                        log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
                        log_qz = -0.5 * (eps.pow(2) + math.log(2 * math.pi) + logvar).sum(-1)
                        terms.append(log_px + log_pz - log_qz)
                    else:
                        terms.append(log_px)
                stacked = torch.stack(terms)
                if importance_weighted:
                    value = torch.logsumexp(stacked, dim=0) - math.log(samples)
                else:
                    value = stacked.mean(0) - gaussian_kl(mu, logvar)
                out[chunk] = value.double().cpu().numpy()
        reasons = [table.reasons.get(i) for i in range(len(items))]
        if return_reasons:
            return out, reasons
        bad = [(i, r) for i, r in enumerate(reasons) if r is not None]
        if bad:
            shown = "; ".join(f"{_label(items[i])}: {r}" for i, r in bad[:3])
            warnings.warn(f"log_likelihood is NaN for {len(bad)} of {len(items)} molecules ({shown})",
                          stacklevel=2)
        return out


def _label(x: "str | Chem.Mol | None") -> str:
    if isinstance(x, str):
        return repr(x)
    if isinstance(x, Chem.Mol):
        return "a Mol"
    if x is None:
        return "None (an invalid sample?)"
    return repr(x)


#: Model sizes and training settings per dataset. QM9 is sized for a CPU run of ~25 minutes;
#: MOSES for a GPU (bf16, large batches).
_DATASET_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "qm9": {
        "model": {"latent_dim": 64, "encoder_hidden": 128, "encoder_layers": 3, "decoder_dim": 128,
                  "decoder_layers": 3, "decoder_heads": 4, "decoder_mlp_ratio": 2, "beta": 0.05,
                  "kl_start_step": 0, "kl_warmup_steps": 1000},
        "train": {"batch_size": 128, "lr": 1e-3, "ema_decay": 0.995, "checkpoint_every": 500,
                  "eval_every": 1000, "log_every": 50},
    },
    "moses": {
        "model": {"latent_dim": 128, "encoder_hidden": 192, "encoder_layers": 4, "decoder_dim": 192,
                  "decoder_layers": 6, "decoder_heads": 6, "decoder_mlp_ratio": 2, "beta": 0.5,
                  "kl_start_step": 0, "kl_warmup_steps": 4000, "sample_batch_size": 2000},
        "train": {"batch_size": 512, "lr": 5e-4, "ema_decay": 0.999, "checkpoint_every": 2000,
                  "eval_every": 4000, "log_every": 100},
    },
}


class CurveEvaluator:
    """Learning-curve metrics from a few hundred prior samples and held-out reconstructions.

    Novelty is checked against the training molecules featurised so far (all of them for a
    cached training table; ``train_featurised`` says how far it got).
    """

    def __init__(self, table: GraphTable, holdout: Sequence[str], n_samples: int = 300, n_recon: int = 100) -> None:
        self.table, self.holdout = table, list(holdout)
        self.n_samples, self.n_recon = n_samples, n_recon
        self._recon_items: list[str] | None = None

    def __call__(self, model: GenerativeModel) -> dict[str, float]:
        if not isinstance(model, GraphVAE):
            raise TypeError(f"CurveEvaluator evaluates a GraphVAE, got {type(model).__name__}")
        out = model.sample(self.n_samples, seed=0)
        valid = [s for s in out.smiles if s is not None]
        unique = set(valid)
        done = self.table.status == 1
        known = set(self.table.keys[done].tolist())
        novel = sum(_canonical_hash(s) not in known for s in unique)
        if self._recon_items is None:  # featurise the held-out molecules once
            holdout = model.graphs(self.holdout)
            ok = np.flatnonzero(holdout.status == 1)[:self.n_recon]
            self._recon_items = [holdout.items[i] for i in ok]
        items = self._recon_items
        target = [Chem.MolToSmiles(Chem.MolFromSmiles(s), isomericSmiles=False) for s in items]
        recon = model.reconstruct(items) if items else []
        row = {"validity": len(valid) / len(out), "uniqueness": len(unique) / max(len(valid), 1),
               "novelty": novel / max(len(unique), 1), "train_featurised": float((self.table.status != 0).mean())}
        if items:
            row["reconstruction"] = float(np.mean([a == b for a, b in zip(recon, target)]))
        return row
