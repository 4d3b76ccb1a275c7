"""Validity, uniqueness, novelty and stability on hand-checked molecules, with exact fractions."""
import math

import numpy as np
import pytest
from rdkit import Chem

from molgen.chem.convert import mols_from_3d
from molgen.chem.geometry import has_clash
from molgen.metrics.core import (edm_metrics, graph_metrics, largest_fragment_smiles, novelty, stability_2d,
                                 stability_3d, to_canonical, uniqueness, validity, validity_connected)
from molgen.references import training_smiles

# Hand-checked SMILES: what each one is and whether it is valid / connected / stable.
VALID = "CCO"
PENTAVALENT_C = "C(C)(C)(C)(C)C"      # invalid: carbon with five bonds
CHARGED = "C[N+](=O)[O-]"             # valid, connected, stable with charges
DISCONNECTED = "CC(=O)[O-].[Na+]"     # valid, two fragments
AROMATIC = "c1ccc2ccccc2c1"           # valid (naphthalene)
BAD_AROMATIC = "c1cccc1"              # invalid: cannot be kekulised
SAME_AS_VALID = "OCC"                 # the same molecule as VALID, written differently
BATCH = [VALID, PENTAVALENT_C, CHARGED, DISCONNECTED, AROMATIC, BAD_AROMATIC, SAME_AS_VALID, None]


def test_validity_counts_sanitisable_molecules_fragments_allowed():
    assert validity(BATCH) == 5 / 8
    assert validity_connected(BATCH) == 4 / 8


def test_validity_accepts_mols_and_does_not_modify_them():
    raw = Chem.MolFromSmiles("C(F)(F)(F)(F)F", sanitize=False)  # pentavalent, built without checks
    mols = [Chem.MolFromSmiles(VALID), raw, None]
    assert validity(mols) == 1 / 3
    assert raw.GetNumAtoms() == 6


def test_uniqueness_collapses_duplicates_written_differently():
    # Valid: CCO, CHARGED, DISCONNECTED, AROMATIC, OCC (= CCO): 4 distinct of 5 valid.
    assert uniqueness(BATCH) == 4 / 5
    assert uniqueness(["c1ccccc1", "C1=CC=CC=C1", "C/C=C/C", "C/C=C\\C"]) == 2 / 4
    assert uniqueness(["CCO", "CCO", None], canonical=True) == 1 / 2


def test_novelty_against_training_canonical_smiles():
    training = {"CCO", "c1ccc2ccccc2c1"}
    # Distinct valid: CCO, CHARGED, DISCONNECTED, AROMATIC -> 2 of 4 not in training.
    assert novelty(BATCH, training) == 2 / 4
    assert novelty(["OCC"], ["CCO"]) == 0.0


def test_fractions_of_empty_or_all_invalid_sets_are_nan():
    assert math.isnan(validity([]))
    assert math.isnan(uniqueness([None, "C1CC"]))
    assert math.isnan(novelty([None], {"C"}))


def test_to_canonical_largest_fragment():
    assert to_canonical([DISCONNECTED, PENTAVALENT_C, "C/C=C/C"]) == ["CC(=O)[O-].[Na+]", None, "CC=CC"]
    assert to_canonical([DISCONNECTED], largest_fragment=True) == ["CC(=O)[O-]"]


def test_stability_2d_is_charge_and_aromaticity_aware():
    out = stability_2d([CHARGED, AROMATIC, "[CH3]", "C[CH2+]", PENTAVALENT_C, None])
    # Heavy atoms: 4 (nitromethane, all stable with their charges) + 10 (naphthalene, Kekule
    # valences all 4) + 1 (methyl radical: unstable) + 2 (ethyl cation: the C+ with 3 bonds is
    # unstable). The unparsable SMILES and None have no atoms; they count as unstable molecules.
    assert out["atom_stability"] == 15 / 17
    assert out["molecule_stability"] == 2 / 6


def test_stability_2d_checks_unsanitisable_mols_as_built():
    raw = Chem.MolFromSmiles("C(F)(F)(F)(F)F", sanitize=False)
    assert stability_2d([raw]) == {"atom_stability": 5 / 6, "molecule_stability": 0.0}


# --- 3D --------------------------------------------------------------------------------------
_T = 1.09 / np.sqrt(3)
METHANE = (np.array([6, 1, 1, 1, 1]),
           np.array([[0, 0, 0], [_T, _T, _T], [_T, -_T, -_T], [-_T, _T, -_T], [-_T, -_T, _T]]))
WATER = (np.array([8, 1, 1]), np.array([[0, 0, 0], [0.757, 0.586, 0], [-0.757, 0.586, 0]]))
# Methane with a fluorine 1.40 A from the carbon: five bonds, C unstable, RDKit rejects it.
PENTA = (np.append(METHANE[0], 9), np.vstack([METHANE[1], -1.40 / np.sqrt(3) * np.ones(3)]))
# Methane and water 10 A apart: valid, two fragments, largest fragment is methane (5 atoms).
APART = (np.concatenate([METHANE[0], WATER[0]]), np.vstack([METHANE[1], WATER[1] + [10.0, 0, 0]]))
# Water moved and rotated: a duplicate of WATER written differently.
_R = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
WATER_MOVED = (WATER[0][[2, 0, 1]], (WATER[1] @ _R.T + [3.0, -1.0, 2.0])[[2, 0, 1]])
# Two hydrogens on top of each other.
CLASH = (np.array([8, 1, 1, 1]), np.vstack([WATER[1], WATER[1][1:2]]))
# Sodium has no bond lengths in EDM's tables.
SODIUM = (np.array([11, 17]), np.array([[0, 0, 0], [2.4, 0, 0]]))
MOLS_3D = [METHANE, WATER, PENTA, APART, WATER_MOVED, CLASH, SODIUM]


def test_stability_3d_exact_fractions():
    zs, xs = zip(*MOLS_3D)
    out = stability_3d(zs, xs)
    # Stable atoms: 5 + 3 + 5 (PENTA: all but C) + 8 + 3 + 1 (CLASH: O) + 0 = 25 of 5+3+6+8+3+4+2 = 31.
    assert out["atom_stability"] == 25 / 31
    assert out["molecule_stability"] == 4 / 7
    assert out["molecule_stability_charged"] == 4 / 7


def test_edm_metrics_on_hand_built_geometries():
    zs, xs = zip(*MOLS_3D)
    out = edm_metrics(zs, xs, training={"O"})
    # Valid: METHANE, WATER, APART (largest fragment "C"), WATER_MOVED -> SMILES C, O, C, O.
    assert out["validity"] == 4 / 7
    assert out["validity_connected"] == 3 / 7
    assert out["uniqueness"] == 2 / 4
    assert out["valid_and_unique"] == 2 / 7
    assert out["novelty"] == 1 / 2
    mols = mols_from_3d(zs, xs)
    assert largest_fragment_smiles(mols) == ["C", "O", None, "C", "O", None, None]
    assert mols[0].GetConformer().Is3D()


def test_graph_metrics_without_training_set_has_no_novelty():
    out = graph_metrics([None], [None])
    assert "novelty" not in out and out["validity"] == 0.0 and math.isnan(out["uniqueness"])


def test_has_clash_threshold():
    assert has_clash(CLASH[1])
    assert not has_clash(WATER[1])
    assert not has_clash(np.zeros((1, 3)))


def test_mismatched_3d_inputs_raise():
    with pytest.raises(ValueError, match="2 atom-type arrays for 1"):
        stability_3d([WATER[0], WATER[0]], [WATER[1]])


def test_training_smiles_rejects_unknown_names():
    with pytest.raises(ValueError, match="qm9, moses"):
        training_smiles("zinc")
