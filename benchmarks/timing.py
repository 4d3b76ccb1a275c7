"""Timing and describing the machine: the one helper every benchmark script uses.

    from benchmarks.timing import timed, median_seconds, Stopwatch, cpu_name, machine, command_line

    value, seconds = timed(fn, *args)                 # one call, wall-clock seconds
    per_call = median_seconds(fn, repeats=5)          # median of repeated calls after a warm-up
    with Stopwatch(device) as clock: ...              # clock.seconds, clock.cpu_seconds afterwards
    command_line()                                    # "python -m benchmarks.studies.x --flag ...", to record

On a CUDA device the clocks wait for the GPU (``torch.cuda.synchronize``) before reading the time,
so that queued kernels are counted. Importing this module loads neither torch nor RDKit.
"""
from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable


def _sync(device: Any) -> None:
    """Wait for queued GPU work on ``device`` (nothing for a CPU device, or when torch is not loaded)."""
    if device is None or not str(device).startswith("cuda"):
        return
    import torch

    torch.cuda.synchronize(device)


class Stopwatch:
    """Wall-clock (``seconds``) and this process's CPU time (``cpu_seconds``) of a ``with`` block."""

    def __init__(self, device: Any = None) -> None:
        self.device = device
        self.seconds = self.cpu_seconds = float("nan")

    def __enter__(self) -> "Stopwatch":
        _sync(self.device)
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        _sync(self.device)
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = time.process_time() - self._cpu


def timed(fn: Callable[..., Any], *args: Any, device: Any = None, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and its wall-clock seconds."""
    with Stopwatch(device) as clock:
        out = fn(*args, **kwargs)
    return out, clock.seconds


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1, device: Any = None) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn()`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device=device)[1] for _ in range(max(repeats, 1)))


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, or what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: Any = "cpu") -> str:
    """One line: CPU, cores, torch and its threads, the GPU when ``device`` is CUDA, the load average."""
    import torch

    line = (f"{platform.machine()} {cpu_name()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"threads {torch.get_num_threads()}")
    if str(device).startswith("cuda"):
        line += f", {torch.cuda.get_device_name()}"
    try:
        line += f", load average at start {os.getloadavg()[0]:.1f}"
    except OSError:
        pass
    return line


def command_line(argv: list[str] | None = None) -> str:
    """The command that runs this process's main module with ``argv`` (default: this run's), to
    record beside a result: ``python -m benchmarks.studies.bench_fcd --n 100``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = f"python -m {spec.name}" if spec is not None else f"python {sys.argv[0]}"
    return " ".join([head, *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])
