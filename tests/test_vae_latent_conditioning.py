"""Conditional VAE samples by property-guided MALA in latent space (molgen.models.vae.latent_conditioning):
a latent property head fitted on posterior draws, saved beside the weights without pickle, and the
sampler p(z) p(y | z)^g behind ``sample(condition=..., guidance=...)`` and the CLI."""
from __future__ import annotations

import copy
import itertools
import json
import math
import warnings

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import Crippen

from molgen.metrics.properties import condition_values
from molgen.models.checkpoint import CheckpointError
from molgen.models.conditioning import closest_to_request
from molgen.models.vae import GraphVAE
from molgen.models.vae.latent_conditioning import (HEAD_JSON, HEAD_WEIGHTS, LatentPropertyHead, fit_latent_head,
                                                   guided_latents)
from molgen.training.conditions import condition_stats

NAMES = ("logp", "qed")


def small_molecules() -> list[str]:
    """Some hundred distinct chains of C, N and O (logP about -2 to 3)."""
    out = set()
    for k in range(2, 8):
        for atoms in itertools.product("CCNO", repeat=k):
            mol = Chem.MolFromSmiles("".join(atoms))
            if mol is not None and len(out) < 400:
                out.add(Chem.MolToSmiles(mol))
    return sorted(out)


def tiny_vae(**kw) -> GraphVAE:
    torch.manual_seed(0)
    cfg = dict(atom_types=("C", "N", "O"), max_atoms=9, latent_dim=8, encoder_hidden=16, encoder_layers=1,
               decoder_dim=32, decoder_layers=1, decoder_heads=2, decoder_mlp_ratio=2, sample_batch_size=64)
    return GraphVAE(**{**cfg, **kw})


@pytest.fixture(scope="module")
def fitted() -> tuple[GraphVAE, dict]:
    """A tiny (untrained) VAE with a head fitted on its encodings of a few hundred molecules."""
    model = tiny_vae()
    smiles = small_molecules()
    values = condition_values(smiles, NAMES)
    mu, logvar = model.encode_posterior(smiles)
    head, report = fit_latent_head(mu, logvar, values, NAMES, condition_stats(values, NAMES), epochs=20,
                                   hidden=32, steps=30, step_size=0.05)
    model.attach_latent_head(head)
    return model, report


def test_the_head_learns_a_linear_property_and_its_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(2000, 4, generator=gen)
    values = (2.0 * mu[:, :1] + 1.0 + 0.2 * torch.randn(2000, 1, generator=gen)).numpy()
    stats = condition_stats(values, ("logp",))
    head, report = fit_latent_head(mu, torch.full_like(mu, -20.0), values, ("logp",), stats, epochs=40, hidden=32)
    r = report["properties"]["logp"]["posterior_draw"]
    assert r["r2"] > 0.97 and 0.15 < r["sigma_units"] < 0.3 and report["sigma_from"] == "posterior_draw"
    assert head.sigma["logp"] == pytest.approx(r["sigma"])
    pred = head.predict(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert float(pred) == pytest.approx(3.0, abs=0.3)
    # prior draws with noisier labels (a decoder that strays): sigma comes from them
    zp = torch.randn(2000, 4, generator=gen)
    yp = (2.0 * zp[:, :1] + 1.0 + 0.6 * torch.randn(2000, 1, generator=gen)).numpy()
    head, report = fit_latent_head(mu, torch.full_like(mu, -20.0), values, ("logp",), stats, prior_z=zp,
                                   prior_values=yp, epochs=40, hidden=32)
    r = report["properties"]["logp"]["prior_decoded"]
    assert report["sigma_from"] == "prior_decoded" and 0.45 < r["sigma_units"] < 0.75
    assert head.sigma["logp"] == pytest.approx(r["sigma"])


def test_mala_draws_the_gaussian_posterior_of_a_linear_head() -> None:
    """f(z) = w . z with N(0, I) prior: u = w . z / |w| is N(m, v) with v = 1 / (1 + g |w|^2 / s^2) and
    m = v g |w| y / s^2 (standardised units); MALA's chains must land there."""
    head = LatentPropertyHead(3, ("logp",), {"logp": {"mean": 0.0, "std": 1.0, "p01": -3, "p99": 3}},
                              sigma={"logp": 0.5}, layers=0, steps=200, step_size=0.05)
    with torch.no_grad():
        head.net[0].weight.copy_(torch.tensor([[1.0, 1.0, 0.0]]))
        head.net[0].bias.zero_()
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(4000, 3, generator=gen)
    for g in (1.0, 2.0):
        z, rate = guided_latents(head, z0, torch.tensor([1.5]), torch.tensor([True]), g, generator=gen)
        u = z @ torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2)
        v = 1 / (1 + g * 2 / 0.25)
        m = v * g * math.sqrt(2) * 1.5 / 0.25
        assert 0.5 < rate <= 1.0
        assert float(u.mean()) == pytest.approx(m, abs=0.03) and float(u.var()) == pytest.approx(v, rel=0.1)
        assert float(z[:, 2].var()) == pytest.approx(1.0, rel=0.1), "the direction the head ignores keeps the prior"


def test_guidance_zero_gives_exactly_the_unconditional_samples(fitted) -> None:
    model, _ = fitted
    plain = model.sample(24, seed=3).smiles
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert model.sample(24, seed=3, condition={"logp": 2.0}, guidance=0.0).smiles == plain
        assert model.sample(24, seed=3, condition={"logp": 2.0}, guidance=1.0).smiles != plain


def test_the_sampler_moves_the_heads_prediction_toward_the_request(fitted) -> None:
    model, _ = fitted
    head = copy.deepcopy(model.latent_head)
    head.sigma = {k: 0.02 for k in head.names}  # the untrained VAE's z says little: make the likelihood sharp
    z0 = torch.randn(500, model.latent_dim, generator=torch.Generator().manual_seed(0))
    before = head.predict(z0)[:, 0]
    for target in (float(before.quantile(0.05)), float(before.quantile(0.95))):
        z, _ = guided_latents(head, z0, torch.tensor([target, 0.0]), torch.tensor([True, False]), 2.0,
                              generator=torch.Generator().manual_seed(1))
        after = head.predict(z)[:, 0]
        assert float((after - target).abs().mean()) < 0.6 * float((before - target).abs().mean())


def test_a_subset_request_leaves_the_other_properties_out(fitted) -> None:
    model, _ = fitted
    head = model.latent_head
    z0 = torch.randn(64, model.latent_dim, generator=torch.Generator().manual_seed(0))
    present = torch.tensor([False, True])
    a, _ = guided_latents(head, z0, torch.tensor([-50.0, 0.5]), present, 2.0, generator=torch.Generator().manual_seed(1))
    b, _ = guided_latents(head, z0, torch.tensor([50.0, 0.5]), present, 2.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, z0)
    out = model.sample(8, seed=0, condition={"qed": 0.45}, guidance=2.0)
    assert out.info["condition"] == {"qed": 0.45} and out.info["conditioned_by"] == "latent head"
    assert 0.0 < out.info["latent_acceptance"] <= 1.0 and all(m is not None for m in out)


def test_the_head_round_trips_without_pickle_and_leaves_the_vae_weights_alone(fitted, tmp_path) -> None:
    model, _ = fitted
    model.save_pretrained(tmp_path, metrics={"steps": 0, "epochs": 0, "train_config": {}})
    assert not any(k.startswith("latent_head") for k in model.state_dict())
    model.latent_head.save(tmp_path)
    assert json.loads((tmp_path / HEAD_JSON).read_text())["names"] == list(NAMES)
    blob = (tmp_path / HEAD_WEIGHTS).read_bytes()
    header = int.from_bytes(blob[:8], "little")
    assert json.loads(blob[8:8 + header])  # a safetensors header, not a pickle
    loaded = GraphVAE.from_pretrained(tmp_path)
    assert loaded.conditions == NAMES and loaded.latent_head.sigma == model.latent_head.sigma
    z = torch.randn(5, model.latent_dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded.latent_head.predict(z), model.latent_head.predict(z))
    kw = dict(seed=1, condition={"logp": 1.0}, guidance=2.0)
    assert loaded.sample(16, **kw).smiles == model.sample(16, **kw).smiles


def test_bad_requests_get_one_line_and_out_of_range_values_warn(fitted, tmp_path) -> None:
    model, _ = fitted
    with pytest.raises(ValueError, match="unknown condition 'mw' for this vae checkpoint; choose from logp, qed") as info:
        model.sample(2, condition={"mw": 300.0})
    assert "\n" not in str(info.value)
    with pytest.warns(UserWarning, match=r"condition logp=40 is outside the training range .* to "):
        model.sample(2, condition={"logp": 40.0})
    with pytest.raises(ValueError, match="has no latent property head") as info:
        tiny_vae().sample(2, condition={"logp": 1.0})
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="conditions its decoder"):
        tiny_vae(conditions=("logp",), condition_stats={"logp": {"mean": 0, "std": 1, "p01": -1, "p99": 1}}
                 ).attach_latent_head(model.latent_head)
    model.latent_head.save(tmp_path)
    (tmp_path / HEAD_WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="latent property head .* is unreadable") as info:
        LatentPropertyHead.load(tmp_path)
    assert "\n" not in str(info.value)


def test_the_cli_samples_and_lists_a_latent_head_checkpoint(fitted, tmp_path, capsys) -> None:
    from molgen.sample import main

    model, _ = fitted
    model.save_pretrained(tmp_path, metrics={"steps": 0, "epochs": 0, "train_config": {}})
    model.latent_head.save(tmp_path)
    assert main(["--list-conditions", "--checkpoint", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    lo, hi = model.condition_stats["logp"]["p01"], model.condition_stats["logp"]["p99"]
    assert f"logp {lo:.3g} to {hi:.3g}" in listing and "(latent head)" in listing
    assert main(["--model", "vae", "--checkpoint", str(tmp_path), "--condition", "logp=1", "--guidance", "2",
                 "-n", "4", "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert len(out.out.split()) == 4 and "4 molecules" in out.err
    assert main(["--model", "vae", "--checkpoint", str(tmp_path), "--condition", "qed=0.4", "--candidates", "3",
                 "-n", "2", "--device", "cpu", "--no-progress"]) == 0
    for argv, message in ((["--candidates", "3"], "--candidates applies with --condition only"),
                          (["--condition", "logp=1", "--candidates", "0"], "--candidates must be between 1 and 64"),
                          (["--condition", "mw=100"], "unknown condition 'mw' for this vae checkpoint")):
        with pytest.raises(ValueError, match=message) as info:
            main(["--model", "vae", "--checkpoint", str(tmp_path), "-n", "2", "--device", "cpu", *argv])
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="--candidates does not apply to the edm model"):
        main(["--model", "edm", "--condition", "alpha=80", "--candidates", "2", "-n", "2", "--device", "cpu"])


def test_best_of_k_keeps_the_candidate_closest_by_rdkit(fitted) -> None:
    model, _ = fitted
    request = {"logp": 1.0}
    out = model.sample(6, seed=0, condition=request, guidance=2.0, candidates=3)
    draws = model.sample(18, seed=0, condition=request, guidance=2.0)  # the same stream: the 18 candidates
    keep = closest_to_request(draws.mols, 3, request, model.condition_stats)
    assert out.smiles == [draws.smiles[i] for i in keep] and out.info["candidates"] == 3
    logp = np.array([Crippen.MolLogP(m) for m in draws.mols]).reshape(6, 3)
    kept = np.array([Crippen.MolLogP(m) for m in out.mols])
    assert np.allclose(np.abs(kept - 1.0), np.abs(logp - 1.0).min(1)), "the closest of each three"
    assert model.sample(4, seed=0, condition=request, guidance=0.0, candidates=2).info["candidates"] == 2, \
        "generate-and-select needs no guidance"
    with pytest.raises(ValueError, match="candidates applies with a condition") as info:
        model.sample(2, candidates=3)
    assert "\n" not in str(info.value)
