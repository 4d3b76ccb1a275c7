"""The autoregressive atom-by-atom graph generator, registered as ``"ar"``.

``model`` holds :class:`ARModel` (network, likelihood, sampling entry point), ``decode`` the
KV-cached sampler, ``graph_state`` the graph state machine (step by step and teacher-forced),
``actions`` the action sequences in flat arrays (no RDKit: a bare GPU machine trains from them) and
``encoding`` the linearisation of molecules into them, with its content-keyed cache (RDKit).
"""
from typing import Any

from .actions import ActionDataset, EncodedSet, vocabulary
from .model import ARModel

__all__ = ["ARModel", "ActionDataset", "EncodedSet", "delinearize", "encode", "encode_cached", "linearize",
           "vocabulary"]


def __getattr__(name: str) -> Any:  # the RDKit side, imported when first asked for
    if name in ("delinearize", "encode", "encode_cached", "linearize"):
        from . import encoding
        return getattr(encoding, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
