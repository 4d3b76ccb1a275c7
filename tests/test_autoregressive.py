"""The autoregressive graph model (``ar``): linearisation, masks, exact likelihood, sampling, I/O."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from rdkit import Chem

from molgen.chem.build import sanitize
from molgen.chem.convert import canonicalize, to_smiles
from molgen.chem.elements import max_valence
from molgen.models.ar import ARModel
from molgen.models.ar.encoding import (ATOM, RING, STOP, ActionDataset, _z_charge, code_to_token, delinearize, encode,
                                       linearize)
from molgen.models.ar.graph_state import GraphState
from molgen.nn.sampling import filter_logits

TYPES = ("C", "N", "O", "F", "N+", "O-")
MOLS = ["CCO", "c1ccccc1O", "CC(=O)[O-]", "C1CC2CC1C2", "N#CC(N)C=O", "[NH3+]CC([O-])=O", "OC1COC1",
        "CC1(C)CN1", "C#CC#N", "FC(F)(F)c1ccncc1", "C12C3C4C1C5C2C3C45", "O=C1NC(=O)C=C1"]


def tiny(seed: int = 0, **kw: object) -> ARModel:
    torch.manual_seed(seed)
    return ARModel(atom_types=TYPES, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_atoms=16, **kw)


def batch_of(model: ARModel, smiles: list[str]) -> dict[str, torch.Tensor]:
    data = ActionDataset(encode(smiles, workers=1), model.atom_types, model.max_atoms, model.max_actions)
    assert len(data) == len(smiles)
    return data.batch(np.arange(len(data)))


@pytest.fixture(scope="module")
def trained() -> ARModel:
    """A tiny model after 60 Adam steps on a handful of molecules."""
    model = tiny()
    batch = batch_of(model, MOLS)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss, _ = model.loss(batch)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.6 * first  # it learned something
    return model.eval()


# --- linearisation ---------------------------------------------------------------------------------
def test_linearisation_round_trips_and_ignores_input_atom_order() -> None:
    for smi in MOLS:
        lin = linearize(smi)
        assert not isinstance(lin, str), lin
        mol = sanitize(delinearize([code_to_token(c) for c in lin.codes], lin.kind, lin.ptr, lin.bond))
        assert to_smiles(mol) == canonicalize(smi)
        ref = (lin.codes.tolist(), lin.kind.tolist(), lin.ptr.tolist(), lin.bond.tolist())
        m = Chem.MolFromSmiles(smi)
        for seed in range(5):
            rnd = Chem.MolToSmiles(m, doRandom=True, canonical=False)
            other = linearize(rnd)
            assert (other.codes.tolist(), other.kind.tolist(), other.ptr.tolist(), other.bond.tolist()) == ref


def test_linearisation_is_breadth_first_with_kekule_bonds() -> None:
    lin = linearize("c1ccccc1")
    assert lin.kind.tolist().count(RING) == 1 and sorted(lin.bond[1:].tolist()) == [1, 1, 1, 2, 2, 2]
    parents = lin.ptr[lin.kind == ATOM][1:]
    assert np.all(np.diff(parents) >= 0)  # parents never decrease in BFS order


def test_atom_tokens_and_valences() -> None:
    assert _z_charge("N+") == (7, 1) and _z_charge("O-") == (8, -1) and _z_charge("C") == (6, 0)
    assert [max_valence(t) for t in ("C", "N", "N+", "O-", "F", "S")] == [4, 3, 4, 1, 1, 6]
    assert isinstance(linearize("CC.O"), str) and "disconnected" in linearize("CC.O")
    assert "does not parse" in linearize("C1CC")


# --- masks -----------------------------------------------------------------------------------------
def test_mask_forbids_over_valent_bond() -> None:
    model = tiny()
    st = GraphState(1, 4, torch.device("cpu"))
    t = lambda *x: torch.tensor(x)  # noqa: E731
    o, c = TYPES.index("O"), TYPES.index("C")
    st.apply(t(ATOM), t(c), t(0), t(0), model.maxval)  # C
    st.apply(t(ATOM), t(o), t(0), t(2), model.maxval)  # C=O: the oxygen is saturated
    st.apply(t(ATOM), t(c), t(0), t(1), model.maxval)  # C(=O)C: the first carbon has one bond left
    assert st.rem.tolist() == [[1, 0, 3, 0]]
    _, parent, ring = st.masks(True, 16, False)
    assert parent.tolist() == [[True, False, True, False]]  # no new atom on the oxygen
    assert ring.tolist() == [[False, False, False, False]]  # no ring bond C2-O1 (trivalent oxygen)
    on_c0 = model._atom_mask(st.rem[0, :1], True).view(len(TYPES), 3)
    assert on_c0[:, 0].all() and not on_c0[:, 1:].any()  # only a single bond fits on the first carbon
    on_c2 = model._atom_mask(st.rem[0, 2:3], True).view(len(TYPES), 3)
    assert on_c2[TYPES.index("F")].tolist() == [True, False, False]  # C=F would be over-valent
    assert on_c2[TYPES.index("N")].tolist() == [True, True, True]
    _, parent_nv, ring_nv = st.masks(False, 16, False)
    assert parent_nv.tolist() == [[True, True, True, False]] and ring_nv[0, 1]  # open without masks


def test_masked_model_gives_zero_probability_to_over_valent_sequence() -> None:
    model = tiny()
    ok = batch_of(model, ["OC"])
    bad = {k: v.clone() for k, v in ok.items()}
    bad["bond"][0, 1] = 3  # O#C: triple bond on oxygen
    with torch.no_grad():
        assert torch.isfinite(model._teacher(ok, valence=True).sum())
        assert model._teacher(bad, valence=True).sum().item() == -math.inf
        assert math.isfinite(model._teacher(bad, valence=False).sum().item())


def test_ring_size_limit_gives_zero_probability_to_larger_rings_only_with_masks() -> None:
    rings = ["C1CCCCCC1", "C1CCCCCCC1", "O=C1CCCCCCCN1", "C1CC2CCCCCC2C1"]  # 7, 8, 9, 6 + 7 atoms
    free = tiny(seed=2).log_likelihood(rings)
    limited = tiny(seed=2, max_ring_size=7)
    ll = limited.log_likelihood(rings)
    assert np.isfinite(free).all()
    assert np.isfinite(ll[[0, 3]]).all() and np.isneginf(ll[[1, 2]]).all()
    assert np.all(ll[[0, 3]] >= free[[0, 3]] - 1e-5)  # the mass of the larger rings goes elsewhere
    assert np.isfinite(limited.log_likelihood(rings, mask=False)).all()
    assert np.isfinite(tiny(seed=2, max_ring_size=8).log_likelihood(rings[:2])).all()
    with pytest.raises(ValueError, match="max_ring_size"):
        tiny(max_ring_size=2)


def test_ring_size_limit_holds_in_untrained_samples() -> None:
    def largest_ring(smiles: list[str]) -> int:
        mols = [Chem.MolFromSmiles(s) for s in smiles]  # kept alive: RingInfo points into its Mol
        return max((len(r) for m in mols for r in m.GetRingInfo().AtomRings()), default=0)

    def ring_happy(**kw: object) -> ARModel:  # untrained, but biased to grow and to close rings
        model = tiny(seed=3, **kw)
        with torch.no_grad():
            model.kind_head.bias[[ATOM, RING, STOP]] = torch.tensor([2.0, 2.0, -1.0])
        return model

    assert largest_ring(ring_happy().sample(300, seed=0).smiles) > 4  # rings of 5 and 6 atoms
    out = ring_happy(max_ring_size=4).sample(300, seed=0)
    assert out.validity == 1.0 and largest_ring(out.smiles) == 4


# --- likelihood --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask, max_ring", [(True, None), (False, None), (True, 6)])
def test_likelihood_equals_sum_of_incremental_step_log_probs(mask: bool, max_ring: int | None) -> None:
    model = tiny(seed=1, max_ring_size=max_ring)
    batch = batch_of(model, MOLS)
    ll = model.log_likelihood(MOLS, mask=mask)
    res = model._decode(len(MOLS), forced=batch, mask=mask)
    steps = res["logp"].double().numpy()
    assert np.all(steps <= 1e-6)
    np.testing.assert_allclose(steps.sum(1), ll, rtol=1e-5, atol=1e-4)
    L = batch["kind"].shape[1]
    for key in ("kind", "typ", "ptr", "bond"):  # the decoder followed the canonical sequence
        assert torch.equal(res[key][:, :L], batch[key])


def test_sampled_log_prob_matches_likelihood_of_canonical_samples(trained: ARModel) -> None:
    out = trained.sample(200, seed=0, batch_size=200)
    res = trained._decode(200, torch.Generator().manual_seed(0))  # same draws as sample()
    ll = trained.log_likelihood(out.smiles)
    np.testing.assert_allclose(res["logp"].sum(1).numpy(), out.info["log_prob"], rtol=1e-6)
    canonical = 0
    for k, smi in enumerate(out.smiles):
        lin = linearize(smi)
        n = int((res["kind"][k] >= 0).sum()) - 1  # actions before STOP
        drawn = [res[key][k, :n].tolist() for key in ("kind", "ptr", "bond")]
        drawn[1][0] = -1  # the first atom has no parent
        types = [trained.atom_types[i] for i in res["types"][k, :int(res["n_atoms"][k])].tolist()]
        if drawn == [lin.kind.tolist(), lin.ptr.tolist(), lin.bond.tolist()] and \
                types == [code_to_token(c) for c in lin.codes.tolist()]:
            canonical += 1  # the sample was drawn in its canonical order: same log-probability
            assert abs(ll[k] - out.info["log_prob"][k]) < 1e-4 * max(1.0, abs(ll[k]))
    assert canonical >= 20


def test_bad_inputs_give_nan_with_reasons() -> None:
    model = tiny()
    inputs = ["CCO", "not a smiles", "C[SiH3]", "", "CC.O", "ClCCl", Chem.MolFromSmiles("CN")]
    with pytest.warns(UserWarning, match="not scored"):
        ll, reasons = model.log_likelihood(inputs, return_reasons=True)
    assert np.isfinite(ll[[0, 6]]).all() and np.isnan(ll[1:6]).all()
    assert reasons[0] is None and reasons[6] is None
    assert "does not parse" in reasons[1]
    assert "Si" in reasons[2] and "vocabulary" in reasons[2]
    assert "empty" in reasons[3] and "disconnected" in reasons[4] and "Cl" in reasons[5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(model.log_likelihood("CCO")).all()


def test_log_likelihood_takes_a_sample_set_and_mols(trained: ARModel) -> None:
    from molgen.samples import SampleSet

    out = trained.sample(20, seed=3, mask=False)
    out = SampleSet(out.mols + [None], out.smiles + [None])  # one invalid sample for certain
    with pytest.warns(UserWarning, match="not scored"):
        ll, reasons = trained.log_likelihood(out, return_reasons=True)
    assert ll.shape == (21,) and np.isnan(ll[-1]) and "None" in reasons[-1]
    valid = [k for k, m in enumerate(out.mols) if m is not None]
    assert valid and np.isfinite(ll[valid]).all()
    by_smiles = trained.log_likelihood([Chem.MolToSmiles(out.mols[k]) for k in valid])
    np.testing.assert_allclose(ll[valid], by_smiles, rtol=1e-5)
    np.testing.assert_allclose(trained.log_likelihood(Chem.MolFromSmiles("CCO")), trained.log_likelihood("CCO"))
    with pytest.raises(ValueError, match="molecules must be a SMILES string"):
        trained.log_likelihood(42)


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": float("nan")}, r"temperature must be a finite number > 0, got nan"),
    ({"temperature": float("inf")}, r"temperature must be a finite number > 0, got inf"),
    ({"temperature": -1.0}, r"temperature must be a finite number > 0"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0.0"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"top_p": float("nan")}, r"top_p must be in \(0, 1\]"),
    ({"top_k": 0}, r"top_k must be a positive integer \(>= 1\), got 0"),
    ({"top_k": 2.5}, r"top_k must be a positive integer"),
    ({"batch_size": 0}, r"batch_size must be a positive integer \(>= 1\), got 0"),
    ({"batch_size": -1}, r"batch_size must be a positive integer"),
    ({"seed": 2 ** 64}, r"seed must be an integer in \[0, 2\*\*64\)"),
    ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*64\)"),
])
def test_bad_sampling_arguments_give_one_clear_error(kwargs: dict, message: str) -> None:
    model = tiny()
    with pytest.raises(ValueError, match=message) as err:
        model.sample(3, **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("n", [0, -2, 1.5])
def test_bad_sample_count_is_refused(n) -> None:
    with pytest.raises(ValueError, match=r"n must be a positive integer \(>= 1\)"):
        tiny().sample(n)


def test_bad_likelihood_batch_size_is_refused() -> None:
    for bad in (0, -1):  # -1 used to score nothing and return all-NaN silently
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            tiny().log_likelihood(["CCO"], batch_size=bad)


def test_encoding_cache_is_keyed_on_every_smiles(tmp_path, monkeypatch) -> None:
    from molgen.models.ar.encoding import encode_cached

    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path))
    smiles = ["C" * (1 + k % 6) for k in range(2400)]
    first = encode_cached("t", smiles, workers=1, verbose=False)
    edited = list(smiles)
    edited[1] = "CO"  # the old key hashed every 2nd of these SMILES and missed this one
    second = encode_cached("t", edited, workers=1, verbose=False)
    assert len(list((tmp_path / "ar").glob("t-*.npz"))) == 2
    assert code_to_token(int(second.codes[second.atom_ptr[1] + 1])) == "O"
    assert code_to_token(int(first.codes[first.atom_ptr[1] + 1])) == "C"
    monkeypatch.setattr("molgen.models.ar.encoding.encode", lambda *a, **k: pytest.fail("re-encoded a cached set"))
    again = encode_cached("t", edited, workers=1, verbose=False)
    for key in ("codes", "atom_ptr", "kind", "ptr", "bond", "act_ptr", "source"):
        np.testing.assert_array_equal(getattr(again, key), getattr(second, key))


# --- sampling ------------------------------------------------------------------------------------------
def test_tiny_trained_model_samples_only_valid_molecules(trained: ARModel) -> None:
    out = trained.sample(300, seed=0, batch_size=128)
    assert len(out) == 300 and out.validity == 1.0
    assert all(m is not None and m.GetNumAtoms() <= trained.max_atoms for m in out.mols)
    elements = {a.GetSymbol() for m in out.mols for a in m.GetAtoms()}
    assert elements <= {"C", "N", "O", "F"}
    assert len(set(out.smiles) & {canonicalize(s) for s in MOLS}) >= 3  # it learned the data
    raw = trained.sample(300, seed=0, batch_size=128, mask=False)
    assert 0.0 <= raw.validity <= 1.0 and raw.info["mask"] is False


def test_untrained_model_is_valid_only_with_masks() -> None:
    model = tiny(seed=3)
    assert model.sample(200, seed=0).validity == 1.0
    assert model.sample(200, seed=0, mask=False).validity < 1.0


def test_sampling_is_deterministic_given_seed(trained: ARModel) -> None:
    a = trained.sample(50, seed=7, batch_size=25)
    b = trained.sample(50, seed=7, batch_size=25)
    c = trained.sample(50, seed=8, batch_size=25)
    assert a.smiles == b.smiles and a.smiles != c.smiles
    np.testing.assert_array_equal(a.info["log_prob"], b.info["log_prob"])


def test_temperature_top_k_top_p(trained: ARModel) -> None:
    greedy = trained.sample(40, seed=0, top_k=1)
    assert len(set(greedy.smiles)) == 1
    assert set(trained.sample(40, seed=1, top_p=1e-6).smiles) == set(greedy.smiles)
    cold = trained.sample(200, seed=0, temperature=0.3)
    hot = trained.sample(200, seed=0, temperature=2.0)
    assert len(set(cold.smiles)) < len(set(hot.smiles))
    with pytest.raises(ValueError):
        trained.sample(5, temperature=0.0)


def test_filter_keeps_smallest_nucleus() -> None:
    logp = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logp, 1.0, None, 0.75))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(logp, 1.0, 3, None))
    assert kept.tolist() == [[True, True, True, False]]


# --- checkpoints ---------------------------------------------------------------------------------------
def test_save_load_round_trip_gives_identical_likelihoods(trained: ARModel, tmp_path) -> None:
    folder = trained.save_pretrained(tmp_path / "ar")
    loaded = ARModel.from_pretrained(folder)
    assert loaded.config == json.loads(json.dumps(trained.config)) and loaded.atom_types == TYPES
    np.testing.assert_array_equal(loaded.log_likelihood(MOLS), trained.log_likelihood(MOLS))
    assert loaded.sample(30, seed=5).smiles == trained.sample(30, seed=5).smiles


def test_training_step_through_shared_loss_is_finite_and_differentiable() -> None:
    model = tiny()
    loss, logs = model.loss(batch_of(model, MOLS))
    loss.backward()
    assert torch.isfinite(loss) and logs["nll_per_mol"] > 0
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("e_ring"))


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["qm9", "moses"])
def test_shipped_checkpoints_sample_valid_molecules(dataset: str) -> None:
    from molgen.models import load

    model = load("ar", dataset=dataset)
    out = model.sample(500, seed=0)
    assert out.validity == 1.0 and len(set(out.smiles)) > 450
    assert np.isfinite(model.log_likelihood(out.smiles[:50])).all()


@pytest.mark.slow
def test_training_cli_runs_a_few_steps_on_qm9(tmp_path) -> None:
    from molgen.train import main

    out = tmp_path / "ar"
    assert main(["--model", "ar", "--dataset", "qm9", "--max-steps", "3", "--batch-size", "16",
                 "--eval-every", "3", "--out", str(out), "--no-progress"]) == 0
    model = ARModel.from_pretrained(out)
    assert model.max_atoms == 9 and model.sample(20, seed=0).validity == 1.0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["learning_curve"][-1]["validity"] == 1.0


def test_training_setup_sizes_the_model_from_the_data_and_evaluates_it(tmp_path, monkeypatch) -> None:
    from molgen.training import ar as ar_training

    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path))
    splits = {"train": MOLS * 3, "valid": [MOLS[k % 4] for k in range(1000)]}
    monkeypatch.setattr(ar_training, "dataset_smiles", lambda dataset, split: list(splits[split]))
    setup = ar_training.training_setup("qm9", {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}, {})
    model = setup.model
    assert isinstance(model, ARModel) and model.max_atoms == 10 and model.config["d_model"] == 16
    assert set(model.atom_types) == {"C", "N", "O", "F", "N+", "O-"} and len(setup.data) == len(splits["train"])
    assert setup.train_defaults["batch_size"] == 128 and setup.metrics["train_molecules"] == len(splits["train"])
    model.train()
    row = setup.evaluate(model)
    assert model.training and row["validity"] == 1.0 and 0.0 <= row["novelty"] <= 1.0
    assert math.isfinite(row["heldout_nll"]) and row["heldout_nll"] > 0


def test_ring_size_limit_is_settable_saved_and_recorded(tmp_path) -> None:
    model = tiny(seed=3)
    model.max_ring_size = 6
    assert model.config["max_ring_size"] == 6 and model.sample(10, seed=0).info["max_ring_size"] == 6
    model.save_pretrained(tmp_path / "m")
    assert ARModel.from_pretrained(tmp_path / "m").max_ring_size == 6
    model.max_ring_size = None
    assert "max_ring_size" not in model.sample(10, seed=0).info
    with pytest.raises(ValueError, match="max_ring_size must be an integer >= 3"):
        model.max_ring_size = True
