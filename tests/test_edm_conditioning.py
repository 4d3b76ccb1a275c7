"""Conditional EDM on QM9's DFT properties (EDM's protocol): the data halves and units, the condition
embedding (equivariance, zero start, guidance), the checks of a request, training on the second half,
the property predictor and the benchmark, all on tiny models."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from molgen.models.edm import EDM, remove_mean

HIST = [0, 0, 0, 1, 2, 3, 2, 1]
STATS = {"alpha": {"mean": 75.0, "std": 8.0, "p01": 50.0, "p99": 100.0},
         "gap": {"mean": 6800.0, "std": 1300.0, "p01": 4000.0, "p99": 9500.0}}


def _model(randomise: bool = False, **kw) -> EDM:
    torch.manual_seed(0)
    cfg = dict(hidden=16, n_layers=2, atom_count_hist=HIST, timesteps=50, conditions=["alpha", "gap"],
               condition_stats=STATS)
    cfg.update(kw)
    model = EDM(**cfg)
    if randomise:  # a trained model's embedding is not zero
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for p in model.cond_encoder.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
    return model


def _positions(samples) -> np.ndarray:
    return np.concatenate(samples.positions)


# --- data ------------------------------------------------------------------------------------------
def test_training_halves_are_disjoint_deterministic_and_cover_the_training_split():
    from molgen.datasets.qm9 import HALVES, indices

    first, second = indices(HALVES[0]), indices(HALVES[1])
    assert first.size == second.size == 50_000
    assert np.intersect1d(first, second).size == 0
    np.testing.assert_array_equal(np.union1d(first, second), indices("train"))
    np.testing.assert_array_equal(first, indices(HALVES[0]))
    assert np.all(np.diff(first) > 0)


def test_properties_come_in_edm_units():
    from molgen.datasets.qm9 import HARTREE_TO_MEV, qm9_properties

    v = qm9_properties(np.array([0]), ["alpha", "gap", "homo", "lumo", "mu", "Cv"])[0]  # methane
    np.testing.assert_allclose(v[1], v[3] - v[2], rtol=1e-4)  # gap = LUMO - HOMO, all in meV
    assert v[2] == pytest.approx(-0.3877 * HARTREE_TO_MEV, rel=1e-3)  # QM9's HOMO of CH4, -10.55 eV
    assert v[0] == pytest.approx(13.21, rel=1e-3) and v[4] == pytest.approx(0.0, abs=1e-3)
    assert v[5] == pytest.approx(6.469, rel=1e-3)


def test_unknown_property_names_list_the_choices():
    from molgen.datasets.qm9 import check_conditions

    with pytest.raises(ValueError, match="alpha, gap, homo, lumo, mu, Cv; got logp"):
        check_conditions(["logp"])
    assert check_conditions("alpha, Cv") == ("alpha", "Cv")


# --- the model -----------------------------------------------------------------------------------
def test_noise_prediction_is_equivariant_with_a_condition():
    model = _model(randomise=True).double()
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(2, 6, 1, dtype=torch.float64)
    mask[1, 4:] = 0
    x = remove_mean(torch.randn(2, 6, 3, dtype=torch.float64, generator=g), mask)
    z = torch.cat([x, torch.randn(2, 6, model.h_dim, dtype=torch.float64, generator=g) * mask], -1)
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    ctx = model.context(torch.tensor([[80.0, 0.0], [60.0, 7000.0]]), torch.tensor([[True, False], [True, True]]))
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=g))
    q = q @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))  # a reflection too
    eps = model.dynamics(z, t, mask, ctx.double())
    rotated = torch.cat([(x @ q.T) * mask, z[..., 3:]], -1)
    eps_rot = model.dynamics(rotated, t, mask, ctx.double())
    torch.testing.assert_close(eps_rot[..., :3], (eps[..., :3] @ q.T) * mask)
    torch.testing.assert_close(eps_rot[..., 3:], eps[..., 3:])
    assert not torch.allclose(eps, model.dynamics(z, t, mask, None))  # the condition does enter


def test_a_fresh_conditional_model_samples_exactly_as_without_a_condition():
    model = _model()
    plain = model.sample(5, steps=4, seed=3)
    for guidance in (1.0, 2.0):
        asked = model.sample(5, steps=4, seed=3, condition={"alpha": 80.0}, guidance=guidance)
        np.testing.assert_array_equal(_positions(asked), _positions(plain))
    # and as an unconditional EDM with the same weights (the context columns of the first layer dropped)
    torch.manual_seed(0)
    unc = EDM(hidden=16, n_layers=2, atom_count_hist=HIST, timesteps=50)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("cond_encoder.")}
    state["net.embed.weight"] = state["net.embed.weight"][:, :model.h_dim + 1]
    unc.load_state_dict(state)
    np.testing.assert_array_equal(_positions(unc.sample(5, steps=4, seed=3)), _positions(plain))


def test_guidance_zero_is_unconditional_and_one_is_not():
    model = _model(randomise=True)
    plain = _positions(model.sample(4, steps=4, seed=1))
    w0 = _positions(model.sample(4, steps=4, seed=1, condition={"alpha": 80.0}, guidance=0.0))
    w1 = model.sample(4, steps=4, seed=1, condition={"alpha": 80.0}, guidance=1.0)
    w2 = _positions(model.sample(4, steps=4, seed=1, condition={"alpha": 80.0}, guidance=2.0))
    np.testing.assert_array_equal(w0, plain)
    assert np.abs(_positions(w1) - w0).max() > 1e-3 and np.abs(w2 - _positions(w1)).max() > 1e-3
    assert w1.info["condition"] == {"alpha": 80.0} and w1.info["guidance"] == 1.0


def test_the_bound_is_conditional_when_asked_and_unchanged_without():
    fresh, trained = _model(), _model(randomise=True)
    mols = fresh.sample(3, steps=3, seed=0)
    a = fresh.log_likelihood(mols, n_t=2, condition={"gap": 7000.0})
    np.testing.assert_array_equal(a, fresh.log_likelihood(mols, n_t=2))  # zero embedding: same bound
    b = trained.log_likelihood(mols, n_t=2, condition={"gap": 7000.0})
    assert np.all(np.isfinite(b)) and not np.allclose(b, trained.log_likelihood(mols, n_t=2))


def test_bad_requests_give_one_clear_line():
    model = _model()
    with pytest.raises(ValueError, match="unknown condition 'mu' for this edm checkpoint; choose from alpha, gap"):
        model.sample(2, steps=2, condition={"mu": 1.0})
    with pytest.raises(ValueError, match="condition alpha must be a finite number"):
        model.sample(2, steps=2, condition={"alpha": float("nan")})
    with pytest.raises(ValueError, match="guidance applies with a condition only"):
        model.sample(2, steps=2, guidance=2.0)
    with pytest.raises(ValueError, match="guidance must be a finite number >= 0"):
        model.sample(2, steps=2, condition={"alpha": 80.0}, guidance=-1.0)
    with pytest.warns(UserWarning, match="alpha=300 is outside the training range 50 to 100"):
        model.sample(2, steps=2, condition={"alpha": 300.0})
    unconditional = EDM(hidden=16, n_layers=2, atom_count_hist=HIST, timesteps=50)
    with pytest.raises(ValueError, match="trained without conditions; .*--model edm --conditions"):
        unconditional.sample(2, steps=2, condition={"alpha": 80.0})
    with pytest.raises(ValueError, match="trained without conditions"):
        unconditional.log_likelihood(model.sample(1, steps=2), condition={"alpha": 80.0})


def test_a_tiny_model_learns_to_follow_a_condition():
    """Toy data: 4-atom molecules, all carbon when alpha is high, all oxygen when it is low."""
    from molgen.training.conditions import ConditionedData

    class Toy:
        def __init__(self) -> None:
            g = torch.Generator().manual_seed(0)
            self.pos = torch.randn(256, 4, 3, generator=g) * 1.2
            self.high = torch.arange(256) % 2 == 0

        def __len__(self) -> int:
            return 256

        def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
            i = torch.as_tensor(idx)
            types = torch.where(self.high[i, None], 1, 3).expand(-1, 4)  # C or O
            return {"types": types, "pos": self.pos[i], "mask": torch.ones(len(i), 4, dtype=torch.bool)}

    toy = Toy()
    data = ConditionedData(toy, np.where(toy.high.numpy(), 90.0, 60.0)[:, None])
    model = _model(hidden=32, conditions=["alpha"], condition_stats={"alpha": STATS["alpha"]},
                   atom_count_hist=[0, 0, 0, 0, 1])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    for _ in range(250):
        loss, _ = model.loss(data.batch(rng.choice(256, 64, replace=False)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    carbon = {}
    for value in (90.0, 60.0):
        s = model.sample(32, steps=20, seed=0, condition={"alpha": value}, guidance=2.0)
        carbon[value] = np.mean(np.concatenate(s.atomic_numbers) == 6)
    assert carbon[90.0] > 0.8 and carbon[60.0] < 0.2, carbon


# --- training ------------------------------------------------------------------------------------
def test_conditional_training_uses_the_second_half_with_condition_dropout():
    from molgen.datasets.qm9 import HALVES, indices
    from molgen.training.edm import training_setup

    setup = training_setup("qm9", {"hidden": 8, "n_layers": 1, "conditions": ["alpha", "Cv"]}, {})
    assert setup.metrics["train_split"] == HALVES[1]
    np.testing.assert_array_equal(setup.data.rows, indices(HALVES[1]))
    assert setup.model.conditions == ("alpha", "Cv")
    assert set(setup.model.condition_stats["alpha"]) >= {"mean", "std", "p01", "p99"}
    batch = setup.data.batch(np.arange(200))
    assert batch["cond"].shape == (200, 2) and 0.2 < batch["cond_mask"].float().mean() < 0.7
    assert setup.data.to("cpu") is setup.data  # the trainer's move to a GPU keeps the conditions
    loss, _ = setup.model.loss(setup.data.batch(np.arange(8)))
    assert torch.isfinite(loss)


def test_train_cli_checks_edm_condition_names(capsys):
    from molgen.cli.train import main

    with pytest.raises(ValueError, match="distinct names from alpha, gap, homo, lumo, mu, Cv; got logp"):
        main(["--model", "edm", "--conditions", "logp", "--max-steps", "1", "--out", "/nonexistent/x"])


# --- the property predictor ------------------------------------------------------------------------
def _predictor(**kw):
    from molgen.models.edm.predictor import PropertyPredictor

    torch.manual_seed(0)
    stats = {"alpha": {"mean": 75.0, "mad": 6.0}, "mu": {"mean": 2.7, "mad": 1.2}}
    return PropertyPredictor(properties=["alpha", "mu"], property_stats=stats, hidden=16, n_layers=2, **kw)


def test_predictor_round_trip_is_invariant_and_refuses_other_checkpoints(tmp_path):
    from molgen.models import CheckpointError
    from molgen.models.edm.predictor import PropertyPredictor

    model = _predictor()
    g = np.random.default_rng(0)
    mols = [(np.array([6, 1, 1, 1, 1]), g.normal(size=(5, 3))), (np.array([8, 1, 1]), g.normal(size=(3, 3))),
            (np.array([16, 1, 1]), g.normal(size=(3, 3)))]
    y = model.predict(mols)
    assert np.all(np.isfinite(y[:2])) and np.all(np.isnan(y[2]))  # sulphur is outside the vocabulary
    q, _ = np.linalg.qr(g.normal(size=(3, 3)))
    moved = [(z, x @ q.T + 3.0) for z, x in mols[:2]]
    np.testing.assert_allclose(model.predict(moved), y[:2], rtol=1e-4, atol=1e-4)
    model.save(tmp_path / "pred", metrics={"note": "test"})
    again = PropertyPredictor.load(tmp_path / "pred")
    np.testing.assert_array_equal(again.predict(mols), y)
    assert json.loads((tmp_path / "pred" / "config.json").read_text())["model"] == "qm9-property-predictor"
    _model().save_pretrained(tmp_path / "edm")
    with pytest.raises(CheckpointError, match="holds a 'edm' checkpoint, not 'qm9-property-predictor'"):
        PropertyPredictor.load(tmp_path / "edm")


def test_predictor_trains_resumes_and_writes_its_test_mae(tmp_path):
    from molgen.training.qm9_predictor import train_predictor

    kw = dict(model_cfg={"hidden": 16, "n_layers": 1}, max_molecules=200, test_molecules=100)
    card = train_predictor(tmp_path / "p", ["alpha", "gap"], train_cfg={"max_steps": 10, "batch_size": 32,
                                                                         "progress": False}, eval_molecules=50, **kw)
    assert card["steps"] == 10 and card["train_molecules"] == 200
    ev = card["evaluation"]
    assert ev["test_split"] == "train_second_half" and ev["molecules"] == 100
    assert set(ev["test_mae"]) == {"alpha", "gap"} and all(v > 0 for v in ev["test_mae"].values())
    card = train_predictor(tmp_path / "p", ["alpha", "gap"], train_cfg={"max_steps": 15, "progress": False},
                           test_molecules=100, eval_molecules=50)
    assert card["steps"] == 15 and card["train_molecules"] == 200  # resumed on its own subset
    with pytest.raises(ValueError, match="predicts alpha, gap, not mu"):
        train_predictor(tmp_path / "p", ["mu"], train_cfg={"max_steps": 20})


# --- the benchmark ---------------------------------------------------------------------------------
def test_benchmark_runs_end_to_end_on_a_tiny_generator_and_predictor(tmp_path, monkeypatch):
    from benchmarks.studies import edm_conditional
    from molgen.models.edm.predictor import PropertyPredictor

    gen = _model(conditions=["mu", "alpha"], condition_stats={  # not the predictor's order
        "alpha": STATS["alpha"], "mu": {"mean": 2.7, "std": 1.5, "p01": 0.0, "p99": 7.0}},
        atom_count_hist=[0] * 29 + [1.0], default_sampling_steps=3)
    gen.save_pretrained(tmp_path / "gen")
    _predictor().save(tmp_path / "pred", metrics={"evaluation": {"test_mae": {"alpha": 1.0, "mu": 0.1},
                                                                    "molecules": 7}})
    monkeypatch.setattr(edm_conditional, "RESULTS", tmp_path / "results")
    edm_conditional.main(["--generator", str(tmp_path / "gen"), "--predictor", str(tmp_path / "pred"), "-n", "6",
                          "--reference-n", "40", "--joint", "--name", "tiny"])
    out = json.loads((tmp_path / "results" / "edm_conditional_tiny.json").read_text())
    assert set(out["mae"]) == {"conditional", "joint", "unconditional", "naive", "#atoms", "predictor"}
    assert set(out["mae"]["#atoms"]) == {"alpha", "mu"} and out["n"] == 6 and out["reference_n"] == 40
    assert all(np.isfinite(v) for v in out["mae"]["naive"].values())
    rows, _, values = edm_conditional.held_out(["mu", "alpha"], 40, 0)
    pred = PropertyPredictor.load(tmp_path / "pred")
    y = edm_conditional.predict_rows(pred, rows)
    assert out["mae"]["predictor"]["alpha"] == pytest.approx(np.mean(np.abs(y[:, 0] - values[:, 1])))
    text = (tmp_path / "results" / "edm_conditional_tiny.txt").read_text()
    assert "| EDM [1] | 1.111 | 2.76 |" in text and "n = 6 each" in text


def test_the_published_conditional_rows_are_quoted_with_sources():
    from benchmarks.published import QM9_CONDITIONAL, PublishedMAE

    rows = {r.model: r for r in QM9_CONDITIONAL}
    assert rows["EDM"].values == {"alpha": "2.76", "gap": "655", "homo": "356", "lumo": "584", "mu": "1.111",
                                  "Cv": "1.101"}
    assert {"GeoLDM", "EEGSDE", "JODO", "#atoms", "naive (shuffled labels)"} <= set(rows)
    assert all(r.source for r in QM9_CONDITIONAL)
    with pytest.raises(ValueError, match="unknown property 'logp'"):
        PublishedMAE("x", {"logp": "1"}, "somewhere")


def test_a_copy_of_qm9_without_properties_is_refused(monkeypatch):
    import dataclasses

    from molgen.datasets import qm9

    arr = qm9.load_qm9_arrays()
    bare = dataclasses.replace(arr, props=np.full_like(arr.props, np.nan))  # what a GPU travel pack holds
    monkeypatch.setattr(qm9, "load_qm9_arrays", lambda: bare)
    with pytest.raises(qm9.DataMissingError, match="lacks the properties alpha"):
        qm9.qm9_properties("train_second_half", ["alpha"])
