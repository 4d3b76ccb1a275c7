"""EDM with a known part: 3D inpainting around fixed atoms, and SDEdit-style refinement of given geometries.

**Inpainting** (:func:`inpaint`) uses RePaint (Lugmayr et al. 2022) on the unconditional model: after every
reverse step the fixed atoms' coordinates and types are replaced by the given ones noised to that step's
level. EDM's coordinates live in the zero-centre-of-mass subspace of the whole molecule, whose centre is not
known in advance; so the fixed fragment is inserted where the current sample has it (its noised internal
geometry, translated onto the centroid of the sample's fixed atoms), and the whole state is centred again.
At the end the molecule is translated so that the fixed atoms' centroid is the given one (the file's own
frame), and the fixed atoms are set exactly to the given elements and coordinates.

**Refinement** (:func:`refine`) noises the given coordinates to level ``strength`` (t = strength x T) and runs
the reverse chain back to 0 with every atom's type known (inserted at each step, as above): the geometry
moves towards what the model finds likely, elements and atom count stay. The result is put back at the
input's centroid.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ...diffusion.schedule import NoiseSchedule
from ...diffusion.schedulers import Scheduler, get_scheduler
from ..base import make_generator
from .model import remove_mean
from .records import Record, count_generator

if TYPE_CHECKING:
    from .model import EDM


def _type_indices(model: "EDM", atomic_numbers: np.ndarray, what: str) -> torch.Tensor:
    lookup = {int(z): i for i, z in enumerate(model.type_z.tolist())}
    missing = sorted({int(z) for z in atomic_numbers} - set(lookup))
    if missing:
        raise ValueError(f"{what} has elements this model does not know (atomic numbers {missing}); "
                         f"it knows {', '.join(model.atom_types)}")
    return torch.tensor([lookup[int(z)] for z in atomic_numbers], dtype=torch.long)


def _known_inserter(model: "EDM", mask: torch.Tensor, xh: torch.Tensor, known_x: torch.Tensor,
                    known_h: torch.Tensor, gen: torch.Generator | None):
    """``known(z, s)``: z with the known coordinates (``known_x``, (B, N, 1)) and features (``known_h``)
    replaced by the clean ``xh`` noised to level s, the coordinates placed on the sample's own centroid
    of those atoms, and the whole state centred."""
    T = model.schedule.timesteps
    n_known = known_x.sum(1, keepdim=True)

    def known(z: torch.Tensor, s: int) -> torch.Tensor:
        g = model.schedule.gamma(torch.tensor(s / T, device=z.device))
        noisy = NoiseSchedule.alpha(g) * xh + NoiseSchedule.sigma(g) * model.noise_like(z, mask, gen)
        zx, zh = z[..., :3], z[..., 3:]
        if bool((n_known > 0).any()):
            kx = noisy[..., :3]
            shift = ((zx - kx) * known_x).sum(1, keepdim=True) / n_known.clamp(min=1)
            zx = remove_mean(torch.where(known_x.bool(), kx + shift, zx), mask)
        zh = torch.where(known_h.bool(), noisy[..., 3:], zh) * mask
        return torch.cat([zx, zh], dim=-1)

    return known


def inpaint(model: "EDM", fragments: Sequence[Record], n_atoms: int | Sequence[int] | None = None,
            seed: int | None = 0, steps: int | None = None, scheduler: str | Scheduler | None = None,
            resamplings: int = 1, batch_size: int | None = None, progress: bool = False,
            precision: str = "fp32") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One molecule per fragment (atomic numbers, positions in Angstrom), each containing its fragment's
    atoms exactly where they are, first. ``n_atoms``: the molecules' total sizes (default: drawn from the
    training histogram above each fragment's size). ``precision``: see :meth:`EDM.sample_arrays`."""
    frags = [(np.asarray(z, dtype=np.int64).reshape(-1), np.asarray(x, dtype=np.float64).reshape(-1, 3))
             for z, x in fragments]
    n = len(frags)
    if n == 0:
        raise ValueError("no fixed fragment given")
    for z, x in frags:
        if len(z) == 0 or len(x) != len(z) or not np.isfinite(x).all():
            raise ValueError(f"a fixed fragment needs one finite 3D position per atom ({len(z)} atoms, {len(x)} positions)")
        if len(z) >= model.max_atoms:
            raise ValueError(f"the fixed fragment has {len(z)} atoms; this model generates at most {model.max_atoms}")
    types_fixed = [_type_indices(model, z, "the fixed fragment") for z, _ in frags]
    sizes = torch.tensor([len(z) for z, _ in frags])
    dev = model.device
    gen = make_generator(seed, dev)
    count_gen = count_generator(gen, seed)
    if n_atoms is None:
        counts = torch.empty(n, dtype=torch.long)
        for k in sorted(set(sizes.tolist())):  # per fragment size: the histogram above it
            rows = (sizes == k).nonzero().view(-1)
            probs = model.n_atoms_probs.cpu().clone()
            probs[:k + 1] = 0  # at least one atom to generate
            if probs.sum() <= 0:
                raise ValueError(f"the training histogram has no molecule with more than {k} atoms; give n_atoms")
            counts[rows] = torch.multinomial(probs, len(rows), replacement=True, generator=count_gen)
    else:
        counts = model._atom_counts(n, n_atoms, count_gen)
        if bool((counts <= sizes).any()):
            row = int((counts <= sizes).nonzero()[0])
            raise ValueError(f"n_atoms must exceed the fixed fragment's {int(sizes[row])} atoms, got {int(counts[row])}")
    centres = [x.mean(0) for _, x in frags]

    def constraint(rows: list[int], mask: torch.Tensor):
        b, nmax = mask.shape[0], mask.shape[1]
        types = torch.zeros(b, nmax, dtype=torch.long, device=dev)
        xh = torch.zeros(b, nmax, 3 + model.h_dim, device=dev)
        known = torch.zeros(b, nmax, 1, device=dev)
        for i, r in enumerate(rows):
            k = len(frags[r][0])
            types[i, :k] = types_fixed[r].to(dev)
            xh[i, :k, :3] = torch.as_tensor(frags[r][1] - centres[r], dtype=torch.float32, device=dev)
            known[i, :k] = 1.0
        xh[..., 3:] = model.encode_types(types, known)
        return None, _known_inserter(model, mask, xh, known, known, gen)

    chain = get_scheduler(scheduler or model.sampler_kind, model.schedule,
                          model.default_sampling_steps if steps is None else steps)
    zs, xs = model.run_chains(counts, chain, gen, model._batch_size(batch_size), progress, constraint, resamplings,
                              precision=precision)
    for i, ((z_fixed, x_fixed), x) in enumerate(zip(frags, xs)):
        k = len(z_fixed)
        moved = x - x[:k].mean(0) + centres[i]  # the fixed atoms' centroid where it was given
        moved[:k] = x_fixed
        xs[i] = moved
        zs[i] = zs[i].copy()
        zs[i][:k] = z_fixed
    return zs, xs


def refine(model: "EDM", records: Sequence[Record], strength: float, seed: int | None = 0, steps: int | None = None,
           scheduler: str | Scheduler | None = None, batch_size: int | None = None,
           progress: bool = False, precision: str = "fp32") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each (atomic numbers, positions in Angstrom) record noised to ``strength`` in (0, 1] and denoised
    back, elements kept; coordinates in the input's frame (its centroid). ``steps``: reverse steps from
    that level (default: the model's default steps scaled by ``strength``, at least 1). ``precision``:
    see :meth:`EDM.sample_arrays`."""
    if not 0 < float(strength) <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength!r}")
    if len(records) == 0:
        raise ValueError("nothing to refine: no molecules given")
    T = model.schedule.timesteps
    start = max(1, int(round(float(strength) * T)))
    types_of = [_type_indices(model, np.asarray(z), f"molecule {i}") for i, (z, _) in enumerate(records)]
    sizes = [len(z) for z, _ in records]
    if max(sizes) > model.max_atoms:
        raise ValueError(f"a molecule has {max(sizes)} atoms; this model handles at most {model.max_atoms}")
    dev = model.device
    gen = make_generator(seed, dev)
    counts = torch.tensor(sizes, dtype=torch.long)
    centres = [np.asarray(x, dtype=np.float64).mean(0) for _, x in records]

    def constraint(rows: list[int], mask: torch.Tensor):
        b, nmax = mask.shape[0], mask.shape[1]
        types = torch.zeros(b, nmax, dtype=torch.long, device=dev)
        pos = torch.zeros(b, nmax, 3, device=dev)
        for i, r in enumerate(rows):
            types[i, :sizes[r]] = types_of[r].to(dev)
            pos[i, :sizes[r]] = torch.as_tensor(np.asarray(records[r][1]) - centres[r], dtype=torch.float32)
        xh = torch.cat([remove_mean(pos, mask), model.encode_types(types, mask)], dim=-1)
        g = model.schedule.gamma(torch.tensor(start / T, device=dev))
        z_start = NoiseSchedule.alpha(g) * xh + NoiseSchedule.sigma(g) * model.noise_like(xh, mask, gen)
        return z_start, _known_inserter(model, mask, xh, torch.zeros_like(mask), mask, gen)

    default = max(1, int(round((model.default_sampling_steps if steps is None else steps) *
                               (float(strength) if steps is None else 1.0))))
    chain = get_scheduler(scheduler or model.sampler_kind, model.schedule, min(default, start), start=start)
    zs, xs = model.run_chains(counts, chain, gen, model._batch_size(batch_size), progress, constraint,
                              precision=precision)
    zs = [np.asarray(z, dtype=np.int64) for z, _ in records]  # the elements are kept, by construction
    return zs, [x + c for x, c in zip(xs, centres)]


def kabsch_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD (Angstrom) between two conformations of the same atoms after the best superposition."""
    from scipy.spatial.transform import Rotation

    a0, b0 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a0, b0 = a0 - a0.mean(0), b0 - b0.mean(0)
    if len(a0) < 2:
        return 0.0
    rot, _ = Rotation.align_vectors(b0, a0)
    return float(np.sqrt(((rot.apply(a0) - b0) ** 2).sum(1).mean()))
