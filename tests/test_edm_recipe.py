"""EDM training recipes (parameterisation, loss weighting, time sampling, self-conditioning),
input checks, and size-bucketed QM9 batches."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from molgen.diffusion.schedule import NoiseSchedule
from molgen.models.edm import EDM, remove_mean

HIST = [0, 0, 0, 1, 2, 3, 2, 1]
RECIPES = [dict(), dict(parameterization="x0", loss_weighting="snr_clamp"), dict(loss_weighting="min_snr"),
           dict(time_beta=(1.0, 2.0)), dict(self_conditioning=True),
           dict(parameterization="x0", loss_weighting="snr_clamp", self_conditioning=True)]


def _model(**kw) -> EDM:
    torch.manual_seed(0)
    return EDM(**{**dict(hidden=16, n_layers=2, atom_count_hist=HIST, timesteps=50), **kw})


def _batch(b: int = 6, n: int = 5):
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, 3:] = False
    return {"types": torch.randint(0, 5, (b, n), generator=g).masked_fill(~mask, -1),
            "pos": torch.randn(b, n, 3, generator=g) * mask[..., None], "mask": mask}


def _rotation() -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    return q


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items()) or "edm")
def test_every_recipe_is_equivariant_and_its_loss_trains(recipe: dict) -> None:
    model = _model(**recipe).double()
    mask = torch.ones(2, 6, 1, dtype=torch.float64)
    mask[1, 4:] = 0
    g = torch.Generator().manual_seed(1)
    x = remove_mean(torch.randn(2, 6, 3, dtype=torch.float64, generator=g), mask)
    z = torch.cat([x, torch.randn(2, 6, model.h_dim, dtype=torch.float64, generator=g) * mask], -1)
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    out = model.dynamics(z, t, mask)
    q = _rotation()
    z2 = z.clone()
    z2[..., :3] = (z[..., :3] @ q.T + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)) * mask
    out2 = model.dynamics(z2, t, mask)
    torch.testing.assert_close(out2[..., :3], out[..., :3] @ q.T, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(out2[..., 3:], out[..., 3:], atol=1e-8, rtol=1e-6)
    model = model.float()
    batch = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    first = np.mean([model.loss(batch)[0].item() for _ in range(10)])
    for _ in range(40):
        loss, logs = model.loss(batch)
        assert torch.isfinite(loss) and "loss_x" in logs
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.manual_seed(0)
    assert np.mean([model.loss(batch)[0].item() for _ in range(10)]) < first


@pytest.mark.parametrize("param", ["eps", "x0"])
def test_noise_and_clean_predictions_are_consistent(param: str) -> None:
    model = _model(parameterization=param).double()
    batch = _batch()
    mask, xh = model.clean_state(batch)
    xh = xh.double()
    mask = mask.double()
    t = torch.full((xh.shape[0],), 0.4, dtype=torch.float64)
    eps = model.noise_like(xh, mask)
    z = model.schedule.add_noise(xh, eps, t)
    eps_hat, clean = model.predict(z, t, mask)
    g = model.schedule.gamma(t).view(-1, 1, 1)
    recon = NoiseSchedule.alpha(g) * clean + NoiseSchedule.sigma(g) * eps_hat
    torch.testing.assert_close(recon, z * mask, atol=1e-6, rtol=1e-5)
    assert torch.allclose(clean[..., :3].sum(1), torch.zeros(1, dtype=torch.float64), atol=1e-6)


def test_loss_weights_follow_their_formulas() -> None:
    t = torch.tensor([0.01, 0.5, 0.99])
    base = _model()
    snr = NoiseSchedule.snr(base.schedule.gamma(t))
    torch.testing.assert_close(base.loss_weight(t), torch.ones(3))
    torch.testing.assert_close(_model(loss_weighting="min_snr").loss_weight(t), snr.clamp(max=5) / snr)
    torch.testing.assert_close(_model(loss_weighting="snr_clamp").loss_weight(t), snr.clamp(0.05, 1.5) / snr)


def test_beta_time_sampling_favours_low_noise() -> None:
    torch.manual_seed(0)
    t = _model(time_beta=(1.0, 3.0)).sample_times(4000, torch.device("cpu"))
    assert 0 <= t.min() and t.max() <= 1 and abs(float(t.mean()) - 0.25) < 0.02
    u = _model().sample_times(4000, torch.device("cpu"))
    assert abs(float(u.mean()) - 0.5) < 0.03 and torch.allclose(u * 50, torch.round(u * 50), atol=1e-4)


def test_self_conditioned_sampling_and_bound_are_deterministic() -> None:
    model = _model(self_conditioning=True)
    a = model.sample_arrays(4, steps=5, seed=2)
    b = model.sample_arrays(4, steps=5, seed=2)
    for xa, xb in zip(a[1], b[1]):
        np.testing.assert_array_equal(xa, xb)
    ll = model.log_likelihood(list(zip(*a)), n_t=2)
    assert np.all(np.isfinite(ll))
    ddim = model.sample(3, steps=4, seed=0, scheduler="ddim")
    assert len(ddim) == 3


def test_bad_recipe_settings_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="parameterization"):
        _model(parameterization="v")
    with pytest.raises(ValueError, match="loss_weighting"):
        _model(loss_weighting="p2")
    with pytest.raises(ValueError, match="time_beta"):
        _model(time_beta=(1.0, -2.0))
    with pytest.raises(ValueError, match="egnn"):
        EDM(hidden=8, n_layers=1, atom_count_hist=HIST, backbone="e3nn", e3nn_vectors=2, self_conditioning=True)


def test_sampling_checks_atom_counts_and_restores_training_mode() -> None:
    model = _model()
    with pytest.raises(ValueError, match="between 1 and 7, got 0"):
        model.sample_arrays(2, steps=2, n_atoms=[3, 0])
    with pytest.raises(ValueError, match="between 1 and 7, got 99"):
        model.sample_arrays(2, steps=2, n_atoms=[3, 99])
    with pytest.raises(ValueError, match="3 sizes for n = 2"):
        model.sample_arrays(2, steps=2, n_atoms=[3, 4, 5])
    model.train()
    model.sample_arrays(2, steps=2, n_atoms=[3, 4])
    assert model.training
    model.log_likelihood([(np.array([8, 1, 1]), np.zeros((3, 3)))], n_t=1)
    assert model.training


def test_log_likelihood_takes_one_molecule_and_rejects_strings() -> None:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    model = _model()
    mol = Chem.AddHs(Chem.MolFromSmiles("O"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    one = model.log_likelihood(mol, n_t=1)
    assert one.shape == (1,) and np.isfinite(one[0])
    pair = model.log_likelihood((np.array([8, 1, 1]), mol.GetConformer().GetPositions()), n_t=1)
    assert pair.shape == (1,)
    with pytest.raises(TypeError, match="SampleSet"):
        model.log_likelihood("O")


@pytest.fixture(scope="module")
def qm9_test():
    from molgen.datasets.qm9_3d import QM9Bucketed

    return QM9Bucketed("test", buckets=(12, 16, 20, 24))


def test_bucket_plan_covers_each_molecule_at_most_once_and_pads_to_the_edge(qm9_test) -> None:
    data = qm9_test
    assert data.buckets == (12, 16, 20, 24, 29)
    plan = data.plan(epoch=0, seed=0, batch_size=64)
    flat = np.concatenate(plan)
    assert len(np.unique(flat)) == flat.size and flat.size > 0.97 * len(data)
    sizes = data.bucket_batch_sizes(64)
    assert sizes == [154, 116, 92, 77, 64]
    for idx in plan[:20]:
        b = data.batch(idx)
        edge = b["types"].shape[1]
        assert edge in data.buckets and len(idx) == sizes[data.buckets.index(edge)]
        n = data.n_atoms[idx]
        assert n.max() <= edge and (edge == 12 or n.min() > data.buckets[data.buckets.index(edge) - 1])
        assert int(b["mask"].sum()) == int(n.sum())
    again = data.plan(epoch=0, seed=0, batch_size=64)
    assert all(np.array_equal(a, b) for a, b in zip(plan, again))
    other = data.plan(epoch=1, seed=0, batch_size=64)
    assert not np.array_equal(plan[0], other[0])


def test_bucketed_padding_is_much_less_than_fixed_size(qm9_test) -> None:
    data = qm9_test
    plan = data.plan(epoch=0, seed=0, batch_size=64)
    padded_pairs = sum(len(i) * data.batch(i)["types"].shape[1] ** 2 for i in plan)
    fixed_pairs = sum(len(i) for i in plan) * 29 ** 2
    assert padded_pairs < 0.65 * fixed_pairs
