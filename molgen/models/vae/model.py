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

Conditional sampling p(G | y), two ways; a checkpoint uses the one it has:

- *in latent space* (the shipped ``vae-qm9`` and ``vae-moses``): a latent property head f(z)
  (:mod:`molgen.models.vae.latent_conditioning`, the folder's ``latent_head.*`` files beside unchanged
  weights) gives p(y | z) = N(y; f(z), sigma^2), and ``sample(condition=..., guidance=g)`` draws z from
  p(z) p(y | z)^g by MALA from the prior draws, then decodes as usual (guidance 0: exactly the
  unconditional samples). ``candidates=K`` decodes K such z per sample and keeps the molecule whose
  exact RDKit values lie closest to the request (generate-and-select, shared with the AR model).
- *in the decoder* (checkpoints with ``conditions`` in config.json): a condition embedding
  (:class:`~molgen.models.conditioning.ConditionEncoder`) added to the decoder's projected latent,
  trained with condition dropout, so the same weights decode p(G | z) and, with a guidance scale,
  classifier-free guidance; z from the N(0, I) prior. Such a checkpoint ignores a latent head.

Why latent space: a decoder fine-tuned this way from ``vae-qm9`` (``vae-qm9-cond``, not shipped) learnt
to ignore y (logP MAE at guidance 2: 1.18 / 0.72 / 1.25 at the QM9 test 10th / 50th / 90th percentiles,
against 1.23 / 0.71 / 1.37 unconditional; benchmarks/results/conditional_vae-qm9-cond.txt), since z from
a posterior that reconstructs 92 % of molecules already fixes the properties. Steering z itself is what
moves them. ``vae-qm9``, 1,000 samples per target at guidance 2 (benchmarks/results/conditional_vae-qm9.txt):
logP MAE 0.49 / 0.45 / 0.45 (unconditional 1.23 / 0.71 / 1.35), QED 0.072 / 0.045 / 0.054 (0.113 / 0.055 /
0.093); with ``candidates=4``: logP 0.152 / 0.138 / 0.133, QED 0.030 / 0.012 / 0.015, validity 100 %,
uniqueness at least 95.8 %. ``vae-moses`` at the MOSES test percentiles (benchmarks/results/conditional_vae-moses.txt),
guidance 2, plain / ``candidates=16``: logP MAE 0.66 / 0.66 / 0.72 and 0.061 / 0.058 / 0.069 (unconditional
1.28 / 0.80 / 1.30), MW 13.2 / 12.1 / 10.8 and 1.33 / 1.09 / 0.89 g/mol (45 / 22 / 35), QED 0.116 / 0.109 /
0.140 and 0.013 / 0.008 / 0.010 (0.136 / 0.105 / 0.162), uniqueness 100 %. MALA alone moves MW most and QED
least, as the head predicts QED poorly (held-out R^2 0.60 on posterior draws; logP 0.78, MW 0.91).

``log_likelihood`` returns per-molecule ELBO estimates in nats (a lower bound on log p(G), with the
atom order fixed to the canonical one), or an importance-weighted bound (Burda et al., 2016).
"""
from __future__ import annotations

import math
import numbers
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from ...chem.elements import atomic_number, max_valence, parse_token
from ...nn.graph_encoder import GraphEncoder
from .. import _inputs as check
from ..base import GenerativeModel, evaluating, register
from ..conditioning import (ConditionEncoder, check_candidates, check_guidance, closest_to_request,
                            condition_embedding, condition_tensors)
from .decoder import SequentialGraphDecoder
from .graphs import MAX_HS, GraphArrays, collate, save_decoded
from .latent_conditioning import LatentPropertyHead, guided_latents

if TYPE_CHECKING:  # RDKit is imported where molecules are read or built: training needs none (a bare GPU machine)
    from rdkit import Chem

    from ...chem.scaffold import Scaffold
    from ...samples import SampleSet
    from .scaffold import ScaffoldPrefix
    from .table import GraphTable

#: Decoded chunks: (atoms (B, A) token indices with -1 padding, bonds (B, A, A) orders, n_atoms (B,)).
Chunks = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def graph_mols(atom_types: Sequence[str], atoms: np.ndarray, bonds: np.ndarray, n: np.ndarray) -> list["Chem.Mol"]:
    """The (unsanitised) Mols of decoded graphs over the tokens ``atom_types`` (``atoms`` (B, A) token
    indices, ``bonds`` (B, A, A) Kekulé orders, ``n`` (B,) atom counts)."""
    from ...chem.build import mol_from_graph

    zs = np.array([atomic_number(parse_token(t)[0]) for t in atom_types])
    charges = np.array([parse_token(t)[1] for t in atom_types])
    return [mol_from_graph(zs[atoms[i, :k]], bonds[i, :k, :k], charges[atoms[i, :k]])
            for i, k in enumerate(np.asarray(n).tolist())]


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) in nats, summed over the last dimension."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


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
        max_ring_size: None (no limit), or the most atoms a ring may have: with the valence masks on,
            no bond that closes a larger ring is decoded, and such a molecule scores -inf there (MOSES'
            data has no ring of 8 or more atoms, by construction).
        sample_batch_size: molecules decoded at once by ``sample``.
        conditions, condition_stats: property names (:data:`molgen.metrics.properties.CONDITIONS`)
            the decoder takes, and their training statistics (a conditional model).
    """

    name = "vae"
    likelihood_kind = "elbo"
    pretrained_datasets = ("qm9", "moses")

    def __init__(self, atom_types: Sequence[str] = ("C", "N", "O", "F"), max_atoms: int = 9,
                 latent_dim: int = 64, encoder_hidden: int = 128, encoder_layers: int = 4,
                 decoder_dim: int = 128, decoder_layers: int = 4, decoder_heads: int = 4,
                 decoder_mlp_ratio: int = 4, dropout: float = 0.0, beta: float = 1.0, kl_start_step: int = 0,
                 kl_warmup_steps: int = 2000, valence_masks_in_loss: bool = False,
                 max_ring_size: int | None = None, sample_batch_size: int = 1000, conditions: Sequence[str] = (),
                 condition_stats: dict | None = None) -> None:
        super().__init__()
        self.atom_types = tuple(atom_types)
        if not self.atom_types or len(set(self.atom_types)) != len(self.atom_types):
            raise ValueError(f"atom_types must be distinct tokens, got {list(self.atom_types)}")
        caps = [max_valence(t) for t in self.atom_types]
        self.max_atoms, self.latent_dim = int(max_atoms), int(latent_dim)
        self.beta, self.kl_start_step, self.kl_warmup_steps = float(beta), int(kl_start_step), int(kl_warmup_steps)
        self.valence_masks_in_loss = bool(valence_masks_in_loss)
        limit = check.ring_size_limit(max_ring_size)
        self.sample_batch_size = int(sample_batch_size)
        self.encoder = GraphEncoder(node_sizes=(len(self.atom_types), MAX_HS + 1, 2, 2), edge_sizes=(4, 2, 2),
                                    hidden=encoder_hidden, layers=encoder_layers, out_dim=2 * latent_dim)
        self.decoder = SequentialGraphDecoder(caps, self.max_atoms, latent_dim, decoder_dim, decoder_layers,
                                              decoder_heads, dropout, decoder_mlp_ratio, limit)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.conditions, self.condition_stats = tuple(conditions), dict(condition_stats or {})
        self.cond_encoder = (ConditionEncoder(self.conditions, self.condition_stats, decoder_dim)
                             if self.conditions else None)
        self.latent_head: LatentPropertyHead | None = None

    @property
    def max_ring_size(self) -> int | None:
        """The decoder's ring-size limit under the valence masks (None: none); settable, and kept in
        the config that :meth:`save_pretrained` writes."""
        return self.decoder.max_ring

    @max_ring_size.setter
    def max_ring_size(self, value: int | None) -> None:
        self.decoder.max_ring = check.ring_size_limit(value)
        if hasattr(self, "config"):
            self.config["max_ring_size"] = self.decoder.max_ring

    def __setattr__(self, name: str, value: object) -> None:
        if name == "latent_head":  # kept out of the state dict: the VAE's weights stay as they are
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def attach_latent_head(self, head: "LatentPropertyHead | None") -> None:
        """Condition through ``head`` (sampling p(z | y) in latent space); its properties become this
        model's ``conditions``. A checkpoint whose decoder takes conditions keeps those (ValueError)."""
        if self.cond_encoder is not None:
            raise ValueError("this vae conditions its decoder; a latent property head applies to unconditional VAEs")
        if head is not None and head.latent_dim != self.latent_dim:
            raise ValueError(f"the latent head takes {head.latent_dim}-dimensional z, this vae has {self.latent_dim}")
        self.latent_head = head
        self.conditions = head.names if head is not None else ()
        self.condition_stats = dict(head.stats) if head is not None else {}

    @classmethod
    def from_pretrained(cls, folder: "str | Path", device: "str | torch.device" = "cpu") -> "GraphVAE":
        """The checkpoint, with its latent property head where the folder has one (``latent_head.json``)
        and the decoder takes no conditions."""
        model = super().from_pretrained(folder, device)
        if model.cond_encoder is None:
            head = LatentPropertyHead.load(model.checkpoint_dir)
            if head is not None:
                model.attach_latent_head(head)
        return model

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
        cond = None
        if self.cond_encoder is not None and "cond" in batch:  # p(G | z, y), conditions dropped at random
            cond = self.cond_encoder(batch["cond"].to(z.device), batch["cond_mask"].to(z.device))
        nll = self.decoder.nll(z, batch["atoms"], batch["bonds"], batch["n_atoms"], self.valence_masks_in_loss,
                               cond)
        kl = gaussian_kl(mu, logvar)
        beta = self.kl_weight()
        if self.training:
            self.step += 1
        loss = (nll + beta * kl).mean()
        return loss, {"nll": float(nll.mean().detach()), "kl": float(kl.mean().detach()), "beta": beta,
                      "elbo": float(-(nll + kl).mean().detach())}

    # --- featurising user input --------------------------------------------------------------------
    def graphs(self, molecules: "str | Chem.Mol | Sequence[str | Chem.Mol] | SampleSet") -> GraphTable:
        """Featurise molecules (SMILES, Mols or a SampleSet) for this model; reasons for rejects in
        ``.reasons``."""
        from .table import GraphTable

        table = GraphTable(check.molecule_list(molecules), self.atom_types, self.max_atoms)
        table.ensure(np.arange(len(table)))
        return table

    def _batch_to(self, table: GraphArrays, rows: np.ndarray) -> dict[str, torch.Tensor]:
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
        seed = None if seed is None else check.seed(seed)
        mu, logvar = self.encode_posterior(molecules, batch_size)
        if sample:
            gen = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
            out = []
            for s in range(0, mu.shape[0], batch_size):  # the same draws as chunk by chunk
                m, lv = mu[s:s + batch_size], logvar[s:s + batch_size]
                out.append(m + torch.randn(m.shape, generator=gen, device=m.device) * (0.5 * lv).exp())
            mu = torch.cat(out)
        return mu

    def encode_posterior(self, molecules: "str | Chem.Mol | Sequence[str | Chem.Mol] | SampleSet",
                         batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | G) per molecule, each (B, latent_dim); ValueError naming the
        first molecule that cannot be parsed or represented."""
        items = check.molecule_list(molecules)
        if not items:
            raise ValueError("molecules is empty: nothing to encode")
        batch_size = check.positive_int("batch_size", batch_size)
        table = self.graphs(items)
        bad = np.flatnonzero(table.status != 1)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"cannot encode {_label(items[i])}: {table.reasons[i]}")
        return self._table_posterior(table, np.arange(len(items)), batch_size)

    def _table_posterior(self, table: GraphArrays, rows: np.ndarray, batch_size: int = 512
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        mus, logvars = [], []
        with evaluating(self):
            for chunk in self._chunks(rows, batch_size):
                mu, logvar = self.posterior(self._batch_to(table, chunk))
                mus.append(mu)
                logvars.append(logvar)
        return torch.cat(mus), torch.cat(logvars)

    def _decode_arrays(self, z: torch.Tensor, temperature: float, greedy: bool, constrained: bool,
                       seed: int | None, batch_size: int | None, prefix: "ScaffoldPrefix | None" = None,
                       cond: torch.Tensor | None = None, guidance: float = 1.0) -> Chunks:
        """The decoder's graphs of latents ``z``, as host arrays in chunks of ``batch_size``."""
        gen = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        size = batch_size or self.sample_batch_size
        out: Chunks = []
        with evaluating(self):
            for s in range(0, z.shape[0], size):
                zs = z[s:s + size].to(self.device)
                rows = None if cond is None else cond.to(self.device)[None].expand(zs.shape[0], -1)
                atoms, bonds, n, _ = self.decoder.generate(zs, temperature, greedy, constrained, gen, prefix,
                                                           rows, guidance)
                out.append((atoms.cpu().numpy(), bonds.cpu().numpy(), n.cpu().numpy()))
        return out

    def _decode_graphs(self, z: torch.Tensor, temperature: float, greedy: bool, constrained: bool,
                       seed: int | None, batch_size: int | None, prefix: "ScaffoldPrefix | None" = None,
                       cond: torch.Tensor | None = None, guidance: float = 1.0) -> list["Chem.Mol"]:
        return [m for chunk in self._decode_arrays(z, temperature, greedy, constrained, seed, batch_size, prefix,
                                                   cond, guidance) for m in graph_mols(self.atom_types, *chunk)]

    def _prior_chunks(self, z: torch.Tensor, base: int, size: int, temperature: float, greedy: bool,
                      constrained: bool, prefix: "ScaffoldPrefix | None" = None, cond: torch.Tensor | None = None,
                      guidance: float = 1.0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """What :meth:`sample` decodes from the latents ``z`` of a draw seeded ``base``: chunks of ``size``,
        each with its own seed."""
        for s in range(0, z.shape[0], size):
            yield from self._decode_arrays(z[s:s + size], temperature, greedy, constrained,
                                           (base * 1_000_003 + s) % check.SEED_LIMIT, size, prefix, cond, guidance)

    def sample_graphs(self, n: int, path: "str | Path", seed: int = 0, constrained: bool = True,
                      batch_size: int | None = None) -> None:
        """Write the graphs of ``sample(n, seed, constrained=constrained, batch_size=batch_size)`` (the
        same draws, unconditional) to ``path`` without building molecules (no RDKit:
        :func:`~molgen.models.vae.graphs.save_decoded`; :func:`graph_mols` turns them into Mols where RDKit is)."""
        n, seed = check.positive_int("n", n), check.seed(seed)
        size = check.positive_int("batch_size", batch_size) if batch_size is not None else self.sample_batch_size
        gen = torch.Generator(device=self.device).manual_seed(seed)
        z = torch.randn((n, self.latent_dim), generator=gen, device=self.device)
        save_decoded(Path(path), self.atom_types, self._prior_chunks(z, seed, size, 1.0, False, constrained))

    def reconstruct_graphs(self, table: GraphArrays, rows: np.ndarray, path: "str | Path") -> None:
        """Write the graphs that :meth:`reconstruct` decodes for accepted ``rows`` of a featurised table
        (greedily, from the posterior means) to ``path``, without RDKit."""
        mu, _ = self._table_posterior(table, np.asarray(rows, dtype=np.int64))
        save_decoded(Path(path), self.atom_types, self._decode_arrays(mu, 1.0, True, True, None, None))

    def decode(self, z: torch.Tensor, greedy: bool = True, temperature: float = 1.0, constrained: bool = True,
               seed: int | None = None, batch_size: int | None = None) -> SampleSet:
        """Molecules decoded from latents ``z`` (B, latent_dim, finite): greedy (most likely choice
        at each step) by default, else sampled at ``temperature``."""
        check.finite_latents(z, self.latent_dim)
        temperature = check.positive_float("temperature", temperature)
        seed = None if seed is None else check.seed(seed)
        batch_size = check.optional_positive_int("batch_size", batch_size)
        from ...samples import SampleSet

        mols = self._decode_graphs(z, temperature, greedy, constrained, seed, batch_size)
        return SampleSet.from_mols(mols, constrained=constrained, greedy=greedy)

    def reconstruct(self, molecules: "str | Chem.Mol | Sequence[str | Chem.Mol] | SampleSet") -> list[str | None]:
        """Canonical SMILES decoded greedily from the posterior mean of each molecule."""
        return self.decode(self.encode(molecules)).smiles

    def interpolate(self, a: "str | Chem.Mol", b: "str | Chem.Mol", steps: int = 8,
                    spherical: bool = False) -> list[str | None]:
        """Greedy decodings of ``steps`` evenly spaced points from z(a) to z(b), both included
        (posterior means; linear, or spherical-linear with ``spherical``)."""
        from rdkit import Chem

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
        from rdkit import Chem

        if not isinstance(molecule, (str, Chem.Mol)):
            raise ValueError(f"molecule must be one SMILES string or RDKit Mol, got {type(molecule).__name__}")
        z = self.encode(molecule)
        gen = torch.Generator(device=z.device).manual_seed(seed)
        eps = torch.randn((n, self.latent_dim), generator=gen, device=z.device)
        return self.decode(z + scale * eps).smiles

    # --- sampling and likelihood --------------------------------------------------------------------
    def sample(self, n: int, seed: int | None = 0, progress: bool = False, temperature: float = 1.0,
               batch_size: int | None = None, constrained: bool = True, greedy: bool = False,
               prior_scale: float = 1.0, scaffold: "str | Scaffold | None" = None,
               scaffold_method: str = "auto", condition: "dict[str, float] | None" = None,
               guidance: float = 1.0, candidates: int = 1) -> SampleSet:
        """``n`` molecules from z ~ N(0, prior_scale^2 I), decoded by sampling at ``temperature`` (or greedily).

        With ``constrained`` (default) the valence masks make every sample valid; ``prior_scale`` other
        than 1 draws z from a narrower or wider Gaussian than the prior (more typical or more unusual
        molecules). The SampleSet's ``info`` records the settings. With ``condition``
        (``{"logp": 2.5, "qed": 0.8}``, any subset of ``self.conditions``): on a checkpoint with a latent
        property head, z comes from p(z) p(y | z)^guidance by MALA (0: unconditional, 1: the posterior,
        > 1: sharper); on one whose decoder takes conditions, the decoder samples p(G | z, y) and
        ``guidance`` w > 1 sharpens it with classifier-free guidance (logits ``uncond + w * (cond -
        uncond)``; 1: plain conditional). Either way ``candidates`` K > 1 decodes K molecules per sample
        and keeps the one whose RDKit values lie closest to the request
        (:func:`~molgen.models.conditioning.closest_to_request`, as the AR model does). ``seed=None`` draws a fresh seed
        (recorded in ``info["seed"]``). The first k samples of a seed depend on ``n`` and the batch
        size: draw once and slice.

        With ``scaffold`` (a SMILES; ``*`` marks the only atoms that may grow) every sample holds it
        (:mod:`molgen.models.scaffold_sampling`): ``scaffold_method="auto"`` keeps the unconstrained
        samples that hold it (exact draws of the model's distribution given the scaffold) and past
        ``FILTER_BUDGET`` draws per sample decodes the rest starting from the scaffold's graph
        (:mod:`molgen.models.vae.scaffold`); "filter" / "decode": one stage only (filtered samples first).
        """
        n = check.positive_int("n", n)
        seed = check.seed_or_fresh(seed)
        temperature = check.positive_float("temperature", temperature)
        prior_scale = check.positive_float("prior_scale", prior_scale)
        guidance = check_guidance(guidance, condition)
        candidates = check_candidates(candidates, condition)
        if condition and not self.conditions:
            raise ValueError("this vae checkpoint was trained without conditions and has no latent property head; "
                             "fit one with benchmarks/studies/fit_latent_head.py or train a conditional one "
                             "with `molgen train --conditions logp,qed`")
        cond, request = None, None
        if self.cond_encoder is not None:  # the decoder takes the condition
            cond = self.condition_vector(condition)
        elif condition:  # the latent head: z from p(z) p(y | z)^guidance
            request = condition_tensors(condition, self.conditions, self.condition_stats, "vae")
            latent_gen = torch.Generator(device=self.device).manual_seed((seed + 1) % check.SEED_LIMIT)
            rates: list[float] = []
        size = check.positive_int("batch_size", batch_size) if batch_size is not None else self.sample_batch_size
        from ...samples import SampleSet
        from ..scaffold_sampling import check_method, sample_with_scaffold
        from .scaffold import ScaffoldPrefix

        scaffold_method = check_method(scaffold_method, scaffold)
        prefix = None if scaffold is None else ScaffoldPrefix.build(scaffold, self.atom_types, self.max_atoms)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        from tqdm import tqdm

        def draw(count: int, base: int, prefix: ScaffoldPrefix | None = None) -> list[Chem.Mol]:
            total = count * candidates
            z = prior_scale * torch.randn((total, self.latent_dim), generator=gen, device=self.device)
            if request is not None:
                z, rate = guided_latents(self.latent_head, z, *request, guidance, prior_scale, latent_gen)
                rates.append(rate)
            mols: list[Chem.Mol] = []
            for chunk in self._prior_chunks(z, base, size, temperature, greedy, constrained, prefix, cond, guidance):
                mols.extend(graph_mols(self.atom_types, *chunk))
                bar.update(len(chunk[2]) / candidates)
            if candidates == 1:
                return mols
            return [mols[i] for i in closest_to_request(mols, candidates, condition, self.condition_stats)]

        extra: dict[str, object] = {}
        with tqdm(total=n, disable=not progress, desc="sample vae", unit="mol") as bar:
            if prefix is None:
                mols = draw(n, seed)
            else:
                bases = [seed]  # the first draw decodes as without a scaffold; each later one with a fresh seed

                def draw_round(count: int, prefix: ScaffoldPrefix | None = None) -> tuple[list[Chem.Mol], None]:
                    base = bases.pop() if bases else int(torch.randint(0, 2 ** 62, (1,), generator=gen))
                    return draw(count, base, prefix), None

                mols, _, extra = sample_with_scaffold(n, prefix.scaffold, scaffold_method, draw_round,
                                                      lambda k: draw_round(k, prefix))
        if cond is not None:
            extra.update(condition=dict(condition or {}), guidance=guidance, candidates=candidates)
        if request is not None:
            extra.update(condition=dict(condition), guidance=guidance, conditioned_by="latent head",
                         latent_steps=self.latent_head.steps if guidance else 0, candidates=candidates,
                         latent_acceptance=float(np.mean(rates)) if rates else None)
        if self.max_ring_size is not None and constrained:
            extra.update(max_ring_size=self.max_ring_size)
        return SampleSet.from_mols(mols, model="vae", constrained=constrained, temperature=temperature,
                                   greedy=greedy, seed=seed, prior_scale=prior_scale, **extra)

    def condition_vector(self, condition: "dict[str, float] | None") -> torch.Tensor | None:
        """The decoder's condition embedding (decoder_dim,) for a request such as ``{"logp": 2.5}``
        (checked by :func:`molgen.models.conditioning.condition_tensors`), or None for none."""
        return condition_embedding(self.cond_encoder, condition, self.conditions, self.condition_stats, "vae",
                                   self.device)

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
        out[rows] = self.table_log_likelihood(table, rows, samples, importance_weighted, constrained, seed,
                                              batch_size)
        reasons = [table.reasons.get(i) for i in range(len(items))]
        if return_reasons:
            return out, reasons
        bad = [(i, r) for i, r in enumerate(reasons) if r is not None]
        if bad:
            shown = "; ".join(f"{_label(items[i])}: {r}" for i, r in bad[:3])
            warnings.warn(f"log_likelihood is NaN for {len(bad)} of {len(items)} molecules ({shown})",
                          stacklevel=2)
        return out

    def table_log_likelihood(self, table: GraphArrays, rows: np.ndarray, samples: int = 1,
                             importance_weighted: bool = False, constrained: bool = True, seed: int = 0,
                             batch_size: int = 256) -> np.ndarray:
        """:meth:`log_likelihood` (float64 nats) of accepted ``rows`` of a featurised table, no RDKit needed."""
        out = np.empty(len(rows))
        gen = torch.Generator(device=self.device).manual_seed(seed)
        with evaluating(self):
            for start in range(0, len(rows), batch_size):
                chunk = np.asarray(rows[start:start + batch_size])
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
                out[start:start + len(chunk)] = value.double().cpu().numpy()
        return out


def _label(x: "str | Chem.Mol | None") -> str:
    if isinstance(x, str):
        return repr(x)
    from rdkit import Chem

    if isinstance(x, Chem.Mol):
        return "a Mol"
    if x is None:
        return "None (an invalid sample?)"
    return repr(x)
