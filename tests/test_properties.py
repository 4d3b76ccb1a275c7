"""Per-molecule properties and their distribution distances."""
import numpy as np
import pytest
from rdkit import Chem

from molgen.metrics import properties as P

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
PARACETAMOL = "CC(=O)Nc1ccc(O)cc1"


def test_known_values_of_aspirin_and_paracetamol():
    aspirin, paracetamol = Chem.MolFromSmiles(ASPIRIN), Chem.MolFromSmiles(PARACETAMOL)
    assert P.qed(aspirin) == pytest.approx(0.550, abs=1e-3)  # Bickerton et al. 2012
    assert P.qed(paracetamol) == pytest.approx(0.595, abs=1e-3)
    assert P.mol_weight(aspirin) == pytest.approx(180.159, abs=1e-3)
    assert P.logp(aspirin) == pytest.approx(1.3101, abs=1e-4)
    assert P.sa_score(aspirin) == pytest.approx(1.58, abs=0.01)


def test_sa_score_is_low_for_benzene_and_high_for_a_crowded_cage():
    assert P.sa_score(Chem.MolFromSmiles("c1ccccc1")) == pytest.approx(1.0)
    cage = Chem.MolFromSmiles("C[C@]12C[C@@H]3C[C@@H](C1)[C@@]1(C)C[C@H]3C[C@H]2C1")
    assert P.sa_score(cage) > 5.0


def test_property_table_accepts_smiles_and_mols():
    table = P.property_table([ASPIRIN, Chem.MolFromSmiles(PARACETAMOL)])
    assert list(table) == ["QED", "SA", "logP", "weight"]
    assert all(v.shape == (2,) and v.dtype == np.float64 for v in table.values())
    assert table["weight"][1] == pytest.approx(151.165, abs=1e-3)


def test_property_distances_by_hand():
    same = P.property_distances([ASPIRIN, PARACETAMOL], [PARACETAMOL, ASPIRIN])
    assert all(v == 0.0 for v in same.values())
    # single molecules: the Wasserstein distance is the difference of the two values
    d = P.property_distances(["C"], ["CC"])
    assert d["weight"] == pytest.approx(30.070 - 16.043, abs=1e-3)
    assert d["logP"] == pytest.approx(abs(1.0262 - 0.6361), abs=1e-4)
    precomputed = P.property_table(["CC"])
    assert P.property_distances(["C"], precomputed) == d


def test_invalid_smiles_raise():
    with pytest.raises(ValueError):
        P.property_table(["CCO", "C(("])
