"""Graph VAE: featurisation, KL, masked decoding, overfitting, likelihood bounds, latent tools, I/O."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from rdkit import Chem

from molgen.chem.elements import max_valence, parse_token, token_name
from molgen.models import load, model_class
from molgen.models.vae import GraphTable, GraphVAE, featurize, gaussian_kl, scan_atom_tokens
from molgen.models.vae import featurization as vae_featurize
from molgen.models.vae import table as vae_table

TOKENS = ("C", "N", "O", "F", "N+", "O-")
MOLECULES = ["CCO", "c1ccccc1", "CC(=O)N", "N#CC1CC1", "OC1COC1", "FC(F)F", "C[NH3+]", "CC(=O)[O-]"]


def tiny(**kw) -> GraphVAE:
    torch.manual_seed(0)
    cfg = dict(atom_types=TOKENS, max_atoms=9, latent_dim=16, encoder_hidden=32, encoder_layers=2,
               decoder_dim=32, decoder_layers=2, decoder_heads=2, sample_batch_size=256)
    return GraphVAE(**{**cfg, **kw})


def canon(s: str) -> str:
    return Chem.MolToSmiles(Chem.MolFromSmiles(s), isomericSmiles=False)


@pytest.fixture(scope="module")
def overfit() -> GraphVAE:
    """A tiny VAE trained to memorise MOLECULES (a few seconds on a CPU)."""
    model = tiny(beta=0.01, kl_warmup_steps=100)
    table = GraphTable(MOLECULES, TOKENS, 9)
    batch = table.batch(np.arange(len(MOLECULES)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(1)
    model.train()
    for _ in range(500):
        loss, logs = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["nll"] < 1.0, logs
    return model.eval()


# --- tokens and featurisation -------------------------------------------------------------------
def test_tokens_round_trip_and_valence_caps():
    assert [token_name(*parse_token(t)) for t in ("C", "N+", "O-", "Fe+2")] == ["C", "N+", "O-", "Fe+2"]
    assert parse_token("O-") == ("O", -1)
    assert [max_valence(t) for t in ("C", "N", "N+", "O", "O-", "F", "S", "C-")] == [4, 3, 4, 2, 1, 1, 6, 3]
    with pytest.raises(ValueError, match="malformed"):
        parse_token("c1")


def test_scan_atom_tokens_counts_heavy_atoms_from_text():
    counts, largest = scan_atom_tokens(["[NH3+]CC(=O)[O-]", "c1cc[nH]c1", "[H]OC([2H])Cl"])
    assert counts == {"N+": 1, "C": 7, "O": 2, "O-": 1, "N": 1, "Cl": 1}
    assert largest == 5


def test_featurize_is_independent_of_input_atom_order():
    a, b = featurize("OCC(N)=O", TOKENS, 9), featurize("NC(=O)CO", TOKENS, 9)
    assert not isinstance(a, str) and not isinstance(b, str)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1][np.lexsort(a[1].T[::-1])], b[1][np.lexsort(b[1].T[::-1])])
    assert a[2] == b[2]
    # BFS order: every atom after the first bonds to an earlier one
    nodes, edges, _ = a
    assert set(range(1, len(nodes))) == set(edges[:, 0].tolist()) | set()
    assert (edges[:, 0] > edges[:, 1]).all()


def test_featurize_kekulises_and_keeps_charges_and_hydrogens():
    nodes, edges, _ = featurize("c1ccc[nH]1", TOKENS, 9)
    assert sorted(edges[:, 2].tolist()) == [1, 1, 1, 2, 2]          # Kekulé orders
    assert nodes[:, 2].all() and edges[:, 3].all()                  # aromatic flags kept for the encoder
    nodes, _, _ = featurize("C[NH3+]", TOKENS, 9)
    assert sorted(nodes[:, 0].tolist()) == [0, TOKENS.index("N+")] and sorted(nodes[:, 1].tolist()) == [3, 3]


@pytest.mark.parametrize("smiles, reason", [
    ("C1CC", "cannot parse"), ("", "cannot parse"), ("CCS", "not in this model's vocabulary"),
    ("C.O", "disconnected"), ("CCCCCCCCCC", "at most 9"), ("[CH2]C", "radical"), ("C[NH2+]", "radical"),
])
def test_featurize_gives_reasons(smiles, reason):
    result = featurize(smiles, TOKENS, 9)
    assert isinstance(result, str) and reason in result


def test_collate_builds_consistent_encoder_and_decoder_tensors():
    table = GraphTable(["CC=O", "C1CC1", "bad"], TOKENS, 9)
    batch = table.batch(np.arange(3))
    assert batch["atoms"].shape == (2, 3) and batch["n_atoms"].tolist() == [3, 3]
    bonds = batch["bonds"]
    assert torch.equal(bonds, bonds.transpose(1, 2))
    assert bonds.sum().item() == 2 * (1 + 2) + 2 * 3
    assert batch["edge_index"].shape == (2, 2 * 5) and batch["x"].shape == (6, 4)
    assert int(batch["edge_index"].max()) == 5
    assert table.reasons == {2: "RDKit cannot parse this SMILES"}


def _same_tables(a: GraphTable, b: GraphTable) -> None:
    assert a.complete and b.complete and a.reasons == b.reasons
    for name in ("nodes", "edges", "n_nodes", "n_edges", "keys", "status"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_cached_table_equals_inline_featurisation_and_loads_without_rdkit(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path))
    items = MOLECULES * 3 + ["C1CC", "CCS", "CC.O"]
    inline = GraphTable(items, TOKENS, 9)
    inline.ensure(np.arange(len(items)))
    built = GraphTable.cached("t", items, TOKENS, 9, workers=1, progress=False, verbose=False)
    _same_tables(built, inline)
    files = sorted(p.name for p in (tmp_path / "vae").iterdir())
    assert len(files) == 1 and files[0].startswith("t-") and files[0].endswith(".npz")

    def no_featurising(*args, **kwargs):
        raise AssertionError("the cache should have been loaded, not rebuilt")

    monkeypatch.setattr(vae_table, "featurize_many", no_featurising)
    _same_tables(GraphTable.cached("t", items, TOKENS, 9, progress=False, verbose=False), inline)
    batch = built.batch(np.arange(len(items)))  # batches from cached arrays: no featurisation
    assert batch["atoms"].shape[0] == int((inline.status == 1).sum())


def test_featurisation_cache_is_keyed_on_every_smiles_and_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path))
    items = ["C" * (1 + k % 8) for k in range(3000)]
    first = GraphTable.cached("t", items, TOKENS, 9, workers=1, progress=False, verbose=False)
    edited = list(items)
    edited[1] = "CO"  # a molecule that a sample of ~1,000 of the 3,000 SMILES would miss
    second = GraphTable.cached("t", edited, TOKENS, 9, workers=1, progress=False, verbose=False)
    assert second.n_nodes[1] == 2 and first.n_nodes[1] == 2 and second.nodes[1, 1, 0] == TOKENS.index("O")
    assert first.nodes[1, 1, 0] == TOKENS.index("C")
    GraphTable.cached("t", items, TOKENS, 8, workers=1, progress=False, verbose=False)  # another max_atoms
    assert len(list((tmp_path / "vae").glob("t-*.npz"))) == 3


def test_corrupt_featurisation_cache_is_rebuilt_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path))
    good = GraphTable.cached("t", MOLECULES, TOKENS, 9, workers=1, progress=False, verbose=False)
    (path,) = (tmp_path / "vae").glob("t-*.npz")
    path.write_bytes(path.read_bytes()[:100])  # truncated, as by a full disk
    with pytest.warns(UserWarning, match="cannot be read"):
        again = GraphTable.cached("t", MOLECULES, TOKENS, 9, workers=1, progress=False, verbose=False)
    _same_tables(again, good)
    assert not list((tmp_path / "vae").glob(".*tmp*"))  # no temporary file left behind


def test_parallel_featurisation_equals_serial():
    items = MOLECULES * 5 + ["C1CC", "[Fe]"]
    serial = vae_featurize.featurize_many(items, TOKENS, 9, 17, workers=1, chunk=7, progress=False)
    parallel = vae_featurize.featurize_many(items, TOKENS, 9, 17, workers=2, chunk=7, progress=False)
    assert serial.keys() == parallel.keys()
    for k in serial:
        np.testing.assert_array_equal(serial[k], parallel[k])
    assert serial["failed_idx"].tolist() == [40, 41]


def test_training_setup_featurises_once_and_then_loads_the_cache(tmp_path, monkeypatch, capsys):
    from molgen.training import vae as vae_training

    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path))
    train = MOLECULES * 12 + ["CCS"]  # S is too rare for the vocabulary: not representable
    monkeypatch.setattr(vae_training, "dataset_split_smiles", lambda dataset: (list(train), MOLECULES[:2]))
    small = dict(latent_dim=8, encoder_hidden=16, encoder_layers=1, decoder_dim=16, decoder_layers=1,
                 decoder_heads=2)
    setup = vae_training.training_setup("qm9", small, {})
    table = setup.data
    assert table.complete and len(table) == len(train) and list(table.reasons) == [len(train) - 1]
    assert setup.metrics["train_not_representable"] == 1
    names = sorted(p.name.split("-")[1] for p in (tmp_path / "vae").glob("*.npz"))
    assert names == ["train", "train"]  # qm9-train-<key>.npz and qm9-train-scan-<key>.npz
    assert "scanned the atom tokens of 97" in capsys.readouterr().out
    monkeypatch.setattr(vae_table, "featurize_many", lambda *a, **k: pytest.fail("featurised again"))
    again = vae_training.training_setup("qm9", small, {})
    out = capsys.readouterr().out
    assert "scanned" not in out and "loaded the featurised 97 qm9-train molecules" in out
    _same_tables(again.data, table)
    assert again.model.atom_types == setup.model.atom_types
    assert again.data.batch(np.arange(8))["atoms"].shape[0] == 8


def test_token_scan_is_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path))
    items = MOLECULES * 2
    expected = scan_atom_tokens(items)
    assert vae_featurize.cached_scan("t", items, verbose=False) == expected
    assert list(vae_featurize.cached_scan("t", items, verbose=False)[0]) == list(expected[0])  # order kept
    assert vae_featurize.cached_scan("t", items + ["[Na+].[Cl-]"], verbose=False)[0]["Na+"] == 1


# --- the objective ----------------------------------------------------------------------------------
def test_kl_matches_closed_form():
    mu = torch.tensor([[1.0, 0.0], [0.0, -2.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [math.log(0.25), 0.0]])
    expected = [0.5 * (1.0 + 0 + 4.0 - 1 - math.log(4.0)), 0.5 * (0.25 - 1 - math.log(0.25) + 4.0)]
    np.testing.assert_allclose(gaussian_kl(mu, logvar).numpy(), expected, rtol=1e-6)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    np.testing.assert_allclose(gaussian_kl(mu, logvar).numpy(),
                               torch.distributions.kl_divergence(q, p).sum(-1).numpy(), rtol=1e-6)


def test_loss_is_nll_plus_annealed_kl_and_counts_steps():
    model = tiny(beta=0.5, kl_start_step=2, kl_warmup_steps=4)
    assert [model.kl_weight(s) for s in (0, 2, 4, 6, 100)] == [0.0, 0.0, 0.25, 0.5, 0.5]
    batch = GraphTable(MOLECULES, TOKENS, 9).batch(np.arange(8))
    model.train()
    for _ in range(4):
        torch.manual_seed(3)
        loss, logs = model.loss(batch)
    assert int(model.step) == 4 and "step" in model.state_dict()
    assert loss.item() == pytest.approx(logs["nll"] + 0.125 * logs["kl"], rel=1e-5)
    model.eval()
    model.loss(batch)
    assert int(model.step) == 4  # evaluation does not advance the schedule


@pytest.mark.parametrize("constrained, max_ring", [(True, None), (False, None), (True, 4)])
def test_teacher_forced_nll_equals_log_probability_of_sampled_graphs(constrained, max_ring):
    model = tiny(max_ring_size=max_ring).eval()
    z = torch.randn(100, model.latent_dim, generator=torch.Generator().manual_seed(0))
    atoms, bonds, n, logp = model.decoder.generate(z, constrained=constrained,
                                                   generator=torch.Generator().manual_seed(1))
    big_n = int(n.max())
    nll = model.decoder.nll(z, atoms[:, :big_n], bonds[:, :big_n, :big_n], n, valence_masks=constrained)
    np.testing.assert_allclose((-nll).detach().numpy(), logp.numpy(), atol=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_constrained_decoding_never_exceeds_a_valence(temperature):
    model = tiny().eval()
    caps = np.array([max_valence(t) for t in TOKENS])
    z = 3.0 * torch.randn(1500, model.latent_dim, generator=torch.Generator().manual_seed(2))
    atoms, bonds, n, _ = model.decoder.generate(z, temperature=temperature, generator=torch.Generator().manual_seed(3))
    atoms, bonds, n = atoms.numpy(), bonds.numpy(), n.numpy()
    for i, k in enumerate(n):
        used = bonds[i, :k, :k].sum(1)
        assert (used <= caps[atoms[i, :k]]).all()
        assert k == 1 or (bonds[i, :k, :k] > 0).sum(1).min() > 0
    out = model.decode(z[:500], greedy=False, seed=0)
    assert out.validity == 1.0
    assert all(len(Chem.GetMolFrags(m)) == 1 for m in out.mols)
    # the same untrained network without the masks makes invalid molecules: the masks do the work
    assert model.decode(z[:500], greedy=False, seed=0, constrained=False).validity < 0.9


def _largest_rings(atoms: torch.Tensor, bonds: torch.Tensor, n: torch.Tensor) -> list[int]:
    """Largest SSSR ring of each decoded graph (RDKit, on the bond graph alone)."""
    out = []
    for i, k in enumerate(n.tolist()):
        mol = Chem.RWMol()
        for _ in range(k):
            mol.AddAtom(Chem.Atom(6))
        for a, c in zip(*np.nonzero(np.triu(bonds[i, :k, :k].numpy()))):
            mol.AddBond(int(a), int(c), Chem.BondType.SINGLE)
        out.append(max((len(r) for r in Chem.GetSymmSSSR(mol)), default=0))
    return out


def test_ring_distances_are_shortest_paths_in_the_decoders_order_of_bonds():
    from molgen.models.vae.decoder import BIG, ring_distances

    table = GraphTable(["C1CCC2CC2C1", "c1ccc2ccccc2c1", "CC1(C)CN1", "OC1COC1"], TOKENS, 12)
    bonds = table.batch(np.arange(4))["bonds"]
    d = ring_distances(bonds)
    for b in range(4):
        n = int((bonds[b].sum(1) > 0).sum())
        for t in range(1, n):
            for j in range(t):  # brute force: BFS from t over atoms < t and t's bonds to atoms < j
                adj = {a: {c for c in range(t) if bonds[b, a, c] > 0} for a in range(t)}
                adj[t] = {c for c in range(j) if bonds[b, t, c] > 0}
                for c in adj[t]:
                    adj[c] = adj[c] | {t}
                seen, frontier, dist = {t}, {t}, 0
                while frontier and j not in seen:
                    frontier = {c for a in frontier for c in adj[a]} - seen
                    seen |= frontier
                    dist += 1
                assert int(d[b, t, j]) == (dist if j in seen else BIG), (b, t, j)


def test_ring_size_limit_holds_in_samples_and_scores_larger_rings_minus_infinity():
    z = 3.0 * torch.randn(600, 16, generator=torch.Generator().manual_seed(2))
    free = tiny(max_atoms=12).eval()
    sizes = _largest_rings(*free.decoder.generate(z, generator=torch.Generator().manual_seed(3))[:3])
    assert max(sizes) > 5  # untrained and unlimited: rings of every size
    limited = tiny(max_atoms=12, max_ring_size=5).eval()
    sizes = _largest_rings(*limited.decoder.generate(z, generator=torch.Generator().manual_seed(3))[:3])
    assert max(sizes) == 5
    assert limited.decode(z[:200], seed=0).validity == 1.0
    rings = ["C1CCCCC1", "C1CCCC1", "C1CCCCCCC1"]
    ll = limited.log_likelihood(rings, samples=2, seed=0)
    assert np.isneginf(ll[[0, 2]]).all() and np.isfinite(ll[1])
    # without the masks the limit is off, as the valence rule is
    assert np.isfinite(limited.log_likelihood(rings, samples=2, seed=0, constrained=False)).all()
    with pytest.raises(ValueError, match="max_ring_size"):
        tiny(max_ring_size=2)


# --- a trained tiny model --------------------------------------------------------------------------
def test_tiny_vae_overfits_and_reconstructs(overfit):
    assert overfit.reconstruct(MOLECULES) == [canon(s) for s in MOLECULES]
    samples = overfit.sample(200, seed=0)
    assert samples.validity == 1.0
    assert {canon(s) for s in MOLECULES} & set(samples.smiles)


def test_log_likelihood_bounds_and_bad_input(overfit):
    elbo = overfit.log_likelihood(MOLECULES, samples=16, seed=0)
    iwae = overfit.log_likelihood(MOLECULES, samples=16, importance_weighted=True, seed=0)
    assert np.isfinite(elbo).all() and (elbo < 0).all()
    assert iwae.mean() >= elbo.mean() - 0.05
    loose = overfit.log_likelihood(MOLECULES, samples=4, constrained=False, seed=0)
    tight = overfit.log_likelihood(MOLECULES, samples=4, constrained=True, seed=0)
    assert (tight >= loose - 1e-4).all()  # masks only renormalise over allowed choices
    values, reasons = overfit.log_likelihood(["CCO", "C1CC", "CCS"], return_reasons=True)
    assert np.isfinite(values[0]) and np.isnan(values[1:]).all()
    assert reasons[0] is None and "parse" in reasons[1] and "vocabulary" in reasons[2]
    with pytest.warns(UserWarning, match="NaN for 1 of 2"):
        overfit.log_likelihood(["CCO", "xyz"])


def test_latent_tools(overfit):
    z = overfit.encode(MOLECULES)
    assert z.shape == (8, overfit.latent_dim)
    torch.testing.assert_close(overfit.encode("CCO")[0], z[0])
    path = overfit.interpolate("CCO", "c1ccccc1", steps=5)
    assert len(path) == 5 and path[0] == "CCO" and path[-1] == "c1ccccc1"
    assert overfit.interpolate("CCO", "c1ccccc1", steps=3, spherical=True)[0] == "CCO"
    near = overfit.neighbours("CC(=O)N", n=6, scale=0.0)
    assert near == ["CC(N)=O"] * 6
    assert len(overfit.neighbours("CC(=O)N", n=6, scale=1.0, seed=1)) == 6
    assert overfit.encode("CCO", sample=True, seed=0).shape == (1, overfit.latent_dim)


def test_unparseable_smiles_give_clear_errors(overfit):
    with pytest.raises(ValueError, match=r"cannot encode 'C1CC': RDKit cannot parse this SMILES"):
        overfit.encode(["CCO", "C1CC"])
    with pytest.raises(ValueError, match=r"cannot encode 'CCS': atom S is not in this model's vocabulary"):
        overfit.interpolate("CCS", "CCO")
    with pytest.raises(ValueError, match=r"steps must be an integer of at least 2 \(both end points included\), got 1"):
        overfit.interpolate("CCO", "CCO", steps=1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_decoding_non_finite_latents_is_refused(bad):
    model = tiny()
    z = torch.zeros(3, model.latent_dim)
    z[1, 2] = bad
    with pytest.raises(ValueError, match=r"z must be finite; rows 1 hold NaN or inf \(1 of 3\)"):
        model.decode(z)
    with pytest.raises(ValueError, match=r"z must have shape \(B, 16\)"):
        model.decode(torch.zeros(2, 3))


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": float("nan")}, r"temperature must be a finite number > 0, got nan"),
    ({"temperature": float("inf")}, r"temperature must be a finite number > 0, got inf"),
    ({"temperature": 0.0}, r"temperature must be a finite number > 0, got 0.0"),
    ({"prior_scale": float("inf")}, r"prior_scale must be a finite number > 0, got inf"),
    ({"prior_scale": float("nan")}, r"prior_scale must be a finite number > 0, got nan"),
    ({"prior_scale": -1.0}, r"prior_scale must be a finite number > 0"),
    ({"batch_size": 0}, r"batch_size must be a positive integer \(>= 1\), got 0"),
    ({"batch_size": -1}, r"batch_size must be a positive integer \(>= 1\), got -1"),
    ({"seed": 2 ** 64}, r"seed must be an integer in \[0, 2\*\*64\)"),
])
def test_bad_sampling_arguments_give_one_clear_error(kwargs, message, monkeypatch):
    model = tiny()
    monkeypatch.setattr(model.decoder, "generate", lambda *a, **k: pytest.fail("sampled before checking"))
    with pytest.raises(ValueError, match=message) as err:
        model.sample(4, **kwargs)
    assert "\n" not in str(err.value)


def test_bad_counts_and_sizes_of_the_latent_tools_are_refused():
    model = tiny()
    for n in (0, -3, 2.5):
        with pytest.raises(ValueError, match=r"n must be a positive integer \(>= 1\)"):
            model.sample(n)
        with pytest.raises(ValueError, match=r"n must be a positive integer"):
            model.neighbours("CCO", n=n)
    with pytest.raises(ValueError, match="scale must be a finite number >= 0, got nan"):
        model.neighbours("CCO", scale=float("nan"))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        model.encode(["CCO"], batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        model.decode(torch.zeros(2, model.latent_dim), batch_size=-1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        model.log_likelihood(["CCO"], batch_size=-1)
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        model.log_likelihood(["CCO"], samples=0)
    with pytest.raises(ValueError, match="molecules is empty"):
        model.encode([])
    for steps in (1, 0, -1, 2.5):
        with pytest.raises(ValueError, match="steps must be an integer of at least 2"):
            model.interpolate("CCO", "CCN", steps=steps)
    with pytest.raises(ValueError, match="b must be one SMILES string or RDKit Mol"):
        model.interpolate("CCO", ["CCN"])


def test_log_likelihood_and_encode_take_a_sample_set():
    from molgen.samples import SampleSet

    model = tiny()
    out = model.sample(6, seed=0)
    ll = model.log_likelihood(out, samples=2)
    np.testing.assert_allclose(ll, model.log_likelihood(out.smiles, samples=2), rtol=1e-5)
    assert np.isfinite(ll).all()
    torch.testing.assert_close(model.encode(out), model.encode(out.smiles))
    assert len(model.reconstruct(out)) == 6
    with_invalid = SampleSet(out.mols[:2] + [None], out.smiles[:2] + [None])
    ll, reasons = model.log_likelihood(with_invalid, return_reasons=True)
    assert np.isfinite(ll[:2]).all() and np.isnan(ll[2]) and "None" in reasons[2]
    with pytest.raises(ValueError, match=r"cannot encode None \(an invalid sample\?\): no molecule"):
        model.encode(with_invalid)
    np.testing.assert_allclose(model.log_likelihood(Chem.MolFromSmiles("CCO")), model.log_likelihood("CCO"))


def test_sample_accepts_large_seeds_and_keeps_small_ones():
    model = tiny()
    assert len(model.sample(3, seed=2 ** 64 - 1)) == 3  # the per-batch decoding seed used to overflow
    assert model.sample(5, seed=3, batch_size=2).smiles == model.sample(5, seed=3, batch_size=2).smiles


def test_save_load_round_trip(overfit, tmp_path):
    overfit.save_pretrained(tmp_path / "ckpt", metrics={"note": "test"})
    again = load("vae", checkpoint=tmp_path / "ckpt")
    assert isinstance(again, GraphVAE) and again.atom_types == TOKENS
    assert again.config == json.loads(json.dumps(overfit.config))
    for k, v in overfit.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)
    assert again.sample(50, seed=4).smiles == overfit.sample(50, seed=4).smiles
    assert model_class("vae") is GraphVAE


def test_interpolate_cli(overfit, tmp_path, capsys):
    from molgen.cli.common import run_cli
    from molgen.interpolate import main

    overfit.save_pretrained(tmp_path / "ckpt")
    argv = ["--checkpoint", str(tmp_path / "ckpt"), "--steps", "3"]
    with pytest.raises(SystemExit) as ok:
        run_cli(lambda: main(argv + ["CCO", "c1ccccc1"]))
    out = capsys.readouterr()
    assert ok.value.code == 0 and out.out.split() == overfit.interpolate("CCO", "c1ccccc1", steps=3)
    assert out.out.split()[0] == "CCO" and out.out.split()[-1] == "c1ccccc1"
    with pytest.raises(SystemExit) as bad:
        run_cli(lambda: main(argv + ["CCO", "C1CC"]))
    out = capsys.readouterr()
    assert bad.value.code == 2 and out.out == ""
    assert out.err == "error: cannot encode 'C1CC': RDKit cannot parse this SMILES\n"


def test_learning_curve_evaluator(overfit):
    from molgen.training.vae import CurveEvaluator

    table = GraphTable(MOLECULES, TOKENS, 9)
    table.ensure(np.arange(len(MOLECULES)))
    row = CurveEvaluator(table, MOLECULES + ["C1CC"], n_samples=40, n_recon=8)(overfit)
    assert row["validity"] == 1.0 and row["reconstruction"] == 1.0 and row["train_featurised"] == 1.0
    assert 0.0 <= row["novelty"] < 1.0  # the memorised molecules come back and are not novel


def test_sample_set_records_settings_and_batches_agree():
    model = tiny().eval()
    a = model.sample(30, seed=5, batch_size=30)
    assert a.info["constrained"] is True and len(a) == 30 and a.validity == 1.0
    assert model.sample(30, seed=5, batch_size=30).smiles == a.smiles
    with pytest.raises(ValueError, match="temperature"):
        model.sample(3, temperature=0.0)
    wide = model.sample(30, seed=5, batch_size=30, prior_scale=2.0)
    assert wide.info["prior_scale"] == 2.0 and wide.validity == 1.0
    with pytest.raises(ValueError, match="prior_scale"):
        model.sample(3, prior_scale=0.0)


def test_shipped_qm9_checkpoint_samples_valid_molecules():
    from molgen.models import pretrained_path
    from molgen.models.checkpoint import read_metrics

    folder = pretrained_path("vae", "qm9")
    if not (folder / "config.json").exists():
        pytest.skip("the vae-qm9 checkpoint is not installed")
    model = load("vae", dataset="qm9")
    out = model.sample(300, seed=0)
    assert out.validity == 1.0 and len(set(out.smiles)) > 280
    assert model.reconstruct("CCO") == ["CCO"]
    evaluation = read_metrics(folder)["evaluation"]
    assert evaluation["constrained"]["validity"] == 1.0 and "command" in evaluation


def test_ring_size_limit_is_settable_saved_and_recorded(tmp_path):
    model = tiny(max_atoms=12).eval()
    model.max_ring_size = 5
    assert model.decoder.max_ring == 5 and model.config["max_ring_size"] == 5
    assert model.sample(20, seed=0).info["max_ring_size"] == 5
    assert "max_ring_size" not in model.sample(20, seed=0, constrained=False).info
    model.save_pretrained(tmp_path / "m")
    assert GraphVAE.from_pretrained(tmp_path / "m").max_ring_size == 5
    with pytest.raises(ValueError, match="max_ring_size must be an integer >= 3"):
        model.max_ring_size = 2.5
