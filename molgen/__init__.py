"""molgen: generative models for molecules, checked with RDKit.

    import molgen
    model = molgen.load("edm")             # shipped checkpoint, CPU by default
    out = model.sample(100, seed=0)        # SampleSet: RDKit Mols (None where invalid), SMILES, 3D coordinates
    out.to_sdf("samples.sdf")
    print(molgen.evaluate(out, reference="qm9").table())
    model.log_likelihood(out)              # nats per molecule: exact (ar), ELBO (vae), variational bound (edm)
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "sample", "evaluate", "list_models", "SampleSet"]


def load(model: str, dataset: str | None = None, checkpoint: str | None = None, device: str = "cpu"):
    """Load a model by name (``edm``, ``ar``, ``vae``) from its shipped checkpoint or ``checkpoint``."""
    from .models import load as _load

    return _load(model, dataset=dataset, checkpoint=checkpoint, device=device)


def sample(model: str, n: int, seed: int = 0, dataset: str | None = None, **kwargs: Any):
    """Load a shipped model and sample ``n`` molecules; returns a :class:`SampleSet`."""
    return load(model, dataset=dataset).sample(n, seed=seed, **kwargs)


def evaluate(molecules: Any, reference: str | None = "qm9", **kwargs: Any):
    """Validity, uniqueness, novelty, stability, FCD, MOSES/GuacaMol metrics of molecules."""
    from .metrics.evaluate import evaluate as _evaluate

    return _evaluate(molecules, reference=reference, **kwargs)


def list_models() -> list[str]:
    """Names of the available models."""
    from .models import list_models as _list

    return _list()


def __getattr__(name: str) -> Any:
    if name == "SampleSet":
        from .samples import SampleSet

        return SampleSet
    raise AttributeError(f"module 'molgen' has no attribute {name!r}")
