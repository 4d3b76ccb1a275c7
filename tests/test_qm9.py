"""QM9: the fixed split, loading from the cache, statistics computed from the data."""
from pathlib import Path

import numpy as np
import pytest

from molgen.datasets import qm9

SPLIT_FILE = Path(__file__).resolve().parents[1] / "molgen" / "data" / "qm9_split.npz"


def test_split_sizes_are_edms():
    split = qm9.make_split()
    assert {k: v.size for k, v in split.items()} == {"train": 100_000, "valid": 17_748, "test": 13_083}


def test_split_parts_are_disjoint_and_cover_every_molecule():
    split = qm9.make_split()
    joined = np.concatenate([split["train"], split["valid"], split["test"]])
    np.testing.assert_array_equal(np.sort(joined), np.arange(qm9.N_MOLECULES))
    assert all(np.all(np.diff(v) > 0) for v in split.values())  # sorted, no repeats


def test_committed_split_file_equals_make_split():
    with np.load(SPLIT_FILE) as f:
        stored = {k: f[k] for k in ("train", "valid", "test")}
    fresh = qm9.make_split()
    for k in stored:
        np.testing.assert_array_equal(stored[k], fresh[k])
    for k in stored:
        np.testing.assert_array_equal(qm9.indices(k), fresh[k])


def test_make_split_depends_on_the_seed_and_rejects_other_sizes():
    assert not np.array_equal(qm9.make_split(seed=1)["test"], qm9.make_split()["test"])
    with pytest.raises(ValueError, match="130831"):
        qm9.make_split(n=100)


def test_unknown_split_name_lists_the_choices():
    with pytest.raises(ValueError, match="train, valid, test, all"):
        qm9.indices("training")


@pytest.fixture(scope="module")
def arrays() -> qm9.QM9Arrays:
    return qm9.load_qm9_arrays()


def test_loaded_arrays_are_consistent(arrays):
    assert len(arrays) == qm9.N_MOLECULES
    assert arrays.ptr[0] == 0 and arrays.ptr[-1] == arrays.z.size == arrays.pos.shape[0]
    assert arrays.props.shape == (qm9.N_MOLECULES, len(qm9.PROPERTIES))
    assert set(np.unique(arrays.z).tolist()) == {1, 6, 7, 8, 9}
    assert arrays.n_atoms.min() == 3 and arrays.n_atoms.max() == 29
    # QM9's first molecules: methane, ammonia, water.
    assert arrays.smiles[:3].tolist() == ["C", "N", "O"]
    z, x = arrays.molecule(0)
    assert z.tolist() == [6, 1, 1, 1, 1]
    d = np.linalg.norm(x[1:] - x[0], axis=1)
    np.testing.assert_allclose(d, 1.09, atol=0.01)  # C-H bond lengths in Angstrom


def test_qm9_smiles_follow_the_split(arrays):
    test = qm9.qm9_smiles("test")
    assert len(test) == 13_083
    assert test[:5] == arrays.smiles[qm9.indices("test")[:5]].tolist()


def test_statistics_are_computed_from_the_data(arrays):
    stats = qm9.statistics("valid")
    idx = qm9.indices("valid")
    counts = arrays.n_atoms[idx]
    np.testing.assert_array_equal(stats.atom_count_hist, np.bincount(counts))
    assert stats.atom_count_hist.sum() == idx.size
    z = np.concatenate([arrays.z[arrays.ptr[i]:arrays.ptr[i + 1]] for i in idx])
    assert stats.atom_type_counts == {s: int((z == n).sum()) for s, n in zip("HCNOF", (1, 6, 7, 8, 9))}
    assert stats.charge_counts == {0: z.size}
    np.testing.assert_allclose(stats.atom_count_probs().sum(), 1.0)


def test_heavy_atom_statistics_drop_hydrogens(arrays):
    stats = qm9.statistics("test", heavy_only=True)
    assert set(stats.atom_type_counts) == {"C", "N", "O", "F"}
    assert stats.atom_count_hist.size == 10  # at most 9 heavy atoms in QM9
    assert stats.atom_count_hist.sum() == 13_083


def test_processed_qm9_is_rebuilt_only_when_the_raw_content_changes(tmp_path, monkeypatch):
    import os

    from molgen._cache import digest_files, file_stamp

    raw = tmp_path / "qm9_part1.csv"
    raw.write_text("Index,SMILES\n1,C\n")
    monkeypatch.setattr(qm9, "raw_files", lambda: [raw])
    processed = tmp_path / "qm9.npz"
    np.savez(processed, version=qm9._CACHE_VERSION, raw_digest=digest_files([raw]), raw_stamp=file_stamp([raw]))

    def stale() -> bool:
        with np.load(processed) as f:
            return qm9._is_stale(f)

    assert not stale()
    os.utime(raw, ns=(1, 1))  # touched, same content: kept
    assert not stale()
    raw.write_text("Index,SMILES\n1,CC\n")  # edited: rebuilt
    assert stale()
