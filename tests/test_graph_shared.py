"""The pieces the AR and VAE graph models share: the attention block with its KV-cache step, the one
masked log-softmax and the seeded draws, the canonical atom order, the model contract, the configs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem

from molgen.chem.order import canonical_bfs_order, canonical_ranks
from molgen.nn.sampling import gumbel_draw, masked_choice, masked_log_softmax
from molgen.nn.transformer import BiasedBlock

#: The molecules of tests/test_autoregressive.py and tests/test_vae.py.
AR_MOLS = ["CCO", "c1ccccc1O", "CC(=O)[O-]", "C1CC2CC1C2", "N#CC(N)C=O", "[NH3+]CC([O-])=O", "OC1COC1",
           "CC1(C)CN1", "C#CC#N", "FC(F)(F)c1ccncc1", "C12C3C4C1C5C2C3C45", "O=C1NC(=O)C=C1"]
VAE_MOLS = ["CCO", "c1ccccc1", "CC(=O)N", "N#CC1CC1", "OC1COC1", "FC(F)F", "C[NH3+]", "CC(=O)[O-]"]


# --- the attention block --------------------------------------------------------------------------
def test_kv_cache_step_equals_the_full_forward_pass():
    torch.manual_seed(0)
    block = BiasedBlock(16, 2, 32).eval()
    b, length = 3, 7
    x = torch.randn(b, length, 16)
    bias = torch.randn(b, 2, length, length) + torch.full((length, length), float("-inf")).triu(1)
    full = block(x, bias)
    cache = [torch.zeros(b, 2, length, 8), torch.zeros(b, 2, length, 8)]
    steps = [block.step(x[:, p:p + 1], bias[:, :, p:p + 1, :p + 1], cache, p) for p in range(length)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-6)


def test_old_parameter_names_of_the_ar_block_load_into_the_shared_block():
    torch.manual_seed(0)
    block = BiasedBlock(8, 2, 16)
    renamed = {"ln1.": "norm1.", "ln2.": "norm2.", "proj.": "out.", "ff.": "mlp."}
    old = {}
    for key, value in block.state_dict().items():
        for legacy, new in renamed.items():
            if key.startswith(new):
                key = legacy + key[len(new):]
        old[key] = value.clone() + 1.0
    fresh = BiasedBlock(8, 2, 16)
    fresh.load_state_dict(old, strict=True)
    torch.testing.assert_close(fresh.qkv.weight, block.qkv.weight + 1.0)
    torch.testing.assert_close(fresh.out.bias, block.out.bias + 1.0)
    torch.testing.assert_close(fresh.mlp[2].weight, block.mlp[2].weight + 1.0)


# --- one masked log-softmax, seeded draws ---------------------------------------------------------
def test_both_models_use_the_one_masked_log_softmax():
    from molgen.models.ar import decode, model
    from molgen.models.vae import decoder
    from molgen.nn import sampling

    assert model.masked_log_softmax is decode.masked_log_softmax is decoder.masked_log_softmax
    assert decoder.masked_log_softmax is sampling.masked_log_softmax


def test_allowed_entries_are_normalised_and_the_rest_impossible():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]])
    allowed = torch.tensor([[True, False, True], [True, True, True]])
    out = masked_log_softmax(logits, allowed)
    assert out[0, 1] == float("-inf")
    torch.testing.assert_close(out[0, [0, 2]], torch.log_softmax(logits[0, [0, 2]], -1))
    torch.testing.assert_close(out[1], torch.log_softmax(logits[1], -1))


def test_a_row_with_nothing_allowed_is_impossible_not_nan_and_has_zero_gradient():
    logits = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    allowed = torch.tensor([[False, False], [True, False]])
    out = masked_log_softmax(logits, allowed)
    assert not out.isnan().any()
    assert torch.isinf(out[0]).all() and (out[0] < 0).all()  # probability 0 for every choice
    assert out[1, 0] == 0.0
    # a caller that selects the impossible row away (padding, finished molecules) gets finite gradients
    picked = torch.where(torch.tensor([False, True]), out[:, 0], torch.zeros(2))
    picked.sum().backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[0] == 0).all()


def test_masked_choice_reports_the_masked_log_probability_and_follows_its_generator():
    torch.manual_seed(0)
    logits = torch.randn(64, 5)
    allowed = torch.rand(64, 5) > 0.3
    allowed[:, 0] = True
    a, lp_a = masked_choice(logits, allowed, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)  # the global RNG plays no part
    b, lp_b = masked_choice(logits, allowed, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(lp_a, lp_b)
    assert allowed.gather(1, a[:, None]).all()
    torch.testing.assert_close(lp_a, masked_log_softmax(logits, allowed).gather(1, a[:, None])[:, 0])
    greedy, _ = masked_choice(logits, allowed, greedy=True)
    assert torch.equal(greedy, logits.masked_fill(~allowed, float("-inf")).argmax(-1))


def test_gumbel_draw_keeps_to_the_filtered_support():
    logp = torch.log_softmax(torch.tensor([[3.0, 2.0, 1.0, 0.0]]).expand(500, -1), -1)
    top2 = gumbel_draw(logp, torch.Generator().manual_seed(0), top_k=2)
    assert set(top2.tolist()) == {0, 1}
    again = gumbel_draw(logp, torch.Generator().manual_seed(0), top_k=2)
    assert torch.equal(top2, again)


# --- the canonical atom order ---------------------------------------------------------------------
def _old_ar_order(mol: Chem.Mol) -> list[int]:
    """The autoregressive encoding's order before chem.order: renumber by rank, kekulise, BFS."""
    ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=True))
    by_rank = np.argsort(ranks)
    m = Chem.RenumberAtoms(mol, by_rank.tolist())
    Chem.Kekulize(m, clearAromaticFlags=True)
    adj = Chem.GetAdjacencyMatrix(m, useBO=True)
    nbrs = [np.flatnonzero(row).tolist() for row in adj]
    order, seen = [0], {0}
    for a in order:
        for nb in nbrs[a]:
            if nb not in seen:
                seen.add(nb)
                order.append(nb)
    return by_rank[order].tolist()


def _old_vae_order(mol: Chem.Mol) -> list[int]:
    """The VAE featuriser's order before chem.order: kekulise in input numbering, rank, BFS."""
    kek = Chem.Mol(mol)
    Chem.Kekulize(kek, clearAromaticFlags=True)
    by_rank = np.argsort(list(Chem.CanonicalRankAtoms(mol, breakTies=True)))
    adjacency = Chem.GetAdjacencyMatrix(kek, useBO=True)[np.ix_(by_rank, by_rank)] > 0
    bfs, seen = [0], {0}
    for i in bfs:
        for nb in np.flatnonzero(adjacency[i]).tolist():
            if nb not in seen:
                seen.add(nb)
                bfs.append(nb)
    return by_rank[bfs].tolist()


def _assert_same_orders(smiles: list[str]) -> int:
    checked = 0
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        if mol is None or len(Chem.GetMolFrags(mol)) > 1:
            continue
        new = canonical_bfs_order(mol).tolist()
        assert sorted(new) == list(range(mol.GetNumAtoms())), s
        assert new == _old_ar_order(mol) == _old_vae_order(mol), s
        checked += 1
    return checked


def test_the_canonical_order_is_the_old_order_of_both_models_on_the_test_molecules():
    extra = ["C1=CC=CC=C1", "c1ccc2ccccc2c1", "O=[N+]([O-])c1ccccc1", "C", "CC(C)(C)C"]
    assert _assert_same_orders(AR_MOLS + VAE_MOLS + extra) == len(AR_MOLS + VAE_MOLS + extra)


def test_the_canonical_order_is_the_old_order_of_both_models_on_moses():
    from molgen.datasets import dataset_smiles

    try:
        smiles = dataset_smiles("moses", "test")
    except (FileNotFoundError, OSError) as exc:
        pytest.skip(f"MOSES is not installed: {exc}")
    picked = [smiles[k] for k in np.random.default_rng(0).choice(len(smiles), 2000, replace=False)]
    assert _assert_same_orders(picked) == 2000


def test_the_order_does_not_depend_on_how_the_smiles_is_written():
    a, b = Chem.MolFromSmiles("OCc1ccccc1N"), Chem.MolFromSmiles("Nc1ccccc1CO")
    sym = lambda m: [m.GetAtomWithIdx(int(i)).GetSymbol() for i in canonical_bfs_order(m)]  # noqa: E731
    assert sym(a) == sym(b)
    assert canonical_bfs_order(a)[0] == canonical_ranks(a)[0]


# --- the model contract ---------------------------------------------------------------------------
def _tiny_models():
    from molgen.models.ar import ARModel
    from molgen.models.vae import GraphVAE

    torch.manual_seed(0)
    types = ("C", "N", "O", "F", "N+", "O-")
    return [ARModel(atom_types=types, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_atoms=16),
            GraphVAE(atom_types=types, max_atoms=9, latent_dim=16, encoder_hidden=32, encoder_layers=2,
                     decoder_dim=32, decoder_layers=2, decoder_heads=2, sample_batch_size=256)]


@pytest.mark.parametrize("index", [0, 1], ids=["ar", "vae"])
def test_sample_and_likelihood_keep_the_training_mode_and_the_global_rng(index):
    from molgen import SampleSet

    model = _tiny_models()[index].train()
    torch.manual_seed(7)
    state = torch.get_rng_state()
    out = model.sample(5, seed=3)
    ll = model.log_likelihood(["CCO", "c1ccccc1O"])
    assert model.training
    assert torch.equal(torch.get_rng_state(), state)
    assert isinstance(out, SampleSet) and len(out) == 5
    assert isinstance(ll, np.ndarray) and ll.dtype == np.float64 and ll.shape == (2,)
    model.eval()
    model.sample(2, seed=3)
    assert not model.training


# --- per-dataset defaults -------------------------------------------------------------------------
def test_per_dataset_sizes_come_from_the_configs():
    from molgen.training.setups import default_config, trainable_datasets

    assert trainable_datasets("ar") == ["moses", "qm9"] and trainable_datasets("vae") == ["moses", "qm9"]
    ar = default_config("ar", "moses")
    assert ar["model"] == {"d_model": 256, "n_layers": 4, "n_heads": 8, "d_ff": 1024}
    assert ar["train"]["batch_size"] == 1024 and ar["train"]["lr"] == 7e-4
    vae = default_config("vae", "qm9")
    assert vae["model"]["beta"] == 0.05 and vae["model"]["decoder_mlp_ratio"] == 2
    assert vae["train"] == {"batch_size": 128, "lr": 1e-3, "ema_decay": 0.995, "checkpoint_every": 500,
                            "eval_every": 1000, "log_every": 50}
    with pytest.raises(ValueError, match="choose from moses, qm9"):
        default_config("ar", "zinc")
