"""The protocol every molgen model follows, and the registry of models by name."""
from __future__ import annotations

import abc
import contextlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

import torch
from torch import nn

from .checkpoint import CheckpointError, build_from_checkpoint, read_config, save_checkpoint

_REGISTRY: dict[str, type["GenerativeModel"]] = {}
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def register(cls: type["GenerativeModel"]) -> type["GenerativeModel"]:
    """Class decorator: make a model available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def model_class(name: str) -> type["GenerativeModel"]:
    """The model class registered under ``name``; a ValueError lists the valid names."""
    _import_models()
    if name in _MISSING:
        raise ValueError(f"the {name} model needs the {_MISSING[name]} package, which is not installed")
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_models() -> list[str]:
    """Names of the registered model classes (``ar``, ``edm``, ``vae``); the shipped checkpoints are
    :func:`list_pretrained` (``molgen.list_models()``)."""
    _import_models()
    return sorted(_REGISTRY)


_MODULES = {"edm": "edm", "ar": "ar", "vae": "vae"}
_MISSING: dict[str, str] = {}  # model name -> the third-party package its module could not import


def _import_models() -> None:
    """Import every model module. One whose third-party dependency is missing (RDKit on a bare GPU
    machine, say) is left out, so that the others still work; asking for it names the package."""
    import importlib

    for name, mod in _MODULES.items():
        if name in _REGISTRY or name in _MISSING:
            continue
        try:
            importlib.import_module(f"molgen.models.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name == f"molgen.models.{mod}":
                continue
            if exc.name and not exc.name.startswith("molgen"):
                _MISSING[name] = exc.name.split(".")[0]
                continue
            raise


@contextlib.contextmanager
def evaluating(module: nn.Module, grad: bool = False) -> Iterator[nn.Module]:
    """``module`` in eval mode for the block, without gradients unless ``grad`` (a search that
    differentiates through the model); its training mode is restored after, errors included."""
    was_training = module.training
    module.eval()
    try:
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            yield module
    finally:
        module.train(was_training)


def make_generator(seed: int | None, device: str | torch.device = "cpu") -> torch.Generator | None:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``; None for ``seed=None`` (unseeded draws
    from the global RNG). Models draw their randomness from it, never by seeding the global RNG."""
    if seed is None:
        return None
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


class GenerativeModel(nn.Module, abc.ABC):
    """Base class: constructor keyword arguments are the config, saved as JSON beside the weights.

    A model sets ``name`` (its registry key) and implements the contract:

    - ``loss(batch) -> (loss, logs)``: the training objective on a batch of its dataset;
    - ``sample(n, seed=0, ...) -> SampleSet``: n molecules, reproducible for a seed, drawn from a
      ``torch.Generator`` (:func:`make_generator`), leaving the training mode as it was (:func:`evaluating`);
    - ``log_likelihood(molecules, ...) -> np.ndarray``: float64 nats per molecule (exact, ELBO or
      variational bound), NaN for a molecule it cannot score.

    ``generate(n)`` (SMILES) makes every model a generator for GuacaMol's and MOSES' benchmarks.
    How a model is trained on a dataset (data, defaults, evaluators) lives in ``molgen.training.<name>``,
    so that models import neither training nor datasets.
    """

    name: ClassVar[str] = ""
    #: what ``log_likelihood`` is: "exact", "elbo" or "vlb" (a variational bound)
    likelihood_kind: ClassVar[str] = "exact"

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

    @abc.abstractmethod
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The training loss on ``batch`` and a dict of scalars to log."""

    @abc.abstractmethod
    def sample(self, n: int, seed: int | None = 0, **kwargs: Any) -> Any:
        """n molecules as a :class:`~molgen.samples.SampleSet`."""

    @abc.abstractmethod
    def log_likelihood(self, molecules: Any, **kwargs: Any) -> np.ndarray:
        """log p (or its bound) per molecule in nats, float64, NaN where a molecule cannot be scored."""

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss; DistributedDataParallel needs the loss to go through forward()."""
        return self.loss(batch)

    def score(self, molecules: Any, **kwargs: Any):
        """One row per molecule (none dropped): ``smiles``, ``nll`` (nats), ``nll_per_atom``,
        ``percentile`` among this checkpoint's test-split molecules (NaN if its model card has no
        ``score_reference``), ``bound`` (exact, elbo or vlb) and ``reason`` where a row has no score;
        a pandas DataFrame (see :mod:`molgen.models.scoring`). ``kwargs`` go to ``log_likelihood``."""
        from .card import read_card
        from .scoring import score_table

        folder = getattr(self, "checkpoint_dir", None)
        ref = read_card(folder).get("score_reference") if folder is not None else None
        quantiles = np.asarray(ref["quantiles"], dtype=np.float64) if isinstance(ref, dict) and ref.get("quantiles") else None
        return score_table(self, molecules, quantiles, **kwargs)

    def generate(self, number_samples: int) -> list[str]:
        """GuacaMol's and MOSES' generator interface: ``number_samples`` SMILES (``""`` for an invalid
        sample, which both count as invalid). Each call draws new molecules: call k (from 0) uses seed k,
        so a benchmark run is reproducible from a freshly loaded model."""
        seed = getattr(self, "_generate_calls", 0)
        self._generate_calls = seed + 1
        return [s or "" for s in self.sample(int(number_samples), seed=seed).smiles]

    def save_pretrained(self, folder: str | Path, metrics: dict[str, Any] | None = None,
                        weights: dict[str, torch.Tensor] | None = None) -> Path:
        return save_checkpoint(folder, self.name, self.config, weights or self.state_dict(), metrics)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "GenerativeModel":
        folder, device = resolve_pretrained(folder, model=cls.name), resolve_device(device)
        model = build_from_checkpoint(cls, folder, cls.name)
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


# --- shipped checkpoints by name ------------------------------------------------------------------

#: Metrics shown by :func:`list_pretrained`, in this order, where a checkpoint's metrics.json has them.
HEADLINE_METRICS = ("validity", "valid_and_unique", "novelty", "fcd", "atom_stability", "molecule_stability")


@dataclass(frozen=True)
class PretrainedInfo:
    """A shipped checkpoint: ``name`` (``edm-qm9``) loads it with ``molgen.load(name)``.

    ``metrics`` holds the headline numbers of its model card (``metrics.json``; fractions in [0, 1],
    FCD unitless) for ``n_samples`` samples; ``path`` is the checkpoint folder.
    """

    name: str
    model: str
    dataset: str
    metrics: dict[str, float]
    n_samples: int | None
    epochs: float | None
    path: Path


def _headline(card: dict[str, Any]) -> tuple[dict[str, float], int | None]:
    """The headline metrics of a model card: of the nested dicts that have ``validity`` (e.g.
    ``evaluation.metrics``, ``evaluation.molgen_evaluate``), the one with the most headline keys
    (the first of those in file order), and the ``n_samples`` next to or above it."""
    best: tuple[int, dict[str, float], int | None] = (0, {}, None)

    def walk(node: Any, n: int | None) -> None:
        nonlocal best
        if not isinstance(node, dict):
            return
        n = node.get("n_samples", n) if isinstance(node.get("n_samples"), int) else n
        if isinstance(node.get("validity"), (int, float)):
            found = {k: float(node[k]) for k in HEADLINE_METRICS if isinstance(node.get(k), (int, float))}
            if len(found) > best[0]:
                best = (len(found), found, n)
        for key, value in node.items():
            if key != "learning_curve":
                walk(value, n)

    walk(card, None)
    return best[1], best[2]


def list_pretrained() -> list[PretrainedInfo]:
    """The shipped checkpoints (folders of ``molgen/pretrained`` with a config.json), sorted by name,
    with the headline metrics of each one's ``metrics.json``."""
    out = []
    for folder in sorted(PRETRAINED_DIR.iterdir()) if PRETRAINED_DIR.is_dir() else []:
        if not (folder / "config.json").is_file():
            continue
        model = read_config(folder)["model"]
        card_path = folder / "metrics.json"
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        metrics, n = _headline(card)
        dataset = card.get("dataset") or folder.name.partition("-")[2]
        epochs = card.get("epochs")
        out.append(PretrainedInfo(folder.name, model, dataset, metrics, n,
                                  float(epochs) if isinstance(epochs, (int, float)) else None, folder))
    return out


def _choices() -> str:
    return ", ".join([*list_models(), *(p.name for p in list_pretrained())])


def resolve_pretrained(name: str | Path, model: str | None = None, dataset: str | None = None) -> Path:
    """The checkpoint folder that ``name`` means: a shipped checkpoint (``edm-qm9``), a model name
    (``edm``, its first shipped dataset or ``dataset``) or a checkpoint folder. ``model`` (a class's
    name) rejects a shipped checkpoint of another model. Unknown names: a ValueError listing the choices.
    """
    if isinstance(name, Path):
        return name
    text = str(name)
    shipped = {p.name: p for p in list_pretrained()}
    if text in shipped:
        info = shipped[text]
        if model is not None and info.model != model:
            raise ValueError(f"{text!r} is a checkpoint of the {info.model} model, not of {model}")
        if dataset is not None and info.dataset != dataset:
            raise ValueError(f"{text!r} is trained on {info.dataset}, not {dataset!r}")
        return info.path
    if text in list_models():
        if model is not None and text != model:
            raise ValueError(f"{text!r} names another model than {model}")
        return pretrained_path(text, dataset)
    path = Path(text).expanduser()
    if path.is_dir() or any(sep in text for sep in ("/", "\\")) or text.startswith("."):
        return path  # a folder (a missing one fails in read_config with its own message)
    raise ValueError(f"unknown model or checkpoint {text!r}; choose from {_choices()}, or give a checkpoint folder")


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """``"auto"`` (or None): CUDA when available, else CPU. A CUDA device that this torch cannot use
    is a one-line ValueError (a CPU-only build, or no GPU visible)."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from None
    if dev.type == "cuda":
        if torch.version.cuda is None:
            raise ValueError(f"device {str(device)!r} asked for, but this torch ({torch.__version__}) is a CPU-only "
                             "build; use device='cpu' or 'auto', or install a CUDA build of torch")
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} asked for, but no CUDA device is available; "
                             "use device='cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} asked for, but only {torch.cuda.device_count()} CUDA "
                             f"device(s) are visible (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return dev


def load(model: str | Path, dataset: str | None = None, checkpoint: str | Path | None = None,
         device: str | torch.device = "cpu") -> GenerativeModel:
    """Load a model in eval mode on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``).

    ``model``: a shipped checkpoint (``"edm-qm9"``, see :func:`list_pretrained`), a model name
    (``"edm"``, ``"ar"``, ``"vae"``: its shipped checkpoint for ``dataset``, default the first) or a
    checkpoint folder. ``checkpoint``: a folder to load instead of the shipped one.
    """
    dev = resolve_device(device)
    if checkpoint is not None:
        shipped = {p.name: p.model for p in list_pretrained()}
        cls = model_class(shipped.get(str(model), str(model)))
        return cls.from_pretrained(Path(checkpoint), device=dev)
    folder = resolve_pretrained(model, dataset=dataset)
    if not (folder / "config.json").exists() and str(model) in list_models():
        raise CheckpointError(f"the {model} checkpoint is not installed at {folder}")
    cls = model_class(read_config(folder)["model"])
    return cls.from_pretrained(folder, device=dev)
