"""Scoring generators and data for the benchmark report: :func:`score`, :func:`data_rows`, :func:`run_suite`.

A *row* (:class:`Row`) is one generator (or one draw of data) evaluated against one dataset:
``molgen.evaluate`` metrics, the NLL on test molecules, the sampling
and training speed with memory, and where the molecules came from. A *run* (:class:`Run`) is the
rows of one dataset plus the machine and command; it is what ``benchmarks/results/<name>.json``
holds and what :mod:`benchmarks.report` turns into Markdown.

The metrics are ``molgen.evaluate``'s against the dataset (:mod:`molgen.evaluation`): with a reference
it gives unique@1k / @10k, IntDiv1 / IntDiv2 and Filters, and for QM9 and MOSES also GuacaMol's KL
score and FCD score against GuacaMol's seeded draw of 10,000 training molecules.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem, rdBase

from molgen.datasets import dataset_smiles
from molgen.samples import SampleSet

__all__ = ["Row", "Run", "score", "as_sample_set", "data_rows", "run_suite", "nll_on_test", "SHIPPED_MODELS",
           "NLL_KINDS", "default_tables"]

SHIPPED_MODELS = ("ar", "vae", "edm")
#: What each molgen model's ``log_likelihood`` gives, negated.
NLL_KINDS = {"ar": "exact, canonical order", "vae": "-ELBO, upper bound", "edm": "variational bound"}
#: Sampling settings that switch a molgen model's validity checks off ("valid w/o check").
_UNCONSTRAINED = {"ar": {"mask": False}, "vae": {"constrained": False}}
Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def _clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities become None, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


@dataclass
class Row:
    """One generator (``role="model"``) or one draw of data (``role="data"``) scored against a dataset.

    ``metrics`` holds fractions in [0, 1] (NaN or None where undefined); ``nll`` the mean negative
    log-likelihood (nats per molecule) of test molecules and what kind of number it is; ``speed``
    one entry per device; ``tables`` the report tables the row appears in. ``molecules`` (not saved)
    keeps the scored molecules for figures.
    """

    name: str
    dataset: str
    role: str = "model"
    n_molecules: int = 0
    input: str = "2d"
    reference: str = ""
    metrics: dict[str, float | None] = field(default_factory=dict)
    nll: dict[str, Any] | None = None
    samples: dict[str, Any] = field(default_factory=dict)
    speed: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None
    molecules: SampleSet | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return _clean({f.name: getattr(self, f.name) for f in fields(self) if f.name != "molecules"})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Row":
        known = {f.name for f in fields(cls)} - {"molecules"}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Run:
    """The rows of one dataset, with how and where they were measured."""

    name: str
    dataset: str
    rows: list[Row] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    date: str = ""
    seconds: float | None = None
    figures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> "Run":
        """Append a row (e.g. your own model's :func:`score`); it must be on this run's dataset."""
        if row.dataset != self.dataset:
            raise ValueError(f"row {row.name!r} was scored on {row.dataset!r}, this run is on {self.dataset!r}")
        self.rows.append(row)
        return self

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "rows"}
        out["rows"] = [r.to_dict() for r in self.rows]
        return _clean(out)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Run":
        known = {f.name for f in fields(cls)} - {"rows"}
        return cls(rows=[Row.from_dict(r) for r in data.get("rows", [])],
                   **{k: v for k, v in data.items() if k in known})

    def save(self, path: str | os.PathLike) -> Path:
        import json

        from molgen.chem.files import write_text

        return write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Run":
        import json

        return cls.from_dict(json.loads(Path(path).read_text()))


# --- molecules -----------------------------------------------------------------------------------
def as_sample_set(molecules: Any) -> SampleSet:
    """A :class:`~molgen.samples.SampleSet` from what a generator returns or a file holds.

    Accepts a SampleSet; a :class:`~molgen.chem.io.ReadResult` or the path of an .sdf / .xyz / .smi /
    .csv file (gzip allowed; 3D entries keep their coordinates); or a sequence of SMILES strings,
    RDKit Mols and None (None and unparsable SMILES count as invalid samples).
    """
    from molgen.chem.io import ReadResult, read_molecules

    if isinstance(molecules, SampleSet):
        return molecules
    if isinstance(molecules, (str, os.PathLike)):
        molecules = read_molecules(molecules)
    if isinstance(molecules, ReadResult):
        if molecules.is_3d:
            return SampleSet.from_3d(molecules.atomic_numbers, molecules.positions, file=str(molecules.path))
        return SampleSet.from_mols(molecules.mols, file=str(molecules.path))
    if isinstance(molecules, Chem.Mol) or not isinstance(molecules, Iterable):
        raise TypeError(f"cannot score a {type(molecules).__name__}: a generator's sample(n) should return "
                        "SMILES strings, RDKit Mols or a molgen SampleSet")
    items = list(molecules)
    bad = next((x for x in items if x is not None and not isinstance(x, (str, Chem.Mol))), None)
    if bad is not None:
        raise TypeError(f"cannot score a sample of type {type(bad).__name__}: use SMILES strings, RDKit Mols "
                        "or a molgen SampleSet")
    with rdBase.BlockLogs():
        mols = [Chem.MolFromSmiles(x) if isinstance(x, str) and x else x if isinstance(x, Chem.Mol) else None
                for x in items]
    return SampleSet.from_mols(mols)


def evaluate_samples(samples: SampleSet, dataset: str, fcd: bool = True
                     ) -> tuple[dict[str, float], list[str], str, str]:
    """``molgen.evaluate`` against the dataset: (metrics, notes, input kind, how tables name the
    comparison set). It gives every set metric of the report, for QM9 and file references too."""
    from molgen.evaluation import evaluate

    result = evaluate(samples, reference=dataset, fcd=fcd)
    return dict(result.metrics), list(result.notes), result.input_kind, result.reference_label


# --- likelihood ----------------------------------------------------------------------------------
def test_molecules(dataset: str, n: int, three_d: bool = False, seed: int = 0) -> tuple[list, str]:
    """``n`` random test-split molecules (seeded): SMILES, or for QM9 with ``three_d`` (atomic numbers,
    positions in Angstrom) records. Returns them and a description."""
    rng = np.random.default_rng(seed)
    if dataset == "qm9":
        from molgen.datasets.qm9 import indices, load_qm9_arrays

        arrays, idx = load_qm9_arrays(), indices("test")
        pick = idx[np.sort(rng.choice(idx.size, min(n, idx.size), replace=False))]
        items = [arrays.molecule(int(i)) for i in pick] if three_d else arrays.smiles[pick].tolist()
        what = "with hydrogens and DFT coordinates" if three_d else "SMILES"
        return items, f"{pick.size} random QM9 test molecules ({what}, seed {seed})"
    if dataset == "moses":
        from molgen.datasets.moses import load_moses

        test = load_moses("test")
        pick = np.sort(rng.choice(len(test), min(n, len(test)), replace=False))
        return [test[i] for i in pick], f"{pick.size} random MOSES test molecules (seed {seed})"
    raise ValueError(f"no test split for {dataset!r}: NLL needs dataset 'qm9' or 'moses'")


def nll_on_test(model: Any, dataset: str, n: int, three_d: bool = False, seed: int = 0) -> dict[str, Any]:
    """Mean of ``-model.log_likelihood(test molecules)`` in nats per molecule, over those it scores."""
    items, what = test_molecules(dataset, n, three_d, seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ll = np.asarray(model.log_likelihood(items), dtype=np.float64)
    nll = -ll[np.isfinite(ll)]
    kind = NLL_KINDS.get(getattr(model, "name", ""), "-log_likelihood as the model returns it")
    return {"mean": float(nll.mean()) if nll.size else float("nan"),
            "median": float(np.median(nll)) if nll.size else float("nan"),
            "molecules": len(items), "scored": int(nll.size), "kind": kind, "test_set": what,
            "units": "nats per molecule", "seconds": round(time.perf_counter() - start, 2)}


# --- scoring -------------------------------------------------------------------------------------
def _dataset_key(dataset: str | os.PathLike) -> str:
    text = str(dataset)
    return text.lower() if text.lower() in ("qm9", "moses") else text


def default_tables(dataset: str) -> list[str]:
    """The report tables a row belongs to (keys of :data:`benchmarks.report.TABLES`)."""
    tables = ["quality", "moses", "guacamol"]
    if dataset == "qm9":
        tables.insert(1, "qm9_2d")
    return tables


def _is_molgen(generator: Any) -> bool:
    from molgen.models.base import GenerativeModel

    return isinstance(generator, GenerativeModel)


def _device_of(generator: Any) -> str:
    try:
        return str(generator.device)
    except Exception:  # not a torch module, or one without parameters
        return "cpu"


def _scalars(info: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool)) or v is None}


def speed_entry(generator: Any, dataset: str, device: str, sample_timing: dict | None = None,
                speed_n: int = 64, train_step: bool = True, seed: int = 0) -> dict[str, Any]:
    """Sampling throughput (``sample_timing`` if the samples were already timed on ``device``, else a
    timed call of ``speed_n`` molecules) and, for molgen models, seconds per training step (batch 64)."""
    from .speed import device_label, timed_sample, train_step_seconds, training_batches

    entry: dict[str, Any] = {"device": device_label(device)}
    if sample_timing is None:
        _, sample_timing = timed_sample(generator, speed_n, seed=seed, device=device)
    entry["sample"] = sample_timing
    if train_step and _is_molgen(generator) and hasattr(generator, "loss"):
        try:
            batches = training_batches(generator, dataset, size=64)
        except (TypeError, ValueError, FileNotFoundError) as exc:
            entry["train_step_note"] = f"not timed: {exc}"
        else:
            entry["train_step"] = train_step_seconds(generator, batches, device=device, batch_size=64)
    return entry


def score(generator: Any = None, n: int = 1000, dataset: str | os.PathLike = "qm9", name: str | None = None, *,
          seed: int | None = 0, fcd: bool = True, nll_molecules: int = 0, samples: Any = None,
          sampled_by: str | None = None, speed: bool = True, speed_n: int | None = None,
          train_step: bool = True, role: str = "model", tables: list[str] | None = None,
          log: Log = _quiet, **sample_kwargs: Any) -> Row:
    """Score a generator against a dataset: one :class:`Row` for the report.

    ``generator``: anything with ``sample(n)`` returning SMILES strings, RDKit Mols or a molgen
    SampleSet (``seed`` is passed when its ``sample`` takes it, ``sample_kwargs`` always).
    ``dataset``: ``"qm9"``, ``"moses"`` or the path of a reference molecule file. ``samples``:
    molecules drawn earlier (a file path, a SampleSet or a list) to score instead of sampling
    ``n``; ``sampled_by`` says how they were drawn. ``nll_molecules``: score that many test molecules
    with ``generator.log_likelihood`` (if it has one). ``speed``: record sampling molecules/s and
    memory (the timed call is the sampling itself, or a separate ``speed_n`` call when ``samples``
    were given) and, for molgen models with ``train_step``, seconds per training step.
    """
    if generator is None and samples is None:
        raise ValueError("give a generator or samples")
    if generator is not None and not callable(getattr(generator, "sample", None)):
        raise TypeError(f"a {type(generator).__name__} has no sample(n) method")
    from .speed import timed_sample

    ds = _dataset_key(dataset)
    name = name or getattr(generator, "name", None) or (type(generator).__name__ if generator is not None
                                                        else "samples")
    start = time.perf_counter()
    device = _device_of(generator)
    timing = None
    if samples is not None:
        mols = as_sample_set(samples)
        source = str(samples) if isinstance(samples, (str, os.PathLike)) else None
        provenance = {"source": "file" if source else "given", "file": source, "sampled_by": sampled_by}
        log(f"{name}: {len(mols)} molecules {'from ' + source if source else 'given'}")
    else:
        log(f"{name}: sampling {n} molecules on {device}")
        out, timing = timed_sample(generator, n, seed=seed, device=device, **sample_kwargs)
        mols = as_sample_set(out)
        provenance = {"source": "sampled in this run", "n_requested": n, "seed": seed,
                      "settings": {**_scalars(mols.info), **_scalars(sample_kwargs)}}
        log(f"{name}: {n} molecules in {timing['seconds']:.1f} s ({timing['molecules_per_second']:,.1f}/s)")
    metrics, notes, kind, label = evaluate_samples(mols, ds, fcd=fcd)
    row = Row(name=name, dataset=ds, role=role, n_molecules=len(mols), input=kind, reference=label, metrics=metrics,
              samples=provenance, notes=notes, tables=tables or default_tables(ds),
              molecules=mols)
    model_name = getattr(generator, "name", None)
    if samples is None and _is_molgen(generator) and model_name in _UNCONSTRAINED:
        raw = generator.sample(n, seed=seed or 0, **_UNCONSTRAINED[model_name])
        row.metrics["validity_unconstrained"] = raw.validity
        row.samples["unconstrained"] = _UNCONSTRAINED[model_name]
    if generator is not None and nll_molecules > 0:
        if callable(getattr(generator, "log_likelihood", None)) and ds in ("qm9", "moses"):
            log(f"{name}: NLL of {nll_molecules} {ds} test molecules")
            row.nll = nll_on_test(generator, ds, nll_molecules, three_d=kind == "3d", seed=0)
        else:
            row.notes.append("NLL not measured (no log_likelihood method, or no test split for this reference)")
    if generator is not None and speed:
        log(f"{name}: speed and memory on {device}")
        row.speed.append(speed_entry(generator, ds, device, timing, speed_n or min(n, 1000), train_step,
                                     seed or 0))
    row.seconds = round(time.perf_counter() - start, 1)
    log(f"{name}: scored in {row.seconds:.1f} s")
    return row


# --- the data itself -------------------------------------------------------------------------------
def data_rows(dataset: str, n: int, fcd: bool = True, seed: int = 0, log: Log = _quiet) -> list[Row]:
    """Reference rows measured on the data, scored exactly like the models.

    QM9: the test split with its DFT geometries (EDM's "data" row: stability, validity, uniqueness;
    scored without FCD, as the test split is the comparison set) and ``n`` random training molecules
    against the test split (MOSES' "Train" row: the set metrics a perfect model of the training
    distribution would get at this sample size; novelty is 0 by construction). MOSES: ``n`` random
    training molecules against the test set.
    """
    rng = np.random.default_rng(seed)
    rows = []
    if dataset == "qm9":
        from molgen.datasets.qm9 import indices, load_qm9_arrays

        arrays, idx = load_qm9_arrays(), indices("test")
        pick = idx if n >= idx.size else idx[np.sort(rng.choice(idx.size, n, replace=False))]
        zs, xs = zip(*(arrays.molecule(int(i)) for i in pick))
        what = "all" if pick.size == idx.size else f"{pick.size:,} random"
        rows.append(score(samples=SampleSet.from_3d(zs, xs), dataset="qm9", fcd=False, speed=False, role="data",
                          name=f"QM9 test split, {what} (DFT geometries)", tables=["quality", "qm9_2d"], log=log,
                          sampled_by=f"{what} molecules of the QM9 test split (seed {seed}) with their DFT "
                                     "coordinates"))
    elif dataset != "moses":
        return rows
    train = dataset_smiles(dataset, "train")
    pick = np.sort(rng.choice(len(train), min(n, len(train)), replace=False))
    label = "QM9" if dataset == "qm9" else "MOSES"
    rows.append(score(samples=[train[i] for i in pick], dataset=dataset, fcd=fcd, speed=False, role="data",
                      name=f"{label} train, {pick.size:,} random", tables=["moses", "guacamol"], log=log,
                      sampled_by=f"{pick.size:,} random {label} training SMILES (seed {seed}, without replacement)"))
    return rows


# --- the shipped models -----------------------------------------------------------------------------
def run_suite(models: Sequence[str] = SHIPPED_MODELS, dataset: str = "qm9", n: int = 10_000, *,
              model_n: Mapping[str, int] | None = None, samples: Mapping[str, str] | None = None,
              sampled_by: Mapping[str, str] | None = None, nll_molecules: int = 500,
              speed_n: Mapping[str, int] | None = None, fcd: bool = True, seed: int = 0, device: str = "cpu",
              speed_devices: Sequence[str] = (), data: bool = True, name: str | None = None,
              log: Log = _quiet) -> Run:
    """Score the shipped models (and the data) on one dataset; returns the :class:`Run`.

    ``model_n``: molecules per model where it differs from ``n``; ``samples``: model name -> file of
    molecules drawn earlier (then that model is not sampled here, but still timed on ``speed_n``
    molecules); ``speed_devices``: further devices on which sampling and a training step are timed.
    A model without a checkpoint for the dataset is skipped with a note.
    """
    import molgen
    from molgen.models.checkpoint import CheckpointError

    from .speed import machine

    start = time.perf_counter()
    samples, sampled_by, model_n, speed_n = samples or {}, sampled_by or {}, model_n or {}, speed_n or {}
    unknown = sorted(set(samples) - set(models))
    if unknown:
        raise ValueError(f"samples given for {', '.join(unknown)}, which is not among the models {', '.join(models)}")
    run = Run(name=name or f"suite-{dataset}", dataset=dataset, machine=machine(),
              date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              settings={"n": n, "model_n": dict(model_n), "nll_molecules": nll_molecules, "fcd": fcd, "seed": seed,
                        "device": device, "speed_devices": list(speed_devices), "speed_n": dict(speed_n),
                        "samples": dict(samples), "sampled_by": dict(sampled_by)})
    for model in models:
        try:
            generator = molgen.load(model, dataset=dataset, device=device)
        except (ValueError, CheckpointError) as exc:
            run.notes.append(f"{model}: skipped ({exc})")
            log(run.notes[-1])
            continue
        k = model_n.get(model, n)
        row = score(generator, k, dataset, name=model, seed=seed, fcd=fcd, nll_molecules=nll_molecules,
                    samples=samples.get(model), sampled_by=sampled_by.get(model),
                    speed_n=speed_n.get(model, min(k, 1000)), log=log)
        for other in speed_devices:
            if other != device:
                log(f"{model}: speed and memory on {other}")
                row.speed.append(speed_entry(generator.to(other), dataset, other, None,
                                             speed_n.get(model, min(k, 1000)), True, seed))
                generator.to(device)
        run.add(row)
    if data:
        for row in data_rows(dataset, n, fcd=fcd, seed=seed, log=log):
            run.add(row)
    run.seconds = round(time.perf_counter() - start, 1)
    return run
