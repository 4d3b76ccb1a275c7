"""The graph VAE, registered as ``"vae"``.

``model`` holds :class:`GraphVAE` (encoder, prior, latent tools, sampling and ELBO), ``decoder`` the
sequential valence-masked graph decoder, ``featurization`` the canonical graph arrays and their
content-keyed cache, ``table`` the featurised tables and batches.
"""
from .featurization import featurize, scan_atom_tokens
from .model import GraphVAE, gaussian_kl
from .table import GraphTable, collate

__all__ = ["GraphTable", "GraphVAE", "collate", "featurize", "gaussian_kl", "scan_atom_tokens"]
