"""EDM with a known part: inpainting around fixed atoms (RePaint), refinement of given geometries (SDEdit),
and the generic reverse chain with a known part."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from molgen.diffusion.inpainting import renoise, sample_with_known
from molgen.diffusion.schedule import NoiseSchedule
from molgen.diffusion.schedulers import AncestralScheduler, DDIMScheduler, timestep_pairs
from molgen.models.edm import EDM
from molgen.models.edm.constrained import kabsch_rmsd

HIST = [0, 0, 0, 1, 2, 3, 2, 1]
WATER = (np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]) + 5.0)


def _model(**kw) -> EDM:
    torch.manual_seed(0)
    return EDM(**{**dict(hidden=16, n_layers=2, atom_count_hist=HIST, timesteps=50), **kw}).eval()


def test_fixed_atoms_come_out_exactly_where_and_what_they_were_given() -> None:
    model = _model()
    out = model.sample(4, seed=1, steps=10, fixed=WATER)
    assert len(out) == 4 and out.info["fixed_atoms"] == 3
    for z, x in zip(out.atomic_numbers, out.positions):
        assert 3 < len(z) <= model.max_atoms
        assert z[:3].tolist() == [8, 1, 1]
        np.testing.assert_array_equal(x[:3], WATER[1])
        assert np.isfinite(x).all()


def test_inpainting_is_seeded_takes_sizes_and_resamples() -> None:
    model = _model()
    a = model.sample(3, seed=2, steps=5, fixed=WATER, n_atoms=6)
    b = model.sample(3, seed=2, steps=5, fixed=WATER, n_atoms=6)
    assert all(len(z) == 6 for z in a.atomic_numbers)
    for xa, xb in zip(a.positions, b.positions):
        np.testing.assert_array_equal(xa, xb)
    c = model.sample(3, seed=2, steps=5, fixed=WATER, n_atoms=6, resamplings=3)
    assert any(not np.allclose(xa, xc) for xa, xc in zip(a.positions, c.positions))


@pytest.mark.parametrize("kwargs, message", [
    (dict(fixed=(np.array([16]), np.zeros((1, 3)))), "elements this model does not know"),
    (dict(fixed=(np.array([6] * 7), np.zeros((7, 3)))), "generates at most 7"),
    (dict(fixed=WATER, n_atoms=3), "must exceed the fixed fragment's 3 atoms"),
    (dict(fixed=(np.array([6, 6]), np.zeros((3, 3)))), "one finite 3D position per atom"),
    (dict(fixed=WATER, resamplings=0), "resamplings must be >= 1"),
])
def test_bad_fixed_fragments_are_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _model().sample(2, seed=0, steps=3, **kwargs)


def test_refinement_keeps_elements_and_frame_and_moves_less_at_low_strength() -> None:
    model = _model()
    rng = np.random.default_rng(0)
    records = [(np.array([6, 6, 8, 1, 1]), rng.normal(size=(5, 3)) + 3.0), WATER]
    low = model.refine(records, strength=0.02, seed=0)
    high = model.refine(records, strength=1.0, seed=0)
    for (z, x), zl, xl, xh in zip(records, low.atomic_numbers, low.positions, high.positions):
        assert zl.tolist() == z.tolist()
        np.testing.assert_allclose(xl.mean(0), x.mean(0), atol=1e-5)
        assert kabsch_rmsd(xl, x) < kabsch_rmsd(xh, x)
    with pytest.raises(ValueError, match=r"strength must be in \(0, 1\]"):
        model.refine(records, strength=0)


def test_kabsch_rmsd_ignores_rotation_and_translation() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    assert kabsch_rmsd(x @ q.T + 2.0, x) == pytest.approx(0.0, abs=1e-9)
    assert kabsch_rmsd(x + rng.normal(scale=0.1, size=x.shape), x) > 0.01


def test_a_chain_whose_every_part_is_known_ends_at_the_known_data() -> None:
    schedule = NoiseSchedule("polynomial_2", timesteps=20)
    data = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    noise = lambda like: torch.randn(like.shape, generator=gen)  # noqa: E731

    def known(z, s):
        g = schedule.gamma(torch.tensor(s / 20))
        return NoiseSchedule.alpha(g) * data + NoiseSchedule.sigma(g) * noise(z)

    for chain in (AncestralScheduler(schedule, 5), DDIMScheduler(schedule, 5)):
        z0 = sample_with_known(chain, lambda z, t: torch.zeros_like(z), noise(data), noise, known, resamplings=2)
        torch.testing.assert_close(z0, data, atol=0.05, rtol=0)


def test_a_chain_can_start_part_way_and_renoising_keeps_the_marginal_variance() -> None:
    assert timestep_pairs(1000, 4, start=200) == [(200, 150), (150, 100), (100, 50), (50, 0)]
    with pytest.raises(ValueError, match="start between step 1 and 1000"):
        timestep_pairs(1000, 4, start=0)
    schedule = NoiseSchedule("polynomial_2", timesteps=100)
    gen = torch.Generator().manual_seed(0)
    g_s = schedule.gamma(torch.tensor(0.3))
    z_s = NoiseSchedule.sigma(g_s) * torch.randn(20000, generator=gen)  # the marginal of pure noise data
    z_t = renoise(schedule, z_s, 30, 80, torch.randn(20000, generator=gen))
    assert float(z_t.var()) == pytest.approx(float(torch.sigmoid(schedule.gamma(torch.tensor(0.8)))), rel=0.05)


def test_edm_is_a_guacamol_generator_too() -> None:
    smiles = _model(default_sampling_steps=5).generate(3)
    assert len(smiles) == 3 and all(isinstance(s, str) for s in smiles)
