"""The autoregressive atom-by-atom graph generator, registered as ``"ar"``.

``model`` holds :class:`ARModel` (network, likelihood, sampling entry point), ``decode`` the
KV-cached sampler, ``graph_state`` the graph state machine (step by step and teacher-forced),
``encoding`` the canonical action sequences and their content-keyed cache.
"""
from .encoding import ActionDataset, EncodedSet, delinearize, encode, encode_cached, linearize, vocabulary
from .model import ARModel

__all__ = ["ARModel", "ActionDataset", "EncodedSet", "delinearize", "encode", "encode_cached", "linearize",
           "vocabulary"]
