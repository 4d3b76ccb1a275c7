"""FCD through ChemNet: agreement with the fcd package, limits, reference statistics and caching."""
import math

import fcd as fcd_package
import numpy as np
import pytest
import torch
from fcd.utils import SmilesDataset
from rdkit import Chem
from scipy import linalg

from molgen.metrics import fcd as F

from conftest import DRUGS as _ALL_DRUGS

DRUGS = _ALL_DRUGS[:20]
ALKANES = ["C" * n for n in range(2, 22)] + ["CC(C)" * n + "C" for n in range(1, 6)]


@pytest.fixture(scope="module")
def drug_stats():
    return F.chemnet_stats(DRUGS)


@pytest.fixture(scope="module")
def alkane_stats():
    return F.chemnet_stats(ALKANES)


def test_activations_match_the_fcd_package():
    smiles = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in DRUGS[:8] + ["CCl.[Na+]", "C[Si](C)(C)OCBr"]]
    # fcd's own route: its SmilesDataset encoding, then its ChemNet (as fcd.get_predictions does)
    dataset = SmilesDataset(smiles)
    batch = torch.from_numpy(np.stack([dataset[i] for i in range(len(dataset))])).float()
    with torch.no_grad():
        expected = fcd_package.load_ref_model()(batch.transpose(1, 2)).numpy()
    ours = F.chemnet_activations(smiles, canonicalize=False, device="cpu")
    assert ours.shape == (10, 512) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_smiles_are_canonicalised_and_mols_accepted():
    a = F.chemnet_activations(["OCC", "c1ccccc1O"])
    b = F.chemnet_activations([Chem.MolFromSmiles("CCO"), "Oc1ccccc1"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_very_long_smiles_does_not_change_the_others():
    alone = F.chemnet_activations(DRUGS[:2])
    with_long = F.chemnet_activations(DRUGS[:2] + ["C" * 400])
    np.testing.assert_allclose(with_long[:2], alone, atol=1e-6)


def test_fcd_of_a_set_with_itself_is_zero(drug_stats):
    assert abs(F.frechet_distance(drug_stats, drug_stats)) < 1e-3
    assert F.fcd_score(DRUGS, ref_stats=drug_stats) == pytest.approx(1.0, abs=1e-3)


def test_fcd_of_different_sets_is_positive(drug_stats, alkane_stats):
    value = F.fcd(DRUGS, ref_stats=alkane_stats)
    assert value > 10.0  # drug-like molecules vs plain alkanes are far apart
    assert value == pytest.approx(F.frechet_distance(drug_stats, alkane_stats), rel=1e-9)
    assert F.fcd_score(DRUGS, ref_stats=alkane_stats) == pytest.approx(math.exp(-0.2 * value), rel=1e-9)


def test_frechet_distance_matches_the_sqrtm_formula():
    rng = np.random.default_rng(0)
    stats = []
    for _ in range(2):
        a = rng.standard_normal((48, 200))
        stats.append((rng.standard_normal(48), a @ a.T / 200))  # full rank, 48-dim
    # fcd's formula, through scipy's general matrix square root
    diff = stats[0][0] - stats[1][0]
    covmean = np.trace(linalg.sqrtm(stats[0][1] @ stats[1][1])).real
    expected = diff @ diff + np.trace(stats[0][1]) + np.trace(stats[1][1]) - 2 * covmean
    assert F.frechet_distance(stats[0], stats[1]) == pytest.approx(expected, rel=1e-10)
    # one-dimensional case by hand: (1 - 3)^2 + 4 + 9 - 2 * sqrt(4 * 9) = 5
    assert F.frechet_distance((np.array([1.0]), np.array([[4.0]])),
                              (np.array([3.0]), np.array([[9.0]]))) == pytest.approx(5.0)


def test_reference_statistics_give_the_same_fcd(drug_stats, alkane_stats):
    assert alkane_stats[0].shape == (512,) and alkane_stats[1].shape == (512, 512)
    assert F.fcd(ALKANES, ref_smiles=DRUGS) == pytest.approx(F.frechet_distance(alkane_stats, drug_stats), rel=1e-9)


def test_fcd_needs_exactly_one_reference_and_valid_input(drug_stats):
    with pytest.raises(ValueError):
        F.fcd(DRUGS)
    with pytest.raises(ValueError):
        F.fcd(DRUGS, ref_smiles=DRUGS, ref_stats=drug_stats)
    with pytest.raises(ValueError, match="invalid molecule"):
        F.fcd(DRUGS + ["C1CC"], ref_smiles=DRUGS)
    with pytest.raises(ValueError, match="at least 2"):
        F.chemnet_stats(["CCO"])


def test_cpu_is_used_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert F._device(None) == torch.device("cpu")
