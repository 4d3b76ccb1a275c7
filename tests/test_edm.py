"""EDM: equivariance of both backbones, the schedule, the bound, sampling, checkpoints, CLI errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from molgen.diffusion.schedulers import DDIMScheduler, timestep_pairs
from molgen.diffusion.schedule import NoiseSchedule
from molgen.models.edm import EDM, remove_mean

HIST = [0, 0, 0, 1, 2, 3, 2, 1]


def _model(backbone: str, **kw) -> EDM:
    torch.manual_seed(0)
    cfg = dict(hidden=16, n_layers=2, atom_count_hist=HIST, timesteps=50, backbone=backbone)
    if backbone == "e3nn":
        cfg.update(e3nn_vectors=4, e3nn_lmax=2)
    cfg.update(kw)
    return EDM(**cfg).double()


def _random_orthogonal(reflect: bool) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if reflect:
        q = q @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    return q


def _inputs(b: int = 3, n: int = 7, h_dim: int = 6):
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(b, n, 1, dtype=torch.float64)
    mask[0, 5:] = 0
    mask[2, 6:] = 0
    x = remove_mean(torch.randn(b, n, 3, dtype=torch.float64, generator=g) * 1.5, mask)
    h = torch.randn(b, n, h_dim, dtype=torch.float64, generator=g) * mask
    z = torch.cat([x, h], dim=-1)
    t = torch.rand(b, dtype=torch.float64, generator=g)
    return z, t, mask


@pytest.mark.parametrize("backbone", ["egnn", "e3nn"])
@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_reflection_and_translation_equivariance(backbone: str, reflect: bool) -> None:
    model = _model(backbone)
    z, t, mask = _inputs()
    out = model.dynamics(z, t, mask)
    q = _random_orthogonal(reflect)
    shift = torch.tensor([0.7, -1.2, 2.5], dtype=torch.float64)
    z2 = z.clone()
    z2[..., :3] = (z[..., :3] @ q.T + shift) * mask
    out2 = model.dynamics(z2, t, mask)
    torch.testing.assert_close(out2[..., :3], out[..., :3] @ q.T, atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(out2[..., 3:], out[..., 3:], atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("backbone", ["egnn", "e3nn"])
def test_permuting_atoms_permutes_outputs(backbone: str) -> None:
    model = _model(backbone)
    z, t, mask = _inputs()
    mask = torch.ones_like(mask)
    z = torch.cat([remove_mean(z[..., :3], mask), z[..., 3:]], dim=-1)
    perm = torch.randperm(z.shape[1], generator=torch.Generator().manual_seed(5))
    out = model.dynamics(z, t, mask)
    out_p = model.dynamics(z[:, perm], t, mask)
    torch.testing.assert_close(out_p, out[:, perm], atol=1e-9, rtol=1e-7)


def test_padding_does_not_change_real_atoms() -> None:
    model = _model("egnn")
    z, t, mask = _inputs()
    out = model.dynamics(z, t, mask)
    z_pad = torch.cat([z, torch.randn(z.shape[0], 3, z.shape[2], dtype=torch.float64)], dim=1)
    mask_pad = torch.cat([mask, torch.zeros(mask.shape[0], 3, 1, dtype=torch.float64)], dim=1)
    out_pad = model.dynamics(z_pad * mask_pad, t, mask_pad)
    torch.testing.assert_close(out_pad[:, : z.shape[1]], out, atol=1e-9, rtol=1e-7)
    assert torch.all(out_pad[:, z.shape[1]:] == 0)


def test_output_coordinates_have_zero_centre_of_mass() -> None:
    model = _model("egnn")
    z, t, mask = _inputs()
    out = model.dynamics(z, t, mask)
    com = (out[..., :3] * mask).sum(1)
    torch.testing.assert_close(com, torch.zeros_like(com), atol=1e-10, rtol=0)


def test_polynomial_schedule_matches_edm_endpoints() -> None:
    s = NoiseSchedule("polynomial_2", timesteps=1000, precision=1e-5)
    alpha2 = torch.sigmoid(-s.table)
    # EDM: alpha^2 squeezed into [s, 1 - s] by precision s = 1e-5, decreasing in t
    assert alpha2[0].item() == pytest.approx(1 - 1e-5, abs=1e-6)
    assert alpha2[-1].item() == pytest.approx(1e-5, rel=1e-3)
    assert torch.all(alpha2[1:] <= alpha2[:-1])
    with pytest.raises(ValueError, match="cosine"):
        NoiseSchedule("linear")


def test_skip_step_pairs_cover_the_chain() -> None:
    pairs = timestep_pairs(1000, 50)
    assert len(pairs) == 50 and pairs[0][0] == 1000 and pairs[-1][1] == 0
    assert all(t > s for t, s in pairs)
    assert len(timestep_pairs(10)) == 10
    with pytest.raises(ValueError):
        timestep_pairs(10, 0)


def test_ancestral_step_with_exact_noise_prediction_recovers_the_forward_marginal() -> None:
    # If eps_hat is the true noise and we step to s = 0 deterministically (DDIM), we recover x.
    s = NoiseSchedule("polynomial_2", timesteps=100)
    x = torch.randn(4, 5)
    eps = torch.randn(4, 5)
    t = torch.full((4,), 0.6)
    z = s.add_noise(x, eps, t)
    ddim = DDIMScheduler(s, steps=1)
    x0 = ddim.step(z, eps, 60, 0, torch.zeros_like(z))
    g0 = s.gamma(torch.tensor(0.0))
    torch.testing.assert_close(x0, NoiseSchedule.alpha(g0) * x + NoiseSchedule.sigma(g0) * eps, atol=1e-5, rtol=1e-5)


def test_sampling_shapes_counts_and_determinism() -> None:
    model = _model("egnn").float()
    a = model.sample_arrays(5, steps=4, seed=3)
    b = model.sample_arrays(5, steps=4, seed=3)
    assert [len(z) for z in a[0]] == [len(z) for z in b[0]]
    for xa, xb in zip(a[1], b[1]):
        np.testing.assert_allclose(xa, xb)
    assert all(3 <= len(z) <= 7 for z in a[0])
    assert set(np.concatenate(a[0]).tolist()) <= {1, 6, 7, 8, 9}
    fixed = model.sample_arrays(2, steps=2, n_atoms=6, seed=0)
    assert [len(z) for z in fixed[0]] == [6, 6]
    for x in fixed[1]:
        np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)


def test_log_likelihood_is_finite_and_nan_for_unknown_atoms() -> None:
    model = _model("egnn").float()
    water = (np.array([8, 1, 1]), np.array([[0, 0, 0.0], [0.96, 0, 0], [-0.24, 0.93, 0]]))
    silane = (np.array([14, 1, 1, 1, 1]), np.random.default_rng(0).normal(size=(5, 3)))
    ll = model.log_likelihood([water, silane], n_t=2)
    assert np.isfinite(ll[0]) and np.isnan(ll[1])


def test_bound_terms_add_up() -> None:
    model = _model("egnn").float()
    batch = {"types": torch.tensor([[3, 0, 0, -1]]), "pos": torch.tensor([[[0, 0, 0.0], [0.96, 0, 0],
                                                                            [-0.24, 0.93, 0], [0, 0, 0]]]),
             "mask": torch.tensor([[True, True, True, False]])}
    terms = model.nll_terms(batch)
    assert terms["prior"].item() >= 0
    assert terms["log_pN"].item() == pytest.approx(np.log(1 / 9), rel=1e-5)


def test_training_reduces_the_loss_on_a_tiny_set() -> None:
    model = _model("egnn", hidden=32).float()
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(8, 5, 3, generator=g)
    batch = {"types": torch.randint(0, 5, (8, 5), generator=g), "pos": pos, "mask": torch.ones(8, 5, dtype=torch.bool)}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    first = np.mean([model.loss(batch)[0].item() for _ in range(20)])
    for _ in range(150):
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.manual_seed(0)
    last = np.mean([model.loss(batch)[0].item() for _ in range(20)])
    assert last < 0.8 * first


def test_checkpoint_round_trip(tmp_path) -> None:
    from molgen.models import CheckpointError, load

    model = _model("egnn").float()
    model.save_pretrained(tmp_path / "ck", metrics={"note": "test"})
    again = load("edm", checkpoint=tmp_path / "ck")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    a = model.sample_arrays(3, steps=3, seed=1)
    b = again.sample_arrays(3, steps=3, seed=1)
    np.testing.assert_allclose(np.concatenate(a[1]), np.concatenate(b[1]), atol=1e-6)
    (tmp_path / "ck" / "weights.safetensors").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load("edm", checkpoint=tmp_path / "ck")
    with pytest.raises(CheckpointError, match="does not exist"):
        load("edm", checkpoint=tmp_path / "missing")


def test_the_fused_cpu_linear_silu_matches_the_modules() -> None:
    from torch import nn
    from torch.nn import functional as F

    from molgen.nn import egnn

    assert egnn._LINEAR_SILU is not None, "this torch build should have oneDNN's fused product"
    lin = nn.Linear(16, 8)
    x = torch.randn(3, 5, 5, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
            fast = egnn._linear_silu(lin.to(torch.float32), x.to(dtype))
            want = F.silu(F.linear(x.to(dtype), lin.weight.to(dtype), lin.bias.to(dtype)))
            assert fast.dtype == dtype and fast.shape == (3, 5, 5, 8)
            torch.testing.assert_close(fast.float(), want.float(), atol=tol, rtol=tol)
        torch.testing.assert_close(egnn._linear_silu(lin.double(), x.double()), F.silu(lin.double()(x.double())))
    y = egnn._linear_silu(lin.float(), x.requires_grad_())  # with autograd: the modules, differentiable
    y.sum().backward()
    assert x.grad is not None
