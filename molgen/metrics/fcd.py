"""Fréchet ChemNet Distance (Preuer et al., JCIM 2018) through the ``fcd`` package's ChemNet.

FCD = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)) between Gaussians fitted to the 512
penultimate-layer ChemNet activations of two SMILES sets. As in MOSES (``fcd_torch``) and GuacaMol,
SMILES are canonicalised with RDKit before encoding and every string is one-hot encoded padded to
350 tokens (ChemNet's LSTMs run over the padding, so the padding length changes the activations).

Reference statistics (mu, sigma) are computed once with :func:`chemnet_stats`; :mod:`molgen.references`
caches them for the named references.
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from rdkit import Chem

from molgen.chem.convert import MolLike, to_smiles
from molgen.metrics._progress import in_chunks

__all__ = ["chemnet_activations", "chemnet_stats", "frechet_distance", "fcd", "fcd_score"]

Stats = tuple[np.ndarray, np.ndarray]

PAD_LENGTH = 350  # ChemNet's training length; fcd, fcd_torch and GuacaMol all pad to it
# ChemNet's character vocabulary (fcd.utils); "X" is the unknown token and "." the end token.
_VOCAB = ["C", "N", "O", "H", "F", "Cl", "P", "B", "Br", "S", "I", "Si", "#", "(", ")", "+", "-", "1", "2",
          "3", "4", "5", "6", "7", "8", "=", "[", "]", "@", "c", "n", "o", "s", "X", "."]
_INDEX = {token: i for i, token in enumerate(_VOCAB)}
_UNKNOWN = _INDEX["X"]
_END = _INDEX["."]
_TOKEN = re.compile("|".join(re.escape(t) for t in sorted(_VOCAB, key=lambda t: (-len(t), t))) + "|.")
# fcd divides the one-hot rows by the vocabulary size before the float32 cast; do the same.
_ONE = np.float32(1.0 / len(_VOCAB))


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@lru_cache(maxsize=2)
def _chemnet(device: torch.device) -> torch.nn.Module:
    """The pretrained ChemNet shipped with ``fcd``, in eval mode, on ``device`` (one copy per device)."""
    import fcd as fcd_package

    model = copy.deepcopy(fcd_package.load_ref_model())
    return model.eval().to(device)


def _encode(smiles: Sequence[str]) -> torch.Tensor:
    """One-hot ChemNet input of shape ``(batch, vocab, length)``, identical to ``fcd``'s encoding."""
    tokens = [[_INDEX.get(t, _UNKNOWN) for t in _TOKEN.findall(s)] + [_END] for s in smiles]
    length = max(PAD_LENGTH, max(len(t) for t in tokens))
    rows = np.repeat(np.arange(len(tokens)), [len(t) for t in tokens])
    cols = np.concatenate([np.arange(len(t)) for t in tokens])
    x = np.zeros((len(tokens), length, len(_VOCAB)), dtype=np.float32)
    x[rows, cols, np.concatenate(tokens)] = _ONE
    return torch.from_numpy(x).transpose(1, 2)


def _canonical_smiles(molecules: Sequence[MolLike]) -> list[str]:
    """RDKit's canonical isomeric SMILES, as the ``fcd`` package feeds ChemNet; invalid input raises."""
    from .fingerprints import to_mols

    return [to_smiles(m, isomeric=True) for m in to_mols(molecules)]


def chemnet_activations(molecules: Sequence[MolLike], batch_size: int = 128,
                        device: str | torch.device | None = None, canonicalize: bool = True) -> np.ndarray:
    """ChemNet penultimate activations, ``float32 (n, 512)``.

    SMILES are RDKit-canonicalised first (``canonicalize=False`` feeds the strings as given). Runs on
    CUDA when available, else on the CPU. A SMILES longer than 349 characters is padded to its own
    length instead of 350 (``fcd`` would re-pad the whole set, changing every activation).
    """
    if canonicalize or any(isinstance(m, Chem.Mol) for m in molecules):
        smiles = _canonical_smiles(molecules)
    else:
        smiles = list(molecules)
    out = np.zeros((len(smiles), 512), dtype=np.float32)
    if not smiles:
        return out
    dev = _device(device)
    model = _chemnet(dev)
    # Long strings (rare) go in batches of their own so they never change the padding of the rest.
    long_ones = [i for i, s in enumerate(smiles) if len(s) >= PAD_LENGTH]
    normal = [i for i, s in enumerate(smiles) if len(s) < PAD_LENGTH]
    batches = [normal[i:i + batch_size] for i in range(0, len(normal), batch_size)] + [[i] for i in long_ones]
    # cuDNN would run ChemNet's convolutions and LSTMs in TF32 on recent GPUs (activations off by
    # up to ~5e-3); keep full float32 so that GPU and CPU give the same FCD.
    with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        for idx in batches:
            x = _encode([smiles[i] for i in idx]).to(dev)
            out[idx] = model(x).float().cpu().numpy()
    return out


def chemnet_stats(molecules: Sequence[MolLike], progress: bool | None = False, desc: str = "ChemNet",
                  **kwargs) -> Stats:
    """Mean (512,) and covariance (512, 512) of the ChemNet activations, in float64.

    Keyword arguments go to :func:`chemnet_activations`; ``progress`` shows a bar labelled ``desc``
    on stderr for a long list (None: only on a terminal).
    """
    if len(molecules) < 2:
        raise ValueError(f"FCD statistics need at least 2 molecules, got {len(molecules)}")
    parts = in_chunks(lambda part: chemnet_activations(part, **kwargs), molecules, desc, progress)
    act = np.concatenate(parts).astype(np.float64)
    return act.mean(axis=0), np.cov(act, rowvar=False)




def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(matrix)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(stats_a: Stats, stats_b: Stats) -> float:
    """Fréchet distance between Gaussians ``(mu, sigma)``: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    Tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of the symmetric matrix
    S_a^(1/2) S_b S_a^(1/2) (same spectrum as S_a S_b). This equals what ``fcd``'s ``scipy.linalg.sqrtm``
    route gives (to ~1e-12 relative on full-rank statistics), is stable for rank-deficient
    covariances (fewer molecules than 512), and takes a fraction of a second instead of seconds.
    """
    mu_a, sigma_a = np.asarray(stats_a[0], np.float64), np.asarray(stats_a[1], np.float64)
    mu_b, sigma_b = np.asarray(stats_b[0], np.float64), np.asarray(stats_b[1], np.float64)
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape:
        raise ValueError("the two sets of statistics have different dimensions")
    root_a = _psd_sqrt(sigma_a)
    eigenvalues = np.linalg.eigvalsh(root_a @ sigma_b @ root_a)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt)


def fcd(gen_smiles: Sequence[MolLike], ref_smiles: Sequence[MolLike] | None = None,
        ref_stats: Stats | None = None) -> float:
    """FCD between generated molecules and a reference given as molecules *or* as ``(mu, sigma)``.

    Lower is better; 0 for identical sets.
    """
    if (ref_smiles is None) == (ref_stats is None):
        raise ValueError("give exactly one of ref_smiles and ref_stats")
    reference = ref_stats if ref_stats is not None else chemnet_stats(ref_smiles)
    return frechet_distance(chemnet_stats(gen_smiles), reference)


def fcd_score(gen_smiles: Sequence[MolLike], ref_smiles: Sequence[MolLike] | None = None,
              ref_stats: Stats | None = None) -> float:
    """GuacaMol's FCD score ``exp(-0.2 * FCD)`` in (0, 1]; higher is better."""
    return math.exp(-0.2 * fcd(gen_smiles, ref_smiles=ref_smiles, ref_stats=ref_stats))
