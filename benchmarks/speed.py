"""Speed and memory measurements for the benchmark suite.

- :func:`timed_sample`: one ``generator.sample(n)`` call, timed with a wall clock (molecules per
  second = n / seconds; the call includes whatever the generator does, for molgen models decoding
  plus building and sanitising the RDKit molecules), with the memory it used.
- :func:`train_step_seconds`: median seconds of a training step of a molgen model (a batch from the
  model's dataset through ``model.loss``, ``backward()`` and an AdamW step) over a few repeats after
  one warm-up step, on a copy of the model so the benchmarked weights stay untouched.
- :class:`PeakMemory`: the peak resident set size (RSS) of this process while a block runs. On
  Linux the kernel's high-water mark is reset first (``/proc/self/clear_refs``), so the peak is that
  of the block; elsewhere ``ru_maxrss`` is the peak since the process started (said in ``method``).
  The increase over the RSS before the block (taken after garbage collection and glibc's
  ``malloc_trim``) is what the block itself needed. On a GPU,
  ``torch.cuda.max_memory_allocated`` (tensors only, not the CUDA context) is reported too.
"""
from __future__ import annotations

import copy
import inspect
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.timing import cpu_name

__all__ = ["PeakMemory", "timed_sample", "train_step_seconds", "training_batches", "device_label", "machine"]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so that the
    resident size before a measurement does not include memory the measured call would reuse."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _cuda(device: str | torch.device | None) -> bool:
    return device is not None and torch.device(device).type == "cuda"


class PeakMemory:
    """Context manager: ``peak_rss_mib``, ``rss_before_mib``, ``increase_mib`` (and ``cuda_peak_mib``)."""

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = device
        self.method = ""
        self.result: dict[str, Any] = {}

    def __enter__(self) -> "PeakMemory":
        _release_freed_memory()
        self._before = _status_kib("VmRSS")
        try:
            _CLEAR_REFS.write_text("5")  # reset VmHWM to the current RSS
            self.method = "VmHWM after a reset (peak RSS of this block)"
        except OSError:
            self.method = "ru_maxrss (peak RSS since the process started)"
        if _cuda(self.device):
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _status_kib("VmHWM") if self.method.startswith("VmHWM") else None
        peak = peak if peak is not None else _maxrss_kib()
        before = self._before if self._before is not None else 0
        self.result = {"peak_rss_mib": round(peak / 1024, 1), "rss_before_mib": round(before / 1024, 1),
                       "increase_mib": round(max(peak - before, 0) / 1024, 1), "method": self.method}
        if _cuda(self.device):
            torch.cuda.synchronize(self.device)
            self.result["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def timed_sample(generator: Any, n: int, seed: int | None = 0, device: str | torch.device | None = None,
                 **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """``generator.sample(n[, seed=seed], **kwargs)`` timed; returns its output and the measurement.

    ``seed`` is passed only when ``sample`` accepts it.
    """
    if seed is not None and _accepts(generator.sample, "seed"):
        kwargs = {"seed": seed, **kwargs}
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        out = generator.sample(n, **kwargs)
        if _cuda(device):
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return out, {"n": n, "seconds": round(seconds, 3), "molecules_per_second": round(n / seconds, 2),
                 "memory": mem.result}


def training_batches(model: Any, dataset: str, size: int = 64, count: int = 4, seed: int = 0) -> list[dict]:
    """``count`` training batches of ``size`` molecules (drawn from the training split, seeded) in the
    format the molgen model's ``loss`` takes; raises TypeError for a model it does not know."""
    name = getattr(model, "name", None)
    rng = np.random.default_rng(seed)
    if name == "edm":
        from molgen.datasets.qm9_3d import QM9Padded

        data = QM9Padded("train", heavy_only="H" not in model.atom_types)
        return [data.batch(rng.choice(len(data), size, replace=False)) for _ in range(count)]
    if name in ("ar", "vae"):
        from molgen.datasets import dataset_smiles

        train = dataset_smiles(dataset, "train")
        pool = [train[i] for i in rng.choice(len(train), min(len(train), 2 * size * count), replace=False)]
        if name == "ar":
            data, _ = model.encode_molecules(pool)
            rows = np.arange(len(data))
            return [data.batch(rows[k * size:(k + 1) * size]) for k in range(count)]
        table = model.graphs(pool)
        rows = np.flatnonzero(table.status == 1)
        return [table.batch(rows[k * size:(k + 1) * size]) for k in range(count)]
    raise TypeError(f"no training batches for a {type(model).__name__} (molgen models: ar, vae, edm)")


def train_step_seconds(model: torch.nn.Module, batches: list[dict], device: str | torch.device = "cpu",
                       batch_size: int = 64, lr: float = 1e-4) -> dict[str, Any]:
    """Median seconds per training step over ``batches[1:]`` (``batches[0]`` warms up), with memory.
    ``batch_size`` (molecules per batch) is recorded with the result."""
    if len(batches) < 2:
        raise ValueError("need a warm-up batch and at least one timed batch")
    work = copy.deepcopy(model).to(device).train()
    opt = torch.optim.AdamW(work.parameters(), lr=lr)

    def step(batch: dict) -> None:
        loss, _ = work.loss({k: v.to(device) for k, v in batch.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if _cuda(device):
            torch.cuda.synchronize(device)

    times = []
    with PeakMemory(device) as mem:
        step(batches[0])
        for batch in batches[1:]:
            start = time.perf_counter()
            step(batch)
            times.append(time.perf_counter() - start)
    return {"seconds_per_step": round(statistics.median(times), 4), "batch_size": batch_size, "repeats": len(times),
            "what": "model.loss + backward + AdamW step, median after 1 warm-up step", "memory": mem.result}


def device_label(device: str | torch.device) -> str:
    """The card for a CUDA device, else the CPU model with its core and torch thread counts."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(dev)}"
    return f"CPU {cpu_name()} ({os.cpu_count()} cores visible, {torch.get_num_threads()} torch thread(s))"


def machine() -> dict[str, Any]:
    """What the numbers were measured on, including how busy the machine was."""
    import platform

    import rdkit

    info: dict[str, Any] = {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "python": platform.python_version(), "torch": torch.__version__,
                            "rdkit": rdkit.__version__, "platform": platform.platform()}
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info

