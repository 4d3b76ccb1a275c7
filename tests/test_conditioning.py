"""Conditional generation p(x | y) for the autoregressive model: the condition embedding, classifier-free
guidance, condition dropout in training, and the checks on what users ask for."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import Crippen

from molgen.models.ar import ARModel
from molgen.models.ar.encoding import ActionDataset, encode
from molgen.models.conditioning import closest_to_request, parse_condition_args
from molgen.training.conditions import ConditionedData, check_names, condition_stats

STATS = {"logp": {"mean": 1.0, "std": 1.5, "p01": -2.0, "p99": 4.0},
         "qed": {"mean": 0.5, "std": 0.2, "p01": 0.1, "p99": 0.9}}


def tiny(**kw) -> ARModel:
    torch.manual_seed(0)
    cfg = dict(atom_types=("C", "N", "O"), max_atoms=9, d_model=32, n_layers=1, n_heads=2, d_ff=64,
               conditions=("logp", "qed"), condition_stats=STATS)
    return ARModel(**{**cfg, **kw})


def randomise_condition(model: ARModel) -> ARModel:
    torch.manual_seed(1)
    for p in model.cond_encoder.parameters():
        torch.nn.init.normal_(p)
    return model


def test_a_new_condition_embedding_leaves_the_model_unconditional() -> None:
    model = tiny()
    plain = model.sample(12, seed=0).smiles
    assert model.sample(12, seed=0, condition={"logp": 2.0}).smiles == plain
    assert model.sample(12, seed=0, condition={"logp": 2.0}, guidance=3.0).smiles == plain


def test_condition_and_guidance_change_the_samples_and_are_recorded() -> None:
    model = randomise_condition(tiny())
    plain = model.sample(24, seed=0).smiles
    cond = model.sample(24, seed=0, condition={"logp": 2.0})
    guided = model.sample(24, seed=0, condition={"logp": 2.0}, guidance=3.0)
    assert cond.smiles != plain and guided.smiles != cond.smiles
    assert guided.info["condition"] == {"logp": 2.0} and guided.info["guidance"] == 3.0
    assert all(m is not None for m in guided), "valence masks hold under guidance"
    with_scaffold = model.sample(8, seed=0, condition={"qed": 0.5}, guidance=2.0, scaffold="C1CC1")
    assert all(Chem.MolFromSmiles(s).HasSubstructMatch(Chem.MolFromSmiles("C1CC1")) for s in with_scaffold.smiles)


def test_teacher_forcing_and_the_sampler_agree_under_a_condition() -> None:
    model = randomise_condition(tiny()).eval()
    data = ActionDataset(encode(["CCO", "c1ccncc1", "CC(=O)NC"]), model.atom_types, model.max_atoms, model.max_actions)
    batch = data.batch(np.arange(3))
    batch["cond"] = torch.tensor([[2.0, 0.0], [0.5, 0.7], [0.0, 0.3]])
    batch["cond_mask"] = torch.tensor([[True, False], [True, True], [False, True]])
    teacher = model._teacher(batch, valence=True).sum(1)
    vecs = model.cond_encoder(batch["cond"], batch["cond_mask"])
    for i in range(3):
        one = {k: v[i:i + 1] for k, v in batch.items()}
        res = model._decode(1, None, True, forced=one, cond=vecs[i])
        assert torch.allclose(res["logp"].sum(), teacher[i], atol=1e-4)


@pytest.mark.parametrize("condition, message", [
    ({"mw": 300.0}, "unknown condition 'mw'.*choose from logp, qed"),
    ({"logp": "high"}, "must be a finite number"),
    ({"logp": float("nan")}, "must be a finite number"),
])
def test_bad_conditions_get_one_line(condition, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        tiny().sample(2, condition=condition)
    assert "\n" not in str(info.value)


def test_a_value_outside_the_training_range_warns_with_the_range() -> None:
    with pytest.warns(UserWarning, match=r"logp=9 is outside the training range -2 to 4"):
        tiny().sample(2, condition={"logp": 9.0})


def test_a_model_trained_without_conditions_says_so() -> None:
    with pytest.raises(ValueError, match="trained without conditions"):
        tiny(conditions=(), condition_stats=None).sample(2, condition={"logp": 1.0})


def test_best_of_k_keeps_the_candidate_closest_to_the_request_in_std_units() -> None:
    # logP: CCO -0.0014, CCCC 1.81, CCCCCC 2.59, c1ccccc1 1.69, OCC(O)CO -1.67, CCCCCCCC 3.37
    smiles = ["CCO", "CCCC", "CCCCCC", "CCCCCCCC", "c1ccccc1", "OCC(O)CO"]
    values = np.array([Crippen.MolLogP(Chem.MolFromSmiles(s)) for s in smiles]).reshape(2, 3)
    for target in (-1.0, 1.75, 3.0):
        keep = closest_to_request(smiles, 3, {"logp": target}, STATS)
        assert keep.tolist() == (np.abs(values - target).argmin(1) + [0, 3]).tolist()
    assert closest_to_request(smiles, 3, {"logp": 3.0}, STATS).tolist() == [2, 3], "the closest, not the first"
    mols = [Chem.MolFromSmiles(s) for s in ("CCCCCCCC", "CCO")]
    assert closest_to_request([None, "C1CC", mols[1]], 3, {"logp": 3.0}, STATS).tolist() == [2], "invalid ones lose"
    assert closest_to_request([None, None], 2, {"logp": 3.0}, STATS).tolist() == [0]
    # two properties, each in its own std: at (logP 0, QED 0.43) CCO (logP -0.001, QED 0.407) is the closer in
    # raw units (0.02 against 0.58) but CCOC(C)=O (0.569, 0.438) is the closer in stds (10 for logP, 0.01 for QED)
    stats = {"logp": {"mean": 0.0, "std": 10.0}, "qed": {"mean": 0.5, "std": 0.01}}
    assert closest_to_request(["CCO", "CCOC(C)=O"], 2, {"logp": 0.0, "qed": 0.43}, stats).tolist() == [1]
    assert closest_to_request(["CCO", "CCOC(C)=O"], 2, {"logp": 0.0, "qed": 0.43}, STATS).tolist() == [0]
    with pytest.raises(ValueError, match="RDKit's exact values, which gap are not") as info:
        closest_to_request(smiles, 3, {"gap": 300.0}, {"gap": {"mean": 0.0, "std": 1.0}})
    assert "\n" not in str(info.value)


def test_sampling_with_candidates_keeps_the_best_of_each_k_draws() -> None:
    model = randomise_condition(tiny())
    request = {"logp": 2.0}
    plain = model.sample(8, seed=0, condition=request, guidance=2.0)
    same = model.sample(8, seed=0, condition=request, guidance=2.0, candidates=1)
    assert same.smiles == plain.smiles and np.array_equal(same.info["log_prob"], plain.info["log_prob"])
    assert same.info["candidates"] == 1
    out = model.sample(8, seed=0, condition=request, guidance=2.0, candidates=4)
    draws = model.sample(32, seed=0, condition=request, guidance=2.0)  # the same stream: the 32 candidates
    keep = closest_to_request(draws.mols, 4, request, STATS)
    assert out.smiles == [draws.smiles[i] for i in keep] and out.info["candidates"] == 4
    assert np.array_equal(out.info["log_prob"], draws.info["log_prob"][keep]), "each kept sample's own log_prob"
    logp = np.array([Crippen.MolLogP(m) for m in draws.mols]).reshape(8, 4)
    kept = np.array([Crippen.MolLogP(m) for m in out.mols])
    assert np.allclose(np.abs(kept - 2.0), np.abs(logp - 2.0).min(1)), "the closest of each four"
    assert np.abs(kept - 2.0).mean() < np.abs(logp[:, 0] - 2.0).mean()


@pytest.mark.parametrize("kw, message", [
    ({"candidates": 2}, "candidates applies with a condition only"),
    ({"candidates": 0, "condition": {"logp": 1.0}}, "candidates must be a positive integer, got 0"),
    ({"candidates": 2.5, "condition": {"logp": 1.0}}, "candidates must be a positive integer"),
])
def test_bad_candidates_get_one_line(kw, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        tiny().sample(2, **kw)
    assert "\n" not in str(info.value)


def test_cli_condition_arguments() -> None:
    assert parse_condition_args(["logp=3.5", "qed=0.8"]) == {"logp": 3.5, "qed": 0.8}
    for bad in (["logp"], ["logp=x"], ["=1"], ["logp=1", "logp=2"]):
        with pytest.raises(ValueError):
            parse_condition_args(bad)
    with pytest.raises(ValueError, match="choose|distinct names from"):
        check_names(["logp", "colour"])


def test_condition_dropout_is_seeded_by_the_batch_and_masks_missing_values() -> None:
    smiles = ["CCO", "CCCC", "c1ccncc1", "CC(=O)N"] * 8
    data = ActionDataset(encode(smiles), ("C", "N", "O"), 9, 18)
    values = np.array([[Crippen.MolLogP(Chem.MolFromSmiles(s)), np.nan if i % 5 == 0 else 0.5]
                       for i, s in enumerate(smiles)])
    cd = ConditionedData(data, values)
    idx = np.arange(32)
    a, b = cd.batch(idx), cd.batch(idx)
    assert torch.equal(a["cond_mask"], b["cond_mask"]) and torch.equal(a["cond"], b["cond"])
    assert not a["cond_mask"][::5, 1].any(), "a missing value is never presented"
    assert 0 < a["cond_mask"].float().mean() < 0.7
    stats = condition_stats(values, ("logp", "qed"))
    assert stats["qed"]["mean"] == pytest.approx(0.5) and stats["logp"]["p01"] < stats["logp"]["p99"]


def test_a_conditional_model_learns_to_follow_its_condition() -> None:
    """Two molecules with far-apart logP: after a short fit the condition picks which one comes out."""
    hydrophobic, polar = "CCCCCCCC", "OCC(O)CO"
    smiles = [hydrophobic, polar] * 32
    logp = np.array([[Crippen.MolLogP(Chem.MolFromSmiles(s))] for s in smiles])
    stats = condition_stats(logp, ("logp",))
    model = tiny(conditions=("logp",), condition_stats=stats)
    data = ConditionedData(ActionDataset(encode(smiles), model.atom_types, model.max_atoms, model.max_actions), logp)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(150):
        loss, _ = model.loss(data.batch(rng.choice(len(data), 32)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        high = model.sample(40, seed=0, condition={"logp": float(logp.max())}).smiles
        low = model.sample(40, seed=0, condition={"logp": float(logp.min())}).smiles
    assert high.count(hydrophobic) > 30 and low.count(polar) > 30


def test_the_cli_lists_conditions_and_picks_the_shipped_conditional_checkpoint(capsys) -> None:
    from molgen.sample import main

    assert main(["--list-conditions"]) == 0
    listing = capsys.readouterr().out
    assert "ar-qm9-cond: logp " in listing and "ar-qm9: no conditions" in listing
    assert main(["--model", "ar", "--dataset", "qm9", "--condition", "logp=1.0", "--guidance", "2", "-n", "4",
                 "--no-progress", "--device", "cpu"]) == 0
    assert len(capsys.readouterr().out.split()) == 4
    with pytest.raises(ValueError, match="unknown condition 'colour'.*choose from logp, qed"):
        main(["--model", "ar", "--condition", "colour=1", "-n", "2"])
    with pytest.raises(ValueError, match="--guidance applies with --condition only"):
        main(["--model", "ar", "--guidance", "2", "-n", "2"])
    assert main(["--model", "ar", "--dataset", "qm9", "--condition", "logp=1.0", "--candidates", "3", "-n", "4",
                 "--no-progress", "--device", "cpu"]) == 0
    assert len(capsys.readouterr().out.split()) == 4
    with pytest.raises(ValueError, match="--candidates applies with --condition only"):
        main(["--model", "ar", "--candidates", "2", "-n", "2"])
