"""Scaffold-constrained generation: parsing, the holding rule, the filter / decode sampler of both
graph models, the AR and VAE constrained decoders, bad input.

Untrained (random) tiny models make arbitrary choices, so they exercise the constraints harder than
trained ones: every sample must be valid, hold the scaffold, and grow only where ``*`` allows. They
rarely draw a ring, so for ring scaffolds "auto" falls back to the constrained decode.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem

from molgen.chem.convert import to_mol
from molgen.chem.scaffold import contains, holds, parse_scaffold
from molgen.models.ar import ARModel
from molgen.models.scaffold_sampling import FILTER_BUDGET, filter_scaffold, sample_with_scaffold
from molgen.models.vae import GraphVAE

TOKENS = ("C", "N", "O", "S", "F", "Cl")
SCAFFOLDS = ["c1ccccc1", "c1ccncc1", "c1ccc2[nH]ccc2c1", "C1CCNCC1", "c1ccc2c(c1)CCN2", "O=C1CCCN1"]
DECORATED = ["*c1ccncc1", "*c1ccc(*)cc1", "C1CC(*)(*)CCN1", "O=C(*)c1ccccc1"]


def tiny_ar(max_atoms: int = 16, tokens: tuple[str, ...] = TOKENS) -> ARModel:
    torch.manual_seed(0)
    return ARModel(atom_types=tokens, max_atoms=max_atoms, d_model=32, n_layers=1, n_heads=2, d_ff=64)


def tiny_vae(max_atoms: int = 16, tokens: tuple[str, ...] = TOKENS) -> GraphVAE:
    torch.manual_seed(0)
    return GraphVAE(atom_types=tokens, max_atoms=max_atoms, latent_dim=8, encoder_hidden=16, encoder_layers=1,
                    decoder_dim=16, decoder_layers=1, decoder_heads=2, sample_batch_size=64)


def grows_only_at_stars(mol: Chem.Mol, scaffold: str) -> bool:
    """Some match of the scaffold in ``mol`` where the unmarked atoms take no new bonds and each
    marked atom's new bonds have a total order of at least its number of '*' (a double bond fills two)."""
    sc = parse_scaffold(scaffold)
    for match in mol.GetSubstructMatches(sc.mol, uniquify=False):
        inside = set(match)
        ok = True
        for k, idx in enumerate(match):
            new = [b for b in mol.GetAtomWithIdx(idx).GetBonds() if b.GetOtherAtomIdx(idx) not in inside]
            order = sum(b.GetValenceContrib(mol.GetAtomWithIdx(idx)) for b in new)
            ok &= order >= sc.stars[k] if sc.stars[k] else not new
        if ok:
            return True
    return False


# --- parsing -------------------------------------------------------------------------------------
def test_parse_marks_the_atoms_bonded_to_a_star() -> None:
    sc = parse_scaffold("*c1ccncc1")
    assert sc.smiles == "c1ccncc1" and sc.marked
    assert sc.stars == (1, 0, 0, 0, 0, 0) and sc.attachable == (True,) + (False,) * 5
    two = parse_scaffold("C(*)(*)C")
    assert two.stars == (2, 0) and two.smiles == "CC"
    plain = parse_scaffold("c1ccc2[nH]ccc2c1")
    assert not plain.marked and all(plain.attachable)


def test_a_star_on_a_bracket_atom_becomes_its_hydrogen() -> None:
    assert parse_scaffold("[n+]1(*)ccccc1").smiles == "c1cc[nH+]cc1"


@pytest.mark.parametrize("text, message", [
    ("c1cc", "does not parse"), ("", "non-empty SMILES"), ("c1ccccc1.C", "several fragments"),
    ("**", "bonded to each other"), ("*", "no atoms besides"),
])
def test_bad_scaffolds_get_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_scaffold(text)
    assert "\n" not in str(info.value)


def test_contains_is_rdkit_substructure_without_hydrogen_counts() -> None:
    assert contains("Cn1ccc2ccccc21", "c1ccc2[nH]ccc2c1")
    assert not contains("Cc1ccncc1", "c1ccc2[nH]ccc2c1")
    assert not contains("not a smiles", "c1ccccc1")


def test_holds_is_contains_for_a_scaffold_without_stars() -> None:
    for smiles in ("Cn1ccc2ccccc21", "Cc1ccncc1", "c1ccc2ccc3[nH]ccc3c2c1", "not a smiles"):
        assert holds(smiles, "c1ccc2[nH]ccc2c1") == contains(smiles, "c1ccc2[nH]ccc2c1")


@pytest.mark.parametrize("smiles, held", [
    ("Cc1ccc(C)cc1", True), ("OCc1ccc(N)cc1", True),
    ("c1cc2ccc1[nH]c1nn(C)nc1s2", True),   # both '*' filled by aromatic bonds of a ring through them
    ("Cc1ccccc1", False),                  # a '*' left empty
    ("Cc1ccc(C)c(C)c1", False),            # a substituent on an unmarked atom
    ("Cc1ccc2ccccc2c1", False),            # a ring fused onto unmarked atoms
    ("Cc1cccc(C)c1", False),               # meta, not para
])
def test_marked_rule_puts_substituents_exactly_at_the_stars(smiles: str, held: bool) -> None:
    assert holds(smiles, "*c1ccc(*)cc1") is held


@pytest.mark.parametrize("scaffold, smiles, held", [
    ("C1CC(*)(*)CCN1", "O=C1CCNCC1", True),      # a bond of order 2 fills two '*'
    ("C1CC(*)(*)CCN1", "CC1(C)CCNCC1", True),
    ("C1CC(*)(*)CCN1", "CC1CCNCC1", False),      # one of the two left empty
    ("C1CC(*)(*)CCN1", "CC1(C)CCN(C)CC1", False),
    ("*C1CCNCC1", "CC1CCNCC1", True),
    ("*C1CCNCC1", "O=C1CCNCC1", False),          # order 2 on one '*': the written hydrogen is gone
    ("*C1CCNCC1", "CC1(C)CCNCC1", False),        # two substituents on one '*'
    ("O=C(*)c1ccccc1", "CNC(=O)c1ccccc1", True),
    ("O=C(*)c1ccccc1", "O=Cc1ccccc1", False),
])
def test_marked_rule_counts_bond_orders_against_the_stars(scaffold: str, smiles: str, held: bool) -> None:
    assert holds(smiles, scaffold) is held


# --- the autoregressive model ----------------------------------------------------------------------
@pytest.mark.parametrize("scaffold", SCAFFOLDS + DECORATED)
def test_ar_decoded_samples_are_valid_and_hold_the_scaffold(scaffold: str) -> None:
    out = tiny_ar().sample(16, seed=3, scaffold=scaffold, scaffold_method="decode")
    mols = [to_mol(m) for m in out]
    assert all(m is not None for m in mols), "valence masks keep every sample valid"
    assert all(holds(m, scaffold) for m in mols)
    assert out.info["scaffold"] == scaffold and out.info["scaffold_missing"] == 0
    if "*" in scaffold:
        assert all(grows_only_at_stars(m, scaffold) for m in mols)
    else:  # untrained weights still grow the scaffold: not every sample is the bare scaffold
        assert len({Chem.MolToSmiles(m) for m in mols}) > 3


def test_ar_scaffold_that_fills_the_model_still_stops() -> None:
    out = tiny_ar(max_atoms=8).sample(16, seed=0, scaffold="*c1ccc(*)cc1", scaffold_method="decode")
    mols = [to_mol(m) for m in out]
    assert all(m is not None and m.GetNumAtoms() == 8 and grows_only_at_stars(m, "*c1ccc(*)cc1") for m in mols)


def test_ar_scaffold_sampling_is_seeded() -> None:
    model = tiny_ar()
    a = model.sample(16, seed=5, scaffold="c1ccncc1").smiles
    assert a == model.sample(16, seed=5, scaffold="c1ccncc1").smiles
    assert a != model.sample(16, seed=6, scaffold="c1ccncc1").smiles


@pytest.mark.parametrize("model", [tiny_ar, tiny_vae])
@pytest.mark.parametrize("text, message", [
    ("c1ccc[se]1", "outside the model's vocabulary|not in this model's vocabulary"),
    ("C" * 30, "at most"),
])
def test_scaffolds_the_model_cannot_build_get_one_line(model, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        model().sample(2, scaffold=text)
    assert "\n" not in str(info.value)


def test_ar_decode_keeps_the_hydrogens_written_on_a_marked_atom() -> None:
    """'*C1CCNCC1': one substituent at that carbon, of order 1 (the decoder caps the new bonds of a
    marked atom at its open '*'), so no sample needs a redraw."""
    out = tiny_ar().sample(32, seed=0, scaffold="*C1CCNCC1", scaffold_method="decode")
    assert all(holds(m, "*C1CCNCC1") for m in out.mols) and out.info["scaffold_redrawn"] == 0


# --- the VAE -------------------------------------------------------------------------------------
def test_vae_decode_keeps_the_hydrogens_written_on_a_marked_atom() -> None:
    """The VAE decoder caps a marked atom's new bonds at its open '*' too: no redraw is needed."""
    out = tiny_vae().sample(32, seed=0, scaffold="*C1CCNCC1", scaffold_method="decode")
    assert all(holds(m, "*C1CCNCC1") for m in out.mols) and out.info["scaffold_redrawn"] == 0


@pytest.mark.parametrize("scaffold", SCAFFOLDS + DECORATED)
def test_vae_decoded_samples_are_valid_and_hold_the_scaffold(scaffold: str) -> None:
    out = tiny_vae().sample(16, seed=3, scaffold=scaffold, scaffold_method="decode")
    mols = [to_mol(m) for m in out]
    assert all(m is not None for m in mols)
    assert all(holds(m, scaffold) for m in mols)
    assert out.info["scaffold_missing"] == 0
    if "*" in scaffold:
        assert all(grows_only_at_stars(m, scaffold) for m in mols)


def test_vae_stars_are_filled_even_when_the_model_would_stop() -> None:
    out = tiny_vae(max_atoms=8).sample(16, seed=1, scaffold="*c1ccc(*)cc1", scaffold_method="decode")
    assert all(grows_only_at_stars(to_mol(m), "*c1ccc(*)cc1") for m in out)


# --- filter, decode and auto ------------------------------------------------------------------------
MODELS = {"ar": tiny_ar, "vae": tiny_vae}
FREQUENT = ["S", "*O*"]  # scaffolds that about a third of the tiny models' unconstrained samples hold


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method, scaffolds", [("auto", FREQUENT + ["c1ccccc1", "*c1ccc(*)cc1"]),
                                               ("filter", FREQUENT), ("decode", FREQUENT)])
def test_every_sample_holds_the_scaffold_in_every_method(model: str, method: str, scaffolds: list[str]) -> None:
    for scaffold in scaffolds:
        out = MODELS[model]().sample(12, seed=1, scaffold=scaffold, scaffold_method=method)
        info = out.info
        assert len(out) == 12 and all(holds(m, scaffold) for m in out.mols), (scaffold, out.smiles)
        assert info["scaffold_method"] == method and info["scaffold_missing"] == 0
        assert info["scaffold_filtered"] + info["scaffold_decoded"] == 12 and info["scaffold_drawn"] <= FILTER_BUDGET * 12
        if method == "decode":
            assert info["scaffold_drawn"] == 0 and info["scaffold_acceptance"] is None
        if method == "filter":
            assert info["scaffold_decoded"] == 0


@pytest.mark.parametrize("model", MODELS)
def test_filter_returns_the_unconstrained_samples_that_hold_the_scaffold(model: str) -> None:
    """The first round is the plain draw of the seed: its holders come first, in order, with their
    log-probabilities; with a one-element vocabulary every sample holds 'C' and filter is the plain draw."""
    free = MODELS[model]().sample(24, seed=2)
    out = MODELS[model]().sample(24, seed=2, scaffold="S", scaffold_method="filter")
    kept = [i for i, m in enumerate(free.mols) if holds(m, "S")]
    assert 0 < len(kept) < 24 and out.smiles[:len(kept)] == [free.smiles[i] for i in kept]
    if model == "ar":
        assert out.info["log_prob"][:len(kept)].tolist() == pytest.approx(free.info["log_prob"][kept].tolist())
    carbon = MODELS[model](tokens=("C",))
    free = carbon.sample(16, seed=4)
    out = carbon.sample(16, seed=4, scaffold="C", scaffold_method="filter")
    assert out.smiles == free.smiles and out.info["scaffold_drawn"] == 16 and out.info["scaffold_acceptance"] == 1.0
    if model == "ar":
        assert out.info["log_prob"].tolist() == pytest.approx(free.info["log_prob"].tolist())


@pytest.mark.parametrize("model", MODELS)
def test_a_rare_scaffold_falls_back_to_the_decoder_or_fails_in_filter_mode(model: str) -> None:
    sampler = MODELS[model]()
    out = sampler.sample(8, seed=0, scaffold="c1ccc2[nH]ccc2c1")
    info = out.info
    assert info["scaffold_method"] == "auto" and info["scaffold_decoded"] > 0 and info["scaffold_drawn"] > 8
    assert info["scaffold_filtered"] + info["scaffold_decoded"] == 8 and info["scaffold_acceptance"] < 0.1
    assert all(holds(m, "c1ccc2[nH]ccc2c1") for m in out.mols)
    with pytest.raises(ValueError, match="too few for 8 within the filter budget") as caught:
        sampler.sample(8, seed=0, scaffold="c1ccc2[nH]ccc2c1", scaffold_method="filter")
    assert "\n" not in str(caught.value)


def test_auto_is_seeded() -> None:
    model = tiny_ar()
    a = model.sample(16, seed=5, scaffold="OS")
    assert a.smiles == model.sample(16, seed=5, scaffold="OS").smiles
    assert a.smiles != model.sample(16, seed=6, scaffold="OS").smiles
    assert a.info["log_prob"].shape == (16,) and bool(np.isfinite(a.info["log_prob"]).all())


def test_auto_puts_the_filtered_samples_first_and_decodes_the_rest() -> None:
    """1 in 100 free draws holds benzene: rounds of 10 and 120 draws keep one, a third round (9 * 132 / 2
    draws) would pass the budget of 500, so the decoder gives the other 9."""
    def free(count: int) -> tuple[list[Chem.Mol], np.ndarray]:
        nonlocal drawn
        index = np.arange(drawn, drawn + count)
        drawn += count
        return [Chem.MolFromSmiles("Cc1ccccc1" if i % 100 == 99 else "CC") for i in index], -index.astype(float)

    def decode(count: int) -> tuple[list[Chem.Mol], np.ndarray]:
        return [Chem.MolFromSmiles("Oc1ccccc1")] * count, np.full(count, 7.0)

    drawn = 0
    mols, logp, info = sample_with_scaffold(10, parse_scaffold("c1ccccc1"), "auto", free, decode)
    assert [Chem.MolToSmiles(m) for m in mols] == ["Cc1ccccc1"] + ["Oc1ccccc1"] * 9
    assert info["scaffold_drawn"] == drawn == 130 and info["scaffold_acceptance"] == 1 / 130
    assert (info["scaffold_filtered"], info["scaffold_decoded"]) == (1, 9)
    assert logp.tolist() == [-99.0] + [7.0] * 9


def _accept_half(count: int) -> tuple[list[Chem.Mol], None]:
    return [Chem.MolFromSmiles("c1ccccc1" if i % 2 else "CC") for i in range(count)], None


def _accept_none(count: int) -> tuple[list[Chem.Mol], None]:
    return [Chem.MolFromSmiles("CC")] * count, None


def test_filter_rounds_draw_the_expected_rest_and_stop_at_the_budget() -> None:
    benzene = parse_scaffold("c1ccccc1")
    kept, logp, drawn, accepted = filter_scaffold(10, _accept_half, benzene, budget=500)
    # round 1: 10 drawn, 5 kept; the rate (5 + 1) / (10 + 2) asks for 10 more, which give the rest
    assert (len(kept), logp, drawn, accepted) == (10, None, 20, 10)
    kept, _, drawn, accepted = filter_scaffold(10, _accept_none, benzene, budget=500)
    # round 1: 10 drawn, none kept: 10 * 12 / 1 = 120 more (130 <= 500); then 10 * 132 = 1,320 would pass 500
    assert (kept, drawn, accepted) == ([], 130, 0)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kwargs, message", [
    ({"scaffold": "S", "scaffold_method": "exact"}, "scaffold_method must be one of auto, filter, decode"),
    ({"scaffold_method": "filter"}, "applies with a scaffold only"),
])
def test_a_bad_scaffold_method_gets_one_line(model: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        MODELS[model]().sample(2, **kwargs)
    assert "\n" not in str(caught.value)


# --- the command line ---------------------------------------------------------------------------
def test_cli_refuses_a_bad_scaffold_before_loading(monkeypatch) -> None:
    from molgen import models
    from molgen.sample import main

    monkeypatch.setattr(models, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    with pytest.raises(ValueError, match="does not parse"):
        main(["--model", "ar", "--scaffold", "c1cc", "-n", "2"])
    with pytest.raises(ValueError, match="--scaffold does not apply to the edm model"):
        main(["--model", "edm", "--scaffold", "c1ccccc1", "-n", "2"])
    with pytest.raises(ValueError, match="--scaffold-method applies with --scaffold only"):
        main(["--model", "ar", "--scaffold-method", "filter", "-n", "2"])
    with pytest.raises(ValueError, match="--scaffold-method must be one of"):
        main(["--model", "ar", "--scaffold", "c1ccccc1", "--scaffold-method", "exact", "-n", "2"])


def test_ar_leaves_room_for_the_stars_of_scaffold_atoms_not_placed_yet() -> None:
    """A '*' on a late scaffold atom: free atoms must not use up the atoms it needs (review repro)."""
    for size in (12, 16):
        out = tiny_ar(max_atoms=size).sample(32, seed=0, scaffold="*c1ccc2cc(*)ccc2c1", scaffold_method="decode")
        assert all(grows_only_at_stars(to_mol(m), "*c1ccc2cc(*)ccc2c1") for m in out)
