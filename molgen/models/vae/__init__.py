"""The graph VAE, registered as ``"vae"``.

``model`` holds :class:`GraphVAE` (encoder, prior, latent tools, sampling and ELBO), ``decoder`` the
sequential valence-masked graph decoder, ``graphs`` the featurised and decoded graphs as arrays (no RDKit:
a bare GPU machine trains from them), ``featurization`` the canonical graph arrays of molecules and their
content-keyed cache, ``table`` the featurised tables of molecules and batches (RDKit).
"""
from typing import Any

from .graphs import GraphArrays, collate
from .model import GraphVAE, gaussian_kl

__all__ = ["GraphArrays", "GraphTable", "GraphVAE", "collate", "featurize", "gaussian_kl", "scan_atom_tokens"]


def __getattr__(name: str) -> Any:  # the RDKit side, imported when first asked for
    if name in ("featurize", "scan_atom_tokens"):
        from . import featurization
        return getattr(featurization, name)
    if name == "GraphTable":
        from .table import GraphTable
        return GraphTable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
