"""MOSES set metrics: hand-checked values, MOSES conventions, block-wise Tanimoto, caching."""
import math

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import AllChem

from molgen.datasets import moses as moses_data
from molgen.metrics import moses as M

from conftest import DRUGS as _ALL_DRUGS

DRUGS = _ALL_DRUGS[:16]


def rdkit_tanimoto(a: str, b: str, n_bits: int = 1024) -> float:
    fa, fb = (AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(s), 2, nBits=n_bits) for s in (a, b))
    return DataStructs.TanimotoSimilarity(fa, fb)


def have_moses_files() -> bool:
    return all((moses_data.moses_dir() / name).is_file() for name in ("mcf.csv", "wehi_pains.csv", "test.csv.gz"))


needs_moses = pytest.mark.skipif(not have_moses_files(),
                                 reason="MOSES files not fetched; run `python -m molgen.datasets.moses fetch`")


# --- fingerprints and Tanimoto -----------------------------------------------------------------

def test_morgan_fingerprints_match_rdkit_bit_vectors():
    packed = M.morgan_fingerprints(DRUGS[:3])
    assert packed.shape == (3, 128) and packed.dtype == np.uint8
    for row, smiles in zip(packed, DRUGS[:3]):
        expected = np.array(AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(smiles), 2, nBits=1024))
        np.testing.assert_array_equal(np.unpackbits(row), expected)


def test_tanimoto_of_hand_made_bit_vectors():
    bits = np.zeros((4, 16), dtype=bool)
    bits[0, [0, 1]] = True          # {0, 1}
    bits[1, [0, 2]] = True          # {0, 2}: |{0}| / |{0, 1, 2}| = 1/3 with row 0
    bits[2, [0, 1, 2, 3]] = True    # superset of row 0: 2/4
    # row 3 is empty: 0/0 counts as 1 (MOSES), x/empty as 0
    t = M.tanimoto_matrix(bits, bits)
    assert t[0, 1] == pytest.approx(1 / 3)
    assert t[0, 2] == pytest.approx(0.5)
    assert t[3, 3] == 1.0 and t[0, 3] == 0.0
    assert M.tanimoto_matrix(bits[3:], bits[3:], empty=0.0)[0, 0] == 0.0


def test_tanimoto_of_a_known_pair_matches_rdkit():
    a, b = "CC(=O)Nc1ccc(O)cc1", "c1ccccc1O"
    t = M.tanimoto_matrix(M.morgan_fingerprints([a]), M.morgan_fingerprints([b]))[0, 0]
    assert t == pytest.approx(rdkit_tanimoto(a, b), abs=1e-6)
    assert t == pytest.approx(7 / 23, abs=1e-6)  # 7 shared of 23 distinct bits (RDKit 2024+)


def test_blockwise_tanimoto_equals_one_full_matrix(monkeypatch):
    rng = np.random.default_rng(0)
    a = rng.random((23, 64)) < 0.2
    b = rng.random((17, 64)) < 0.2
    full = M.tanimoto_matrix(a, b)
    from molgen.metrics import fingerprints

    monkeypatch.setattr(fingerprints, "_ROWS_PER_BLOCK", 5)
    monkeypatch.setattr(fingerprints, "_COLS_PER_BLOCK", 4)
    np.testing.assert_array_equal(M.tanimoto_matrix(a, b), full)
    np.testing.assert_allclose(M.max_tanimoto(a, b), full.max(axis=1), rtol=1e-6)
    self_sim = M.tanimoto_matrix(a, a)
    np.fill_diagonal(self_sim, 0.0)
    np.testing.assert_allclose(M.max_tanimoto(a, a, exclude_self=True), self_sim.max(axis=1), rtol=1e-6)


def test_fingerprint_formats_are_interchangeable():
    packed = M.morgan_fingerprints(DRUGS)
    bits01 = np.unpackbits(packed, axis=1)  # uint8 0/1, 1024 wide (MOSES' own format)
    assert M.snn(DRUGS[:4], bits01) == pytest.approx(M.snn(DRUGS[:4], packed))
    with pytest.raises(ValueError):
        M.snn(DRUGS[:4], packed[:, :100])


# --- SNN and IntDiv ----------------------------------------------------------------------------

def test_snn_of_a_set_against_itself_is_one():
    assert M.snn(DRUGS, DRUGS) == pytest.approx(1.0)


def test_snn_is_mean_of_nearest_neighbour_similarity():
    gen = ["CC(=O)Nc1ccc(O)cc1", "CCO"]
    ref = ["c1ccccc1O", "CCN", "CC(=O)Nc1ccccc1"]
    expected = np.mean([max(rdkit_tanimoto(g, r) for r in ref) for g in gen])
    assert M.snn(gen, ref) == pytest.approx(expected, abs=1e-6)
    assert M.snn([Chem.MolFromSmiles(s) for s in gen], M.moses_reference(ref)) == pytest.approx(expected, abs=1e-6)


def test_internal_diversity_of_identical_molecules_is_zero():
    assert M.internal_diversity(["c1ccccc1O"] * 5) == 0.0
    assert M.internal_diversity(["c1ccccc1O"] * 5, p=2) == 0.0


def test_internal_diversity_of_two_molecules_by_hand():
    a, b = "CC(=O)Nc1ccc(O)cc1", "c1ccccc1O"
    t = rdkit_tanimoto(a, b)
    # ordered pairs (a,a) (a,b) (b,a) (b,b): mean T = (2 + 2t) / 4
    assert M.internal_diversity([a, b]) == pytest.approx(1 - (1 + t) / 2, abs=1e-6)
    # MOSES' p = 2: per-molecule sqrt(mean_j T^2), then averaged
    assert M.internal_diversity([a, b], p=2) == pytest.approx(1 - math.sqrt((1 + t * t) / 2), abs=1e-6)


# --- Frag and Scaf -----------------------------------------------------------------------------

def test_brics_fragments_of_paracetamol():
    assert M.fragment_counts(["CC(=O)Nc1ccc(O)cc1"]) == {"[1*]C(C)=O": 1, "[5*]N[5*]": 1, "[16*]c1ccc(O)cc1": 1}


def test_cosine_similarity_by_hand():
    assert M.cosine_similarity({"a": 1, "b": 1}, {"a": 1}) == pytest.approx(1 / math.sqrt(2))
    assert M.cosine_similarity({"a": 2, "b": 0}, {"a": 5}) == pytest.approx(1.0)
    assert math.isnan(M.cosine_similarity({}, {"a": 1}))


def test_frag_similarity_of_a_set_with_itself_is_one():
    assert M.frag_similarity(DRUGS, DRUGS) == pytest.approx(1.0)
    assert M.frag_similarity(DRUGS[:3], DRUGS[3:6]) < 1.0


def test_scaffolds_with_fewer_than_two_rings_are_dropped():
    assert M.scaffold_counts(["CCc1ccccc1", "CCCC"]) == {}
    assert M.scaffold_counts(["CCc1ccc2ccccc2c1", "Cc1ccc(-c2ccccc2)cc1", "OCc1ccc(-c2ccccc2)cc1"]) == {
        "c1ccc2ccccc2c1": 1, "c1ccc(-c2ccccc2)cc1": 2}
    # a one-ring molecule contributes nothing: the similarity is unchanged by adding it
    base = M.scaffold_similarity(["Cc1ccc(-c2ccccc2)cc1"], ["c1ccc2ccccc2c1", "c1ccc(-c2ccccc2)cc1"])
    assert base == pytest.approx(1 / math.sqrt(2))
    assert M.scaffold_similarity(["Cc1ccc(-c2ccccc2)cc1", "CCc1ccccc1"],
                                 ["c1ccc2ccccc2c1", "c1ccc(-c2ccccc2)cc1"]) == pytest.approx(base)
    assert math.isnan(M.scaffold_similarity(["CCc1ccccc1"], DRUGS))


# --- unique@k and novelty ----------------------------------------------------------------------

def test_unique_at_k_uses_canonical_smiles():
    smiles = ["CCO", "OCC", "CCN"]
    assert M.unique_at_k(smiles, 3) == pytest.approx(2 / 3)
    assert M.unique_at_k(smiles, 2) == pytest.approx(1 / 2)
    with pytest.warns(UserWarning):
        assert M.unique_at_k(smiles, 10) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        M.unique_at_k(["CCO", "C1"], 2)


def test_invalid_smiles_are_rejected():
    with pytest.raises(ValueError, match="invalid molecule"):
        M.snn(["CCO", "not a smiles"], DRUGS)


# --- Filters (need the fetched MOSES filter lists) -----------------------------------------------

@needs_moses
@pytest.mark.parametrize("smiles, passes", [
    ("CC(=O)Nc1ccc(O)cc1", True),
    ("O=C1NC(=S)SC1=Cc1ccccc1", False),     # PAINS ene_rhod
    ("C[N+](C)(C)Cc1ccccc1", False),        # charged
    ("O=C([O-])c1ccccc1", False),           # charged
    ("C1CCCCCCC1", False),                  # ring of 8
    ("C1CCCCCC1", True),                    # ring of 7 is fine
    ("CCP(C)C", False),                     # P is not allowed
    ("CCC=O", False),                       # MCF7 aldehyde
    ("c1ccccc1N=Nc1ccccc1", False),         # MCF11 acyclic N=N
])
def test_filters(smiles, passes):
    assert M.passes_filters(smiles) is passes


@needs_moses
@pytest.mark.parametrize("smiles, reason", [
    ("CC(=O)Nc1ccc(O)cc1", None),
    ("C1CCCCCCCC1", "ring of 9 atoms"),
    ("C[N+](C)(C)Cc1ccccc1", "formal charge"),
    ("CCP(C)C", "atom P"),
    ("CCC=O", "MCF MCF7"),                   # aldehyde
    ("O=C1NC(=S)SC1=Cc1ccccc1", "PAINS ene_rhod_A(235)"),
])
def test_filter_failure_names_the_rule(smiles, reason):
    assert M.filter_failure(smiles) == reason
    assert M.passes_filters(smiles) is (reason is None)


@needs_moses
def test_filters_pass_rate_on_moses_test_set_is_one():
    # MOSES built its sets from molecules that pass these filters
    test = moses_data.load_moses("test")[:200]
    assert M.filters_pass_rate(test) == 1.0
    assert M.filters_pass_rate(test[:3] + ["O=C1NC(=S)SC1=Cc1ccccc1"]) == pytest.approx(0.75)


# --- reference statistics and caching ----------------------------------------------------------

def test_moses_reference_arrays_round_trip():
    ref = M.moses_reference(DRUGS)
    again = M.MosesReference.from_arrays(ref.to_arrays())
    np.testing.assert_array_equal(again.fingerprints, ref.fingerprints)
    assert again.fragments == ref.fragments and again.scaffolds == ref.scaffolds
    assert M.frag_similarity(DRUGS[:5], again) == pytest.approx(M.frag_similarity(DRUGS[:5], DRUGS))
