"""GuacaMol KL score and distribution-learning scores: hand-checked KL values and set identities."""
import math

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import AllChem

from molgen.metrics import guacamol as G

from conftest import DRUGS as _ALL_DRUGS

DRUGS = _ALL_DRUGS


def test_discrete_kl_by_hand():
    # bins from the reference [0, 1] in 10 steps: P = (1/2, 1/2), Q = (3/4, 1/4) on the end bins
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert G.discrete_kl([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(expected, rel=1e-6)
    assert G.discrete_kl([0, 1, 2, 3], [0, 1, 2, 3]) == 0.0


def test_continuous_kl_is_zero_for_equal_samples_and_grows_with_a_shift():
    x = np.random.default_rng(0).normal(size=300)
    assert G.continuous_kl(x, x) == pytest.approx(0.0, abs=1e-12)
    small, large = G.continuous_kl(x, x + 0.2), G.continuous_kl(x, x + 1.0)
    assert 0.0 < small < large
    # two unit Gaussians one sd apart: KL = 1/2; KDE smoothing widens both, so a bit less
    assert 0.3 < large < 0.55


def test_descriptors_of_ethanol_and_benzene():
    d = G.physchem_descriptors(["CCO", "c1ccccc1"])
    names = G.CONTINUOUS_DESCRIPTORS + G.DISCRETE_DESCRIPTORS
    ethanol, benzene = dict(zip(names, d[0])), dict(zip(names, d[1]))
    assert ethanol["MolWt"] == pytest.approx(46.069, abs=1e-3)
    assert ethanol["TPSA"] == pytest.approx(20.23, abs=1e-2)
    assert (ethanol["NumHDonors"], ethanol["NumHAcceptors"], ethanol["NumAromaticRings"]) == (1, 1, 0)
    assert benzene["MolWt"] == pytest.approx(78.114, abs=1e-3)
    assert (benzene["TPSA"], benzene["NumAromaticRings"], benzene["NumAliphaticRings"]) == (0, 1, 0)


def test_nearest_neighbour_similarity_excludes_self():
    fp = [AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(s), 2, nBits=4096) for s in ("CCO", "CCCO")]
    t = DataStructs.TanimotoSimilarity(*fp)
    np.testing.assert_allclose(G.nearest_neighbour_similarity(["CCO", "CCCO"]), [t, t], rtol=1e-6)
    np.testing.assert_allclose(G.nearest_neighbour_similarity(["CCO", "OCC", "CCCO"]), [1, 1, t], rtol=1e-6)


def test_kl_score_of_a_set_against_itself_is_one():
    assert G.kl_score(DRUGS, DRUGS) == pytest.approx(1.0, abs=1e-9)
    reference = G.kl_reference(DRUGS)
    assert G.kl_score(DRUGS[::-1], reference) == pytest.approx(1.0, abs=1e-9)


def test_kl_score_drops_for_a_different_distribution():
    others = ["C" * n + "O" for n in range(1, 12)] + ["CC(C)" * n + "N" for n in range(1, 8)]
    kls = G.kl_divergences(others, DRUGS)
    assert set(kls) == set(G.CONTINUOUS_DESCRIPTORS + G.DISCRETE_DESCRIPTORS) | {"internal_similarity"}
    # no alcohol/amine has an aromatic ring, and every drug has one: nothing in the reference bins
    assert kls["NumAromaticRings"] == math.inf
    assert G.discrete_kl([1, 2, 3], [0, 0]) == math.inf
    assert G.kl_score(others, DRUGS) < 0.6


def test_random_subset_is_guacamols_seeded_draw():
    items = [f"item{i}" for i in range(50)]
    expected = np.random.RandomState(42).choice(np.array(items), 10, replace=False).tolist()
    assert G.random_subset(items, 10, seed=42) == expected
    with pytest.raises(ValueError):
        G.random_subset(items, 51)


def test_guacamol_ratios_by_hand():
    gen = ["CCO", "OCC", "xx", "C[C@H](N)O", "CC(N)O", "c1ccccc1"]
    scores = G.guacamol_scores(gen, ["OCC"] + DRUGS, n_reference=10, include_fcd=False)
    assert scores["validity"] == pytest.approx(5 / 6)
    # without stereo: CCO, CCO, CC(N)O, CC(N)O, c1ccccc1 -> 3 distinct of 5 valid
    assert scores["uniqueness"] == pytest.approx(3 / 5)
    # 4 distinct canonical SMILES; stereo-free {CC(N)O, c1ccccc1} are not in training
    assert scores["novelty"] == pytest.approx(2 / 4)
    assert 0.0 <= scores["kl_score"] <= 1.0
    assert "fcd" not in scores


def test_guacamol_scores_of_the_training_set_itself():
    scores = G.guacamol_scores(DRUGS, DRUGS, n_reference=len(DRUGS))
    assert scores["validity"] == scores["uniqueness"] == 1.0
    assert scores["novelty"] == 0.0
    assert scores["kl_score"] == pytest.approx(1.0, abs=1e-9)
    assert abs(scores["fcd"]) < 1e-3 and scores["fcd_score"] == pytest.approx(1.0, abs=1e-3)


def test_a_generated_set_without_spread_scores_zero_on_that_term_instead_of_raising() -> None:
    import math

    import numpy as np

    from molgen.metrics.guacamol import continuous_kl

    ref = np.random.default_rng(0).normal(size=200)
    assert continuous_kl(ref, np.array([0.5, 0.5, 0.5])) == math.inf
    assert continuous_kl(ref, np.array([0.5])) == math.inf
    assert math.isfinite(continuous_kl(ref, ref[:50]))
