"""The protocol every molgen model follows, and the registry of models by name."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .checkpoint import CheckpointError, load_state_into, read_config, read_weights, save_checkpoint

_REGISTRY: dict[str, type["GenerativeModel"]] = {}
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def register(cls: type["GenerativeModel"]) -> type["GenerativeModel"]:
    """Class decorator: make a model available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def model_class(name: str) -> type["GenerativeModel"]:
    """The model class registered under ``name``; a ValueError lists the valid names."""
    _import_models()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_models() -> list[str]:
    """Names of the registered models."""
    _import_models()
    return sorted(_REGISTRY)


def _import_models() -> None:
    import importlib

    for mod in ("edm", "autoregressive", "vae"):
        try:
            importlib.import_module(f"molgen.models.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"molgen.models.{mod}":
                raise


class GenerativeModel(nn.Module):
    """Base class: constructor keyword arguments are the config, saved as JSON beside the weights.

    Subclasses set ``name`` and implement ``loss(batch) -> (loss, logs)``, ``sample(n, seed=...)``
    and ``log_likelihood(molecules)``; they describe their training data with
    ``make_dataset(dataset, split)``.
    """

    name: ClassVar[str] = ""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config = dict(config)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__init__

        def wrapped(self: "GenerativeModel", *args: Any, **kw: Any) -> None:
            if args:
                raise TypeError(f"{cls.__name__} takes keyword arguments only")
            init(self, **kw)
            if type(self) is cls:
                defaults = {k: p.default for k, p in inspect.signature(init).parameters.items()
                            if p.default is not inspect.Parameter.empty}
                self.config = {**defaults, **kw}

        cls.__init__ = wrapped  # type: ignore[method-assign]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss; DistributedDataParallel needs the loss to go through forward()."""
        return self.loss(batch)

    def save_pretrained(self, folder: str | Path, metrics: dict[str, Any] | None = None,
                        weights: dict[str, torch.Tensor] | None = None) -> Path:
        return save_checkpoint(folder, self.name, self.config, weights or self.state_dict(), metrics)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "GenerativeModel":
        info = read_config(folder, expect_model=cls.name)
        try:
            model = cls(**info["config"])
        except TypeError as exc:
            raise CheckpointError(f"config.json in {folder} does not fit {cls.name}: {exc}") from None
        load_state_into(model, read_weights(folder, sha256=info.get("weights_sha256")), folder)
        model.checkpoint_dir = Path(folder)
        return model.to(device).eval()


def pretrained_path(model: str, dataset: str | None = None) -> Path:
    """Folder of a shipped checkpoint, e.g. ``pretrained/edm-qm9``."""
    cls = model_class(model)
    datasets = getattr(cls, "pretrained_datasets", ("qm9",))
    ds = dataset or datasets[0]
    if ds not in datasets:
        raise ValueError(f"no shipped {model} checkpoint for dataset {ds!r}; choose from {', '.join(datasets)}")
    return PRETRAINED_DIR / f"{model}-{ds}"


def load(model: str, dataset: str | None = None, checkpoint: str | Path | None = None,
         device: str | torch.device = "cpu") -> GenerativeModel:
    """Load a shipped (or given) checkpoint of a model by name, in eval mode on ``device``."""
    cls = model_class(model)
    folder = Path(checkpoint) if checkpoint else pretrained_path(model, dataset)
    if checkpoint is None and not (folder / "config.json").exists():
        raise CheckpointError(f"the {model} checkpoint is not installed at {folder}")
    return cls.from_pretrained(folder, device=device)
