"""Chemistry core: bonds from geometry (EDM's tables), stability, building and canonical SMILES."""
import numpy as np
import pytest
from rdkit import Chem

from molgen.chem.build import is_connected, largest_fragment, mol_from_3d, mol_from_graph, sanitize
from molgen.chem.convert import canonicalize, to_smiles
from molgen.chem.geometry import bond_orders, stability

H, C, N, O, F = 1, 6, 7, 8, 9

# Hand-built geometries (Angstrom).
ACETYLENE = ([H, C, C, H], [[-1.66, 0, 0], [-0.60, 0, 0], [0.60, 0, 0], [1.66, 0, 0]])
HCN = ([H, C, N], [[-1.066, 0, 0], [0, 0, 0], [1.156, 0, 0]])
_HX, _HY = 0.67 + 1.087 * np.cos(np.radians(58.7)), 1.087 * np.sin(np.radians(58.7))
ETHYLENE = ([C, C, H, H, H, H], [[-0.67, 0, 0], [0.67, 0, 0], [-_HX, _HY, 0], [-_HX, -_HY, 0],
                                 [_HX, _HY, 0], [_HX, -_HY, 0]])
WATER = ([O, H, H], [[0, 0, 0], [0.757, 0.586, 0], [-0.757, 0.586, 0]])
_T = 1.09 / np.sqrt(3)
METHANE = ([C, H, H, H, H], [[0, 0, 0], [_T, _T, _T], [_T, -_T, -_T], [-_T, _T, -_T], [-_T, -_T, _T]])


def _pair(z1: int, z2: int, d: float) -> int:
    return int(bond_orders(np.array([z1, z2]), np.array([[0.0, 0, 0], [d, 0, 0]]))[0, 1])


@pytest.mark.parametrize("d, expected", [
    (1.65, 0), (1.63, 1),      # single: d < 154 + 10 pm
    (1.395, 1), (1.385, 2),    # double: d < 134 + 5 pm
    (1.235, 2), (1.225, 3),    # triple: d < 120 + 3 pm
])
def test_carbon_carbon_bond_order_follows_edm_margins(d, expected):
    assert _pair(C, C, d) == expected


def test_pairs_missing_from_the_tables_never_bond():
    assert _pair(11, C, 1.0) == 0  # Na-C has no reference length
    assert _pair(F, F, 1.42) == 1 and _pair(F, F, 1.30) == 1  # F-F has no double bond


def test_bond_orders_of_acetylene_include_the_triple_bond():
    order = bond_orders(np.array(ACETYLENE[0]), np.array(ACETYLENE[1]))
    expected = np.array([[0, 1, 0, 0], [1, 0, 3, 0], [0, 3, 0, 1], [0, 0, 1, 0]])
    np.testing.assert_array_equal(order, expected)
    st = stability(np.array(ACETYLENE[0]), order)
    assert (st.n_atoms, st.n_stable, st.molecule_stable, st.charge_aware_stable) == (4, 4, True, True)


@pytest.mark.parametrize("mol, smiles", [(ACETYLENE, "C#C"), (HCN, "C#N"), (ETHYLENE, "C=C"),
                                         (WATER, "O"), (METHANE, "C")])
def test_hand_built_geometries_give_the_expected_molecule(mol, smiles):
    z, x = np.array(mol[0]), np.array(mol[1])
    assert stability(z, bond_orders(z, x)).molecule_stable
    assert to_smiles(sanitize(mol_from_3d(z, x))) == smiles


def test_bond_orders_are_invariant_to_rotation_translation_and_permutation():
    z, x = np.array(ETHYLENE[0]), np.array(ETHYLENE[1], dtype=float)
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    perm = rng.permutation(z.size)
    moved = (x @ q.T + rng.normal(size=3))[perm]
    np.testing.assert_array_equal(bond_orders(z[perm], moved), bond_orders(z, x)[np.ix_(perm, perm)])


def _nitromethane_orders() -> tuple[np.ndarray, np.ndarray]:
    """CH3-N(=O)-O as a Kekule graph: N has 4 bonds, the single-bonded O has 1."""
    z = np.array([C, N, O, O, H, H, H])
    order = np.zeros((7, 7), dtype=int)
    for i, j, o in [(0, 1, 1), (1, 2, 2), (1, 3, 1), (0, 4, 1), (0, 5, 1), (0, 6, 1)]:
        order[i, j] = order[j, i] = o
    return z, order


def test_charged_molecule_is_unstable_for_edm_but_stable_when_charges_are_allowed():
    z, order = _nitromethane_orders()
    st = stability(z, order)
    assert (st.n_atoms, st.n_stable) == (7, 5)  # N (valence 4) and O (valence 1) fail EDM's check
    assert not st.molecule_stable
    assert st.charge_aware_stable  # N+ and O- balance


def test_charge_aware_stability_requires_a_neutral_total():
    z = np.array([N, H, H, H, H])  # NH4 alone would be a cation
    order = np.zeros((5, 5), dtype=int)
    order[0, 1:] = order[1:, 0] = 1
    st = stability(z, order)
    assert st.n_stable == 4 and not st.charge_aware_stable


def test_mol_from_graph_keeps_charges_and_sanitizes():
    z, order = _nitromethane_orders()
    mol = sanitize(mol_from_graph(z, order, charges=[0, 1, 0, -1, 0, 0, 0]))
    assert to_smiles(mol) == "C[N+](=O)[O-]"
    assert sanitize(mol_from_graph(z, order)) is None  # uncharged, N has valence 4


def test_sanitize_rejects_pentavalent_carbon_without_raising():
    z = np.array([C, F, F, F, F, F])
    order = np.zeros((6, 6), dtype=int)
    order[0, 1:] = order[1:, 0] = 1
    raw = mol_from_graph(z, order)
    assert sanitize(raw) is None
    assert raw.GetNumAtoms() == 6  # the input is not modified


def test_largest_fragment_and_connectivity():
    mol = Chem.MolFromSmiles("O.CCO.[Na+]")
    assert not is_connected(mol)
    assert to_smiles(largest_fragment(mol)) == "CCO"
    assert is_connected(Chem.MolFromSmiles("CCO"))


@pytest.mark.parametrize("variants, expected", [
    (["OCC", "C(O)C", "[CH3][CH2][OH]", "CCO"], "CCO"),
    (["c1ccccc1", "C1=CC=CC=C1", "C1C=CC=CC=1"], "c1ccccc1"),
    (["C/C=C/C", "C/C=C\\C", "CC=CC"], "CC=CC"),          # non-isomeric: stereo dropped
    (["[O-][N+](=O)C", "C[N+]([O-])=O"], "C[N+](=O)[O-]"),
])
def test_duplicates_written_differently_collapse_to_one_to_smiles(variants, expected):
    assert {canonicalize(s) for s in variants} == {expected}


def test_canonicalize_returns_none_for_bad_smiles():
    assert canonicalize("C1CC") is None
    assert canonicalize("") is None
    assert canonicalize("C(C)(C)(C)(C)C") is None
