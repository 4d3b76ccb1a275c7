"""molgen: generative models for molecules, checked with RDKit.

    import molgen
    molgen.list_models()                   # shipped checkpoints: edm-qm9, ar-qm9, ar-moses, vae-qm9, vae-moses
    model = molgen.load("edm")             # = "edm-qm9"; CPU by default, device="auto" for a GPU if there is one
    out = model.sample(100, seed=0)        # SampleSet: RDKit Mols (None where invalid), SMILES, 3D coordinates
    for mol in out: ...                    # RDKit Mols, None for invalid samples; out[0], out[:10], out.to_df()
    out.to_sdf("samples.sdf")
    print(molgen.evaluate(out, reference="qm9").table())
    model.log_likelihood(out)              # nats per molecule: exact (ar), ELBO (vae), variational bound (edm)

PyTorch Geometric users get molgen's data as ``molgen.QM9Dataset`` (3D, DFT properties) and
``molgen.MOSESDataset`` (graphs), PyG ``InMemoryDataset``s with molgen's splits.

Install: ``pip install molgen-models`` (the import name is ``molgen``); ``molgen-models[qm9]`` adds
the QM9 data (qm9pack) that training and QM9 references need. Command line: ``molgen --help``
(also ``python -m molgen --help``; see :mod:`molgen.cli`).
"""
from __future__ import annotations

import sys
from os import PathLike
from types import ModuleType
from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "sample", "evaluate", "list_models", "SampleSet"]


def load(model: str | PathLike = "edm", dataset: str | None = None, checkpoint: str | PathLike | None = None,
         device: str = "cpu"):
    """Load a model in eval mode.

    ``model``: a shipped checkpoint (``"edm-qm9"``, ``"ar-moses"``; see :func:`list_models`), a model
    name (``"edm"``, ``"ar"``, ``"vae"``: its shipped checkpoint for ``dataset``, default qm9) or the
    path of a checkpoint folder (a name wins over a folder of the same name: write ``"./edm"``).
    ``device``: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
    A device this torch cannot use is a ValueError.
    """
    from .models import load as _load

    return _load(model, dataset=dataset, checkpoint=checkpoint, device=device)


def sample(model: str, n: int, seed: int = 0, dataset: str | None = None, **kwargs: Any):
    """Load a shipped model and sample ``n`` molecules; returns a :class:`SampleSet`."""
    return load(model, dataset=dataset).sample(n, seed=seed, **kwargs)


def evaluate(molecules: Any, reference: str | PathLike | None = None, **kwargs: Any):
    """Validity, uniqueness, stability, properties; with a ``reference`` (``"qm9"``, ``"moses"`` or a
    molecule file) also novelty, FCD and the MOSES / GuacaMol metrics. The default, no reference, is
    the same as ``molgen evaluate``'s; ``"qm9"`` needs the ``qm9`` extra."""
    from .evaluation import evaluate as _evaluate

    return _evaluate(molecules, reference=reference, **kwargs)


def list_models():
    """The shipped checkpoints, sorted by name: each a :class:`~molgen.models.PretrainedInfo` with
    ``name`` (what :func:`load` takes), ``model``, ``dataset``, headline ``metrics`` from its
    metrics.json (validity, novelty, FCD, ...; fractions in [0, 1]) and ``path``. The model
    classes are ``molgen.models.list_models()``."""
    from .models import list_pretrained

    return list_pretrained()


class _Package(ModuleType):
    """The ``molgen`` module, whose API functions are never replaced by a submodule of the same name.

    ``python -m molgen.sample`` and ``python -m molgen.evaluate`` (the older spellings of ``molgen
    sample`` / ``molgen evaluate``) are modules named like the API functions :func:`sample` and
    :func:`evaluate`. Importing such a module makes the import system set ``molgen.<name>`` to it,
    so that ``molgen.evaluate(...)`` would break depending on what was imported before. The import
    system's only hook for that is this attribute assignment: it keeps the function. The modules stay
    reachable as ``sys.modules["molgen.evaluate"]`` and through ``from molgen.evaluate import main``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        current = self.__dict__.get(name)
        if isinstance(value, ModuleType) and name in __all__ and callable(current) \
                and not isinstance(current, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name == "SampleSet":
        from .samples import SampleSet

        return SampleSet
    if name in ("QM9Dataset", "MOSESDataset"):  # PyG datasets over molgen's data (molgen.datasets.pyg)
        from . import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module 'molgen' has no attribute {name!r}")
