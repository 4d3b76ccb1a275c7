"""E(3)-equivariant diffusion model (EDM, Hoogeboom et al. 2022) over 3D coordinates and atom types.

Coordinates x live in the zero-centre-of-mass subspace; atom types are one-hot vectors h (scaled by
1/4) plus the atomic number as an integer feature (scaled by 1/10), EDM's normalisation [1, 4, 10].
The network predicts the noise eps on (x, h) jointly. Training uses EDM's ``l2`` objective: the
unweighted squared noise error, divided by the number of dimensions per molecule, at t drawn
uniformly from {0, ..., T}. ``log_likelihood`` is the full variational bound on -log p(x, h, N) in
nats per molecule (EDM's ``vlb``: diffusion terms with SNR weighting, the prior KL, the
discretised decoder at t = 0, and -log p(N) from the training histogram).

Conditions p(x | y) (EDM's conditional generation on QM9's DFT properties): a model built with
``conditions`` (any of alpha, gap, homo, lumo, mu, Cv, with ``condition_stats`` from the training
half) embeds the requested values with :class:`~molgen.models.conditioning.ConditionEncoder` (one small
MLP per property of its standardised value, summed; an absent property contributes nothing) and
appends that invariant vector (``condition_dim`` features) to every atom's input features, as EDM
appends its normalised context; coordinates never see it, so the network stays E(3)-equivariant.
Training drops conditions at random (condition dropout, :mod:`molgen.training.conditions`), so one
model takes any subset of its conditions, or none; sampling mixes the two noise predictions by
classifier-free guidance, ``eps_uncond + w (eps_cond - eps_uncond)``. The embedding's last layers
start at zero, so a fresh conditional model samples exactly as with no condition.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..._alloc import keep_large_blocks
from ...chem.elements import ATOMIC_NUMBERS
from ...diffusion.schedule import NoiseSchedule
from ...diffusion.inpainting import KnownFn, sample_with_known
from ...diffusion.schedulers import SCHEDULERS, Scheduler, get_scheduler
from ...nn.precision import autocast_dtype, network_autocast
from ..base import GenerativeModel, evaluating, make_generator, register
from ..conditioning import ConditionEncoder, check_guidance, condition_tensors
from . import vlb
from .records import as_records, atom_counts, collate, count_generator, unscorable

QM9_TYPES = ("H", "C", "N", "O", "F")
#: ``constraint(rows, mask) -> (z_start | None, known | None)`` for one batch of :meth:`EDM.run_chains`
Constraint = Callable[[list[int], torch.Tensor], tuple["torch.Tensor | None", "KnownFn | None"]]
PARAMETERIZATIONS = ("eps", "x0")
LOSS_WEIGHTINGS = ("l2", "min_snr", "snr_clamp")


def remove_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Subtract the centre of mass of the real atoms; x (B, N, 3), mask (B, N, 1)."""
    n = mask.sum(1, keepdim=True).clamp(min=1)
    return (x - (x * mask).sum(1, keepdim=True) / n) * mask


@register
class EDM(GenerativeModel):
    """EDM with an EGNN (default) or e3nn backbone. See the module docstring for the objective."""

    name = "edm"
    likelihood_kind = "vlb"
    pretrained_datasets = ("qm9",)
    #: settings that change how the model trains or samples but not what the weights compute: a
    #: resumed run may change them (``python -m molgen.train --resume DIR --config``)
    training_only_config = ("loss_weighting", "time_beta", "default_sampling_steps", "sampler")

    def __init__(self, atom_types: Sequence[str] = QM9_TYPES, include_charges: bool = True,
                 backbone: str = "egnn", hidden: int = 256, n_layers: int = 9, attention: bool = True,
                 tanh: bool = True, coords_range: float = 15.0, normalization_factor: float = 1.0,
                 e3nn_vectors: int = 16, e3nn_lmax: int = 2,
                 schedule: str = "polynomial_2", timesteps: int = 1000, precision: float = 1e-5,
                 norm_values: Sequence[float] = (1.0, 4.0, 10.0),
                 atom_count_hist: Sequence[float] | None = None, default_sampling_steps: int = 100,
                 sampler: str = "ancestral", parameterization: str = "eps", loss_weighting: str = "l2",
                 time_beta: Sequence[float] | None = None, self_conditioning: bool = False,
                 conditions: Sequence[str] = (), condition_stats: dict | None = None,
                 condition_dim: int = 16) -> None:
        super().__init__()
        self.atom_types = tuple(atom_types)
        unknown = [a for a in self.atom_types if a not in ATOMIC_NUMBERS]
        if unknown:
            raise ValueError(f"unsupported atom types {unknown}; supported: {sorted(ATOMIC_NUMBERS)}")
        self.k = len(self.atom_types)
        self.include_charges = include_charges
        self.h_dim = self.k + int(include_charges)
        self.norm_values = tuple(float(v) for v in norm_values)
        self.register_buffer("type_z", torch.tensor([ATOMIC_NUMBERS[a] for a in self.atom_types]), persistent=False)
        hist = np.asarray(atom_count_hist if atom_count_hist is not None else [0.0] * 29 + [1.0], dtype=np.float64)
        if hist.sum() <= 0:
            raise ValueError("atom_count_hist must have positive mass")
        self.register_buffer("n_atoms_probs", torch.tensor(hist / hist.sum(), dtype=torch.float32), persistent=False)
        self.schedule = NoiseSchedule(schedule, timesteps, precision)
        self.default_sampling_steps = default_sampling_steps
        if sampler not in SCHEDULERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SCHEDULERS)}")
        self.sampler_kind = sampler  # the default scheduler's name
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization {parameterization!r}; choose from {', '.join(PARAMETERIZATIONS)}")
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"unknown loss_weighting {loss_weighting!r}; choose from {', '.join(LOSS_WEIGHTINGS)}")
        if time_beta is not None and (len(time_beta) != 2 or not all(math.isfinite(v) and v > 0 for v in time_beta)):
            raise ValueError(f"time_beta must be two positive numbers (a, b) of a Beta(a, b), got {time_beta!r}")
        if self_conditioning and backbone != "egnn":
            raise ValueError("self_conditioning is implemented for the egnn backbone only")
        self.parameterization, self.loss_weighting = parameterization, loss_weighting
        self.time_beta = tuple(float(v) for v in time_beta) if time_beta is not None else None
        self.self_conditioning = bool(self_conditioning)
        in_dim, out_dim = self.h_dim + 1, self.h_dim  # + time
        if self.self_conditioning:
            in_dim += self.h_dim  # the previous estimate of the clean h
        # conditions p(x | y): an invariant embedding appended to every atom's features (zero at init)
        self.conditions = tuple(conditions)
        self.condition_stats = dict(condition_stats or {})
        self.cond_encoder = None
        if self.conditions:
            if condition_dim < 1:
                raise ValueError(f"condition_dim must be a positive integer, got {condition_dim!r}")
            self.cond_encoder = ConditionEncoder(self.conditions, self.condition_stats, condition_dim)
            self.condition_dim = int(condition_dim)
            in_dim += self.condition_dim
        if backbone == "egnn":
            from ...nn.egnn import EGNN

            self.net = EGNN(in_dim, out_dim, hidden=hidden, n_layers=n_layers, attention=attention, tanh=tanh,
                            coords_range=coords_range, normalization_factor=normalization_factor,
                            pair_extra_dim=int(self.self_conditioning))
        elif backbone == "e3nn":
            from ...nn.e3nn_backbone import E3nnBackbone

            self.net = E3nnBackbone(in_dim, out_dim, hidden=hidden, vectors=e3nn_vectors, n_layers=n_layers,
                                    lmax=e3nn_lmax, normalization_factor=normalization_factor)
        else:
            raise ValueError(f"unknown backbone {backbone!r}; choose 'egnn' or 'e3nn'")

    @property
    def max_atoms(self) -> int:
        return int(self.n_atoms_probs.numel() - 1)

    # --- features --------------------------------------------------------------------------------
    def encode_types(self, types: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalised h from type indices (B, N) and mask (B, N, 1)."""
        onehot = nn.functional.one_hot(types.clamp(min=0), self.k).float() / self.norm_values[1]
        parts = [onehot]
        if self.include_charges:
            parts.append(self.type_z[types.clamp(min=0)].float().unsqueeze(-1) / self.norm_values[2])
        return torch.cat(parts, dim=-1) * mask

    def context(self, values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """The condition embedding (B, condition_dim) of property values (B, K) in the training units,
        ``present`` (B, K) marking the requested ones (the others are ignored)."""
        if self.cond_encoder is None:
            raise ValueError("this edm checkpoint was trained without conditions")
        return self.cond_encoder(values.to(self.device), present.to(self.device))

    def batch_context(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The embedding of a batch's ``cond`` / ``cond_mask`` (None: unconditional)."""
        if self.cond_encoder is None or "cond" not in batch:
            return None
        return self.context(batch["cond"], batch["cond_mask"])

    def predict(self, z: torch.Tensor, t: torch.Tensor, mask: torch.Tensor,
                self_cond: torch.Tensor | None = None, context: torch.Tensor | None = None,
                autocast: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One network pass on z = [x, h] (B, N, 3 + h_dim) at normalised times t (B,): the predicted
        noise and the predicted clean state, each (B, N, 3 + h_dim). With ``self_conditioning`` the
        network also sees ``self_cond``, an earlier estimate of the clean state (zeros when None). A
        conditional model sees ``context`` (B, condition_dim, from :meth:`context`; None: no condition).
        ``autocast`` (e.g. ``torch.bfloat16``): the network alone runs under autocast to that dtype and
        its outputs come back in z's dtype, so that everything around it stays in z's precision."""
        x, h = z[..., :3], z[..., 3:]
        feats = [h, t.view(-1, 1, 1).expand(-1, h.shape[1], 1).to(h.dtype)]
        pair_extra = None
        if self.self_conditioning:
            sc = torch.zeros_like(z) if self_cond is None else self_cond.to(z.dtype)
            feats.append(sc[..., 3:])
            xs = sc[..., :3]
            pair_extra = ((xs[:, :, None, :] - xs[:, None, :, :]) ** 2).sum(-1, keepdim=True)
        if self.cond_encoder is not None:
            ctx = h.new_zeros(h.shape[0], self.condition_dim) if context is None else context.to(h.dtype)
            feats.append(ctx[:, None, :].expand(-1, h.shape[1], -1))
        h_in = torch.cat(feats, dim=-1) * mask
        with network_autocast(autocast, z.device.type):
            h_out, x_out = self.net(h_in, x, mask) if pair_extra is None else self.net(h_in, x, mask, pair_extra)
        if autocast is not None:
            h_out, x_out = h_out.to(z.dtype), x_out.to(z.dtype)
        g = self.schedule.gamma(t).view(-1, 1, 1)
        a, s = NoiseSchedule.alpha(g).to(z.dtype), NoiseSchedule.sigma(g).to(z.dtype)
        if self.parameterization == "eps":
            vel = remove_mean((x_out - x) * mask, mask)
            eps = torch.nan_to_num(torch.cat([vel, h_out], dim=-1) * mask)  # guard against rare early blow-ups
            clean = (z - s * eps) / a * mask
        else:  # "x0": the network's output coordinates and features are the clean state
            clean = torch.nan_to_num(torch.cat([remove_mean(x_out * mask, mask), h_out], dim=-1) * mask)
            z_centred = torch.cat([remove_mean(x * mask, mask), h], dim=-1)  # z_t lives in the zero-CoM space
            eps = (z_centred - a * clean) / s * mask
        return eps, clean

    def dynamics(self, z: torch.Tensor, t: torch.Tensor, mask: torch.Tensor,
                 context: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise for z = [x, h] (B, N, 3 + h_dim) at normalised times t (B,) (``context``: a
        conditional model's condition embedding). With self-conditioning this is the two-pass denoiser
        (a first pass without an estimate, then one conditioned on it), a fixed function of z_t, so the
        variational bound stays exact for it."""
        if not self.self_conditioning:
            return self.predict(z, t, mask, context=context)[0]
        _, first = self.predict(z, t, mask, context=context)
        return self.predict(z, t, mask, first, context)[0]

    def noise_like(self, z: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal noise shaped like z on the real atoms, its coordinates at zero centre of mass."""
        eps = torch.randn(z.shape, dtype=z.dtype, device=z.device, generator=generator) * mask
        return torch.cat([remove_mean(eps[..., :3], mask), eps[..., 3:]], dim=-1)

    def clean_state(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The (B, N, 1) atom mask and the noise-free state: centred coordinates and encoded types."""
        mask = batch["mask"].unsqueeze(-1).float()
        x = remove_mean(batch["pos"].float(), mask)
        return mask, torch.cat([x, self.encode_types(batch["types"], mask)], dim=-1)

    # --- training --------------------------------------------------------------------------------
    def sample_times(self, b: int, device: torch.device) -> torch.Tensor:
        """Training times t in [0, 1]: uniform over the T + 1 steps (EDM), or Beta(a, b) distributed
        (``time_beta``; a < b puts more weight on low noise, as SemlaFlow's Beta(2, 1) in flow time)."""
        T = self.schedule.timesteps
        if self.time_beta is None:
            return torch.randint(0, T + 1, (b,), device=device).float() / T
        a, bb = self.time_beta
        u = torch.distributions.Beta(torch.tensor(a, device=device), torch.tensor(bb, device=device)).sample((b,))
        return torch.round(u * T) / T

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-molecule weight of the noise error ||eps - eps_hat||^2 (B,). The clean-state error is
        ||x - x_hat||^2 = ||eps - eps_hat||^2 / SNR, so a weight w(SNR) on the clean-state error is
        w(SNR) / SNR here. ``l2``: 1 (EDM); ``min_snr``: min(SNR, 5) / SNR (Hang et al. 2023);
        ``snr_clamp``: clamp(SNR, 0.05, 1.5) / SNR (EQGAT-diff's clean-state weighting)."""
        if self.loss_weighting == "l2":
            return torch.ones_like(t)
        snr = NoiseSchedule.snr(self.schedule.gamma(t)).float()
        if self.loss_weighting == "min_snr":
            return snr.clamp(max=5.0) / snr
        return snr.clamp(0.05, 1.5) / snr

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mask, xh = self.clean_state(batch)
        b = xh.shape[0]
        t = self.sample_times(b, xh.device)
        eps = self.noise_like(xh, mask)
        z = self.schedule.add_noise(xh, eps, t)
        self_cond = None
        context = self.batch_context(batch)  # condition dropout is in the batch's cond_mask
        if self.self_conditioning:  # half of the molecules see the model's own first estimate (JODO)
            with torch.no_grad():
                _, first = self.predict(z, t, mask, context=context)
            keep = (torch.rand(b, 1, 1, device=xh.device) < 0.5).to(first.dtype)
            self_cond = first.detach() * keep
        pred, clean = self.predict(z, t, mask, self_cond, context)
        n = mask.sum((1, 2))
        dims = (3 + self.h_dim) * n
        w = self.loss_weight(t)
        if self.parameterization == "eps":
            err = ((pred.float() - eps) ** 2).sum((1, 2)) / dims
            loss = (w * err).mean()
            ex = ((pred[..., :3].float() - eps[..., :3]) ** 2).sum((1, 2)) / (3 * n)
        else:  # weight the clean-state error by w * SNR (the same objective, better conditioned)
            snr = NoiseSchedule.snr(self.schedule.gamma(t)).float()
            err = ((clean.float() - xh) ** 2).sum((1, 2)) / dims
            loss = (w * snr * err).mean()
            ex = ((clean[..., :3].float() - xh[..., :3]) ** 2).sum((1, 2)) / (3 * n)
        return loss, {"loss_x": ex.mean().detach()}

    # --- likelihood ------------------------------------------------------------------------------
    def nll_terms(self, batch: dict[str, torch.Tensor], n_t: int = 1,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-molecule terms of the variational bound in nats (see :func:`molgen.models.edm.vlb.nll_terms`)."""
        return vlb.nll_terms(self, batch, n_t=n_t, generator=generator)

    @torch.no_grad()
    def log_likelihood(self, molecules: Any, n_t: int = 8, batch_size: int = 128, seed: int = 0,
                       return_reasons: bool = False, condition: "dict[str, float] | None" = None,
                       ) -> "np.ndarray | tuple[np.ndarray, list[str | None]]":
        """Variational lower bound on log p(x, h, N) per molecule, in nats (EDM reports its negative,
        -110.7 on QM9 test). ``molecules``: a SampleSet, RDKit Mols with 3D conformers, or a list of
        (atomic_numbers, positions in Angstrom). Molecules without coordinates, with atoms outside the
        vocabulary or too many atoms give NaN; ``return_reasons`` also returns why (None where scored).

        With ``condition`` (a conditional model; e.g. ``{"alpha": 80}``, the same for every molecule)
        it is the same exact bound for the conditional model: on log p(x, h | N, y) + log p(N), p(N)
        being the training histogram of atom counts (the sampler draws N from it, then x, h given N and
        y). Guidance does not enter: the bound is that of the plain conditional model (w = 1)."""
        records = as_records(molecules)
        if n_t < 1 or batch_size < 1:
            raise ValueError(f"n_t and batch_size must be positive, got n_t={n_t}, batch_size={batch_size}")
        req = self._request(condition)
        out = np.full(len(records), np.nan)
        reasons = [unscorable(r, self._z_to_type(), self.max_atoms, self.atom_types) for r in records]
        ok = [i for i, why in enumerate(reasons) if why is None]
        gen = make_generator(seed, self.device)
        with evaluating(self):
            for start in range(0, len(ok), batch_size):
                idx = ok[start:start + batch_size]
                batch = collate([records[i] for i in idx], self._z_to_type(), self.device)
                if req is not None:
                    batch["cond"], batch["cond_mask"] = (r.expand(len(idx), -1) for r in req)
                out[idx] = vlb.log_likelihood_bound(self.nll_terms(batch, n_t=n_t, generator=gen)).cpu().numpy()
        return (out, reasons) if return_reasons else out

    def _request(self, condition: "dict[str, float] | None") -> "tuple[torch.Tensor, torch.Tensor] | None":
        """(values (K,), present (K,)) of a request such as ``{"alpha": 80}`` (checked by
        :func:`~molgen.models.conditioning.condition_tensors`), or None for none."""
        if condition and not self.conditions:
            raise ValueError("this edm checkpoint was trained without conditions; train a conditional one with "
                             "`molgen train --model edm --conditions alpha,gap,homo,lumo,mu,Cv`")
        return condition_tensors(condition, self.conditions, self.condition_stats, "edm")

    def _z_to_type(self) -> dict[int, int]:
        return {int(z): i for i, z in enumerate(self.type_z.tolist())}

    # --- sampling --------------------------------------------------------------------------------
    def _atom_counts(self, n: int, n_atoms: int | Sequence[int] | None,
                     generator: torch.Generator | None) -> torch.Tensor:
        return atom_counts(self.n_atoms_probs, n, n_atoms, generator)

    @torch.no_grad()
    def sample_arrays(self, n: int, steps: int | None = None, n_atoms: int | Sequence[int] | None = None,
                      seed: int | None = 0, batch_size: int | None = None, progress: bool = False,
                      scheduler: str | Scheduler | None = None, generator: torch.Generator | None = None,
                      condition_rows: "tuple[torch.Tensor, torch.Tensor] | None" = None, guidance: float = 1.0,
                      precision: str = "fp32") -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Sample atom types (atomic numbers) and coordinates (Angstrom) for n molecules.

        ``precision``: ``"fp32"`` (default) or ``"bf16"``: the network under bfloat16 autocast (CUDA, or a
        CPU with bfloat16 instructions, where a network pass at batch 64 takes 0.23 s instead of 0.41 s
        on one thread, benchmarks/results/bench_edm_throughput_cpu.txt; refused on other CPUs), the
        chain's arithmetic (noise levels, updates, centring, the decoded positions) in float32.

        ``condition_rows``: a conditional model's request per molecule, (values (n, K), present (n, K))
        in the order of :attr:`conditions` and their training units (unchecked: :meth:`sample` checks a
        request), with classifier-free ``guidance`` w (1: the conditional model, 0: unconditional).

        ``scheduler``: ``"ancestral"`` (the config's default), ``"ddim"``, or a
        :class:`~molgen.diffusion.schedulers.Scheduler` (which brings its own steps). Randomness comes
        from ``generator`` if given, else from a generator seeded with ``seed`` (None: unseeded); the
        global RNG is not touched. Molecules are sorted by size and sampled in batches of ``batch_size``
        (default 32 on a CPU, where small size-sorted batches waste the least padding, and 1024 on a GPU)."""
        batch_size = self._batch_size(batch_size)
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        dev = self.device
        autocast_dtype(precision, dev)  # checked before anything is drawn
        gen = generator if generator is not None else make_generator(seed, dev)
        counts = self._atom_counts(n, n_atoms, count_generator(gen, seed))
        steps = self.default_sampling_steps if steps is None else steps
        chain = get_scheduler(scheduler or self.sampler_kind, self.schedule, steps)
        if condition_rows is not None:
            if self.cond_encoder is None:
                raise ValueError("this edm checkpoint was trained without conditions")
            if any(tuple(r.shape) != (n, len(self.conditions)) for r in condition_rows):
                raise ValueError(f"condition_rows must be two ({n}, {len(self.conditions)}) tensors")
        return self.run_chains(counts, chain, gen, batch_size, progress, condition_rows=condition_rows,
                               guidance=guidance, precision=precision)

    def _batch_size(self, batch_size: int | None) -> int:
        if batch_size is None:
            return 32 if self.device.type == "cpu" else 1024
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        return batch_size

    @torch.no_grad()
    def run_chains(self, counts: torch.Tensor, chain: Scheduler, gen: torch.Generator | None, batch_size: int,
                 progress: bool = False, constraint: Constraint | None = None, resamplings: int = 1,
                 condition_rows: "tuple[torch.Tensor, torch.Tensor] | None" = None, guidance: float = 1.0,
                 precision: str = "fp32") -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Run ``chain`` for molecules of ``counts`` atoms, in size-sorted batches; returns atomic numbers
        and zero-CoM coordinates (Angstrom) in the order of ``counts``. ``constraint(rows, mask)`` may
        give a batch its starting state and a known part (``(z_start | None, known | None)``, see
        :func:`molgen.diffusion.inpainting.sample_with_known`); ``rows`` are the molecules' indices.
        ``condition_rows`` / ``guidance`` / ``precision``: see :meth:`sample_arrays`."""
        dev = self.device
        net_dtype = autocast_dtype(precision, dev)
        if dev.type == "cpu":
            keep_large_blocks()  # pair tensors reused from the heap, not mapped afresh each step (molgen._alloc)
        n = len(counts)
        order = torch.argsort(counts, stable=True)  # size-sorted batches are padded the least
        zs: list[np.ndarray | None] = [None] * n
        xs: list[np.ndarray | None] = [None] * n
        n_batches = math.ceil(n / batch_size)
        with evaluating(self):
            for bi in range(n_batches):
                sel = order[bi * batch_size:(bi + 1) * batch_size]
                c = counts[sel].to(dev)
                nmax = int(c.max())
                mask = (torch.arange(nmax, device=dev)[None, :] < c[:, None]).unsqueeze(-1).float()
                z_start, known = constraint(sel.tolist(), mask) if constraint is not None else (None, None)
                z = self.noise_like(torch.zeros(len(c), nmax, 3 + self.h_dim, device=dev), mask, gen) \
                    if z_start is None else z_start
                ctx = None if condition_rows is None else self.context(*(r[sel] for r in condition_rows))
                denoise = self._chain_denoiser(mask, ctx, guidance, net_dtype)
                desc = f"edm batch {bi + 1}/{n_batches}"
                if known is None:
                    z = chain.sample(denoise, z, lambda zz: self.noise_like(zz, mask, gen), progress=progress,
                                     desc=desc)
                else:
                    z = sample_with_known(chain, denoise, z, lambda zz: self.noise_like(zz, mask, gen), known,
                                          resamplings=resamplings, progress=progress, desc=desc)
                # decode z_0 -> x, h (EDM: x from the predicted clean signal, h by argmax of z_0)
                t0 = torch.zeros(len(c), device=dev)
                g0 = self.schedule.gamma(t0).view(-1, 1, 1)
                eps = denoise(z, t0)
                x0 = (z - NoiseSchedule.sigma(g0) * eps) / NoiseSchedule.alpha(g0)
                x = remove_mean(x0[..., :3], mask)
                types = z[..., 3:3 + self.k].argmax(-1)
                for i, j in enumerate(sel.tolist()):
                    k = int(c[i])
                    zs[j] = self.type_z[types[i, :k]].cpu().numpy()
                    xs[j] = x[i, :k].cpu().double().numpy()
        return zs, xs

    def _chain_denoiser(self, mask: torch.Tensor, context: torch.Tensor | None = None, guidance: float = 1.0,
                        autocast: torch.dtype | None = None):
        """The noise predictor used along one reverse chain (the network under ``autocast``, see
        :meth:`predict`). With self-conditioning it feeds each
        step the clean-state estimate of the step before (the first step gets zeros), as in
        Chen et al. (2023) and JODO. With a ``context`` and ``guidance`` w other than 1 it is
        classifier-free guidance, ``eps_uncond + w (eps_cond - eps_uncond)``: two passes per step (each
        branch keeps its own self-conditioning estimate), kept apart rather than batched together so
        that each is exactly the pass it would be alone."""
        def branch(ctx: torch.Tensor | None):
            if not self.self_conditioning:
                return lambda zz, tt: self.predict(zz, tt, mask, context=ctx, autocast=autocast)[0]
            last: list[torch.Tensor | None] = [None]

            def denoise(zz: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
                eps, clean = self.predict(zz, tt, mask, last[0], ctx, autocast)
                last[0] = clean
                return eps

            return denoise

        if context is None or guidance == 1.0:
            return branch(context)
        if guidance == 0.0:
            return branch(None)
        cond, uncond = branch(context), branch(None)

        def guided(zz: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
            eps_u = uncond(zz, tt)
            return eps_u + guidance * (cond(zz, tt) - eps_u)

        return guided

    def sample(self, n: int, seed: int | None = 0, steps: int | None = None,
               n_atoms: int | Sequence[int] | None = None, batch_size: int | None = None, progress: bool = False,
               scheduler: str | Scheduler | None = None, generator: torch.Generator | None = None,
               fixed: Any = None, resamplings: int = 1, condition: "dict[str, float] | None" = None,
               guidance: float = 1.0, precision: str = "fp32"):
        """Sample n molecules; returns a :class:`molgen.samples.SampleSet` (3D, Angstrom).

        ``condition`` (a checkpoint trained with conditions, e.g. ``{"alpha": 80}`` or
        ``{"gap": 6500, "mu": 2.5}``, any subset of :attr:`conditions`, in EDM's units: alpha Bohr^3,
        gap / homo / lumo meV, mu D, Cv cal/(mol K)): samples of p(x | y), sharpened by classifier-free
        ``guidance`` w > 1 (1: the conditional model; 0: unconditional). Atom counts still come from the
        training histogram unless ``n_atoms`` is given (alpha and Cv grow with the size: give ``n_atoms``
        to ask for both). A value outside the training range warns; an unknown name lists the choices.

        ``scheduler``: ``"ancestral"`` (default), ``"ddim"`` (deterministic given z_T) or a scheduler
        object; ``generator`` (a ``torch.Generator`` on the model's device) replaces ``seed``.
        ``fixed``: atoms every molecule must contain where they are (an RDKit Mol with a conformer, or an
        (atomic numbers, positions) pair), the rest generated around them by RePaint with ``resamplings``
        passes per step (see :mod:`molgen.models.edm.constrained`); they are the first atoms of each sample.
        ``n_atoms`` is then the total size. The first n samples of a seed depend on n: sizes are drawn
        for all n at once and molecules are batched by size. ``precision``: ``"fp32"`` (default) or
        ``"bf16"``, the network under bfloat16 autocast (see :meth:`sample_arrays`)."""
        guidance = check_guidance(guidance, condition)
        req = self._request(condition)
        if req is not None and fixed is not None:
            raise ValueError("condition and fixed atoms cannot be combined yet")
        if fixed is not None:
            from .constrained import inpaint

            if generator is not None:
                raise ValueError("give seed, not generator, with fixed atoms")
            records = as_records(fixed)
            if len(records) != 1 or records[0] is None:
                raise ValueError("fixed must be one molecule with 3D coordinates (a Mol with a conformer, or an "
                                 "(atomic_numbers, positions) pair)")
            zs, xs = inpaint(self, [records[0]] * n, n_atoms=n_atoms, seed=seed, steps=steps, scheduler=scheduler,
                             resamplings=resamplings, batch_size=batch_size, progress=progress, precision=precision)
        else:
            rows = None if req is None else tuple(r[None].expand(max(n, 0), -1) for r in req)
            zs, xs = self.sample_arrays(n, steps=steps, n_atoms=n_atoms, seed=seed, batch_size=batch_size,
                                        progress=progress, scheduler=scheduler, generator=generator,
                                        condition_rows=rows, guidance=guidance, precision=precision)
        chain = get_scheduler(scheduler or self.sampler_kind, self.schedule,
                              self.default_sampling_steps if steps is None else steps)
        extra = {"fixed_atoms": len(records[0][0]), "resamplings": resamplings} if fixed is not None else {}
        if req is not None:
            extra.update(condition=dict(condition), guidance=guidance)
        if precision != "fp32":
            extra["precision"] = precision
        return self._sample_set(zs, xs, steps=chain.steps, seed=None if generator is not None else seed, **extra)

    def refine(self, molecules: Any, strength: float = 0.2, seed: int | None = 0, steps: int | None = None,
               scheduler: str | Scheduler | None = None, batch_size: int | None = None, progress: bool = False,
               precision: str = "fp32"):
        """SDEdit-style refinement: each molecule's coordinates noised to ``strength`` (a fraction of the
        chain, 0 to 1) and denoised back, its elements kept; a SampleSet in the inputs' order and frame.
        ``molecules``: what :meth:`log_likelihood` takes; one that cannot be read is a ValueError.
        ``precision``: as in :meth:`sample_arrays`."""
        from .constrained import refine

        records = as_records(molecules)
        bad = [i for i, r in enumerate(records) if r is None]
        if bad:
            raise ValueError(f"molecule {bad[0]} has no 3D coordinates to refine")
        zs, xs = refine(self, records, strength, seed=seed, steps=steps, scheduler=scheduler,
                        batch_size=batch_size, progress=progress, precision=precision)
        extra = {"precision": precision} if precision != "fp32" else {}
        return self._sample_set(zs, xs, seed=seed, strength=float(strength), **extra)

    def _sample_set(self, zs: list[np.ndarray], xs: list[np.ndarray], **info: Any):
        from ...chem.geometry import bond_orders, stability
        from ...samples import SampleSet

        stab = [stability(z, bond_orders(z, x)) for z, x in zip(zs, xs)]
        return SampleSet.from_3d(zs, xs, model=self.name, **info,
                                 atom_stability=sum(s.n_stable for s in stab) / max(sum(s.n_atoms for s in stab), 1),
                                 molecule_stability=sum(s.molecule_stable for s in stab) / len(stab))
