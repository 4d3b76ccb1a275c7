"""GuacaMol distribution-learning metrics (Brown et al., JCIM 2019), following its reference code.

KL score: for each of nine RDKit descriptors and for the nearest-neighbour similarity inside each
set (ECFP4, 4096 bits), KL(P_ref || Q_gen) is estimated; the score is the mean of exp(-KL).

- continuous descriptors (BertzCT, MolLogP, MolWt, TPSA) and the similarity: Gaussian KDEs
  (``scipy.stats.gaussian_kde``, Scott's bandwidth) of both sets, evaluated on 1,000 evenly spaced
  points spanning both sets;
- discrete descriptors (NumHAcceptors, NumHDonors, NumRotatableBonds, NumAliphaticRings,
  NumAromaticRings): 10-bin density histograms, the bins fixed by the reference set (generated
  values outside them are dropped);
- ``KL = scipy.stats.entropy(P + 1e-10, Q + 1e-10)`` (both renormalised by scipy).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from rdkit.Chem import Descriptors
from scipy.stats import entropy, gaussian_kde

from molgen.chem.convert import MolLike, canonicalize
from molgen.metrics.fingerprints import max_tanimoto, morgan_fingerprints, to_mols

__all__ = [
    "CONTINUOUS_DESCRIPTORS", "DISCRETE_DESCRIPTORS", "physchem_descriptors", "nearest_neighbour_similarity",
    "continuous_kl", "discrete_kl", "KLReference", "kl_reference", "kl_divergences", "kl_score",
    "random_subset", "guacamol_scores",
]

CONTINUOUS_DESCRIPTORS = ("BertzCT", "MolLogP", "MolWt", "TPSA")
DISCRETE_DESCRIPTORS = ("NumHAcceptors", "NumHDonors", "NumRotatableBonds", "NumAliphaticRings", "NumAromaticRings")
_DESCRIPTOR_FUNCTIONS = dict(Descriptors.descList)


def physchem_descriptors(molecules: Iterable[MolLike]) -> np.ndarray:
    """The nine GuacaMol descriptors, ``float64 (n, 9)``: continuous ones first, then discrete.

    A non-finite descriptor value is replaced by 0, as GuacaMol does.
    """
    functions = [_DESCRIPTOR_FUNCTIONS[name] for name in CONTINUOUS_DESCRIPTORS + DISCRETE_DESCRIPTORS]
    mols = to_mols(molecules)
    values = np.array([[fn(mol) for fn in functions] for mol in mols], dtype=np.float64).reshape(len(mols), 9)
    values[~np.isfinite(values)] = 0.0
    return values


def nearest_neighbour_similarity(molecules: Sequence[MolLike]) -> np.ndarray:
    """For each molecule, the ECFP4 (radius 2, 4096 bits) Tanimoto similarity to its nearest *other* member."""
    fps = morgan_fingerprints(molecules, radius=2, n_bits=4096)
    return max_tanimoto(fps, fps, empty=0.0, exclude_self=True)  # RDKit gives 0 for two empty vectors


def continuous_kl(ref_values: np.ndarray, gen_values: np.ndarray) -> float:
    """KL(P_ref || Q_gen) between Gaussian KDEs evaluated on 1,000 points spanning both samples.

    A generated sample without spread (one value, or fewer than two molecules) has no density to
    estimate: the result is ``inf``, so that term scores exp(-KL) = 0 (GuacaMol's code raises there).
    """
    ref_values, gen_values = np.asarray(ref_values, float), np.asarray(gen_values, float)
    if gen_values.size < 2 or np.ptp(gen_values) == 0:
        return math.inf
    both = np.concatenate([ref_values, gen_values])
    grid = np.linspace(both.min(), both.max(), num=1000)
    p = gaussian_kde(ref_values)(grid) + 1e-10
    q = gaussian_kde(gen_values)(grid) + 1e-10
    return float(entropy(p, q))


def discrete_kl(ref_values: np.ndarray, gen_values: np.ndarray) -> float:
    """KL(P_ref || Q_gen) between 10-bin density histograms whose bins are set by the reference.

    Generated values outside the reference's range are ignored (as in GuacaMol); if none is inside,
    the result is ``inf`` (GuacaMol's code gives NaN there), so that term scores exp(-KL) = 0.
    """
    p, edges = np.histogram(np.asarray(ref_values, float), bins=10, density=True)
    counts, _ = np.histogram(np.asarray(gen_values, float), bins=edges)
    if counts.sum() == 0:
        return math.inf
    q = counts / np.diff(edges) / counts.sum()
    return float(entropy(p + 1e-10, q + 1e-10))


@dataclass(frozen=True)
class KLReference:
    """Reference-side KL statistics: ``descriptors (n, 9)`` and ``nn_similarity (n,)``."""

    descriptors: np.ndarray
    nn_similarity: np.ndarray


def kl_reference(molecules: Sequence[MolLike]) -> KLReference:
    """Descriptors and nearest-neighbour similarities of a reference set, computed once."""
    mols = to_mols(molecules)
    return KLReference(physchem_descriptors(mols), nearest_neighbour_similarity(mols))


def kl_divergences(gen: Sequence[MolLike], ref: KLReference | Sequence[MolLike]) -> dict[str, float]:
    """KL divergence (nats) per descriptor plus ``"internal_similarity"``.

    Computed on the molecules as given; GuacaMol first reduces both sides to unique canonical SMILES
    without stereo (:func:`guacamol_scores` does that).
    """
    reference = ref if isinstance(ref, KLReference) else kl_reference(ref)
    generated = kl_reference(gen)
    out = {}
    for i, name in enumerate(CONTINUOUS_DESCRIPTORS):
        out[name] = continuous_kl(reference.descriptors[:, i], generated.descriptors[:, i])
    for i, name in enumerate(DISCRETE_DESCRIPTORS, start=len(CONTINUOUS_DESCRIPTORS)):
        out[name] = discrete_kl(reference.descriptors[:, i], generated.descriptors[:, i])
    out["internal_similarity"] = continuous_kl(reference.nn_similarity, generated.nn_similarity)
    return out


def kl_score(gen: Sequence[MolLike], ref: KLReference | Sequence[MolLike]) -> float:
    """GuacaMol's KL score: mean over the ten KL divergences of exp(-KL), in [0, 1]; 1 is a perfect match."""
    kls = kl_divergences(gen, ref)
    return float(np.mean([math.exp(-v) for v in kls.values()]))


def random_subset(items: Sequence, size: int, seed: int = 42) -> list:
    """``size`` distinct items drawn without replacement, the same draw as GuacaMol's ``get_random_subset``.

    (``np.random.seed(seed); np.random.choice(items, size, replace=False)``.)
    """
    if len(items) < size:
        raise ValueError(f"cannot draw {size} items from a set of {len(items)}")
    order = np.random.RandomState(seed).permutation(len(items))[:size]
    return [items[i] for i in order]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def guacamol_scores(gen_smiles: Sequence[str], train_smiles: Sequence[str], n_reference: int = 10_000,
                    seed: int = 42, include_fcd: bool = True) -> dict[str, float]:
    """GuacaMol's distribution-learning scores for a fixed list of generated SMILES.

    GuacaMol samples a model until it has 10,000 valid (or unique) molecules; here the list is
    taken as given, so the ratios are over what it contains:

    - ``validity``: valid SMILES / all SMILES;
    - ``uniqueness``: distinct canonical SMILES without stereo / valid SMILES;
    - ``novelty``: distinct stereo-free canonical SMILES absent from the (stereo-free, canonical)
      training set / distinct canonical SMILES;
    - ``kl_score``: on the distinct stereo-free molecules against a random ``n_reference`` training
      molecules (GuacaMol's seeded draw; all of them if the training set is smaller);
    - ``fcd``, ``fcd_score`` (``exp(-0.2 FCD)``): all valid molecules against the same draw.

    Canonicalising the whole training set costs about 0.1 ms per molecule.
    """
    n = len(gen_smiles)
    if n == 0:
        raise ValueError("no generated SMILES given")
    flat_all = [canonicalize(s) for s in gen_smiles]
    valid = [s for s, c in zip(gen_smiles, flat_all) if c is not None]
    canonical = _unique(canonicalize(s, isomeric=True) for s in valid)
    flat = _unique(canonicalize(s) for s in canonical)
    train_flat = {c for c in (canonicalize(s) for s in train_smiles) if c is not None}
    reference = random_subset(train_smiles, min(n_reference, len(train_smiles)), seed=seed)
    reference_flat = _unique(c for c in (canonicalize(s) for s in reference) if c is not None)

    scores = {
        "validity": len(valid) / n,
        "uniqueness": len(set(flat_all) - {None}) / len(valid) if valid else 0.0,
        "novelty": len(set(flat) - train_flat) / len(canonical) if canonical else 0.0,
        "kl_score": kl_score(flat, reference_flat) if len(flat) >= 2 else float("nan"),
    }
    if include_fcd:
        from molgen.metrics.fcd import chemnet_stats, frechet_distance

        value = (frechet_distance(chemnet_stats(valid), chemnet_stats(reference))
                 if len(valid) >= 2 else float("nan"))
        scores["fcd"] = value
        scores["fcd_score"] = math.exp(-0.2 * value)
    return scores
