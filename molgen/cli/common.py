"""What every command shares: the one error handler, the argument parser, and the checks of argument
values that a command applies before it loads or writes anything.

Every command's ``main(argv)`` parses its arguments, checks them and calls the API; it raises on bad
input. :func:`run_cli` runs it and is the only place that turns an exception into an exit status:

- bad input (a ValueError, OSError or RuntimeError, which includes CheckpointError, MoleculeFileError,
  DataMissingError and TrainingDiverged): one line ``error: ...`` on stderr and exit status 2;
- a bad command line (argparse): one line ``error: ...`` naming ``--help``, exit status 2;
- Ctrl-C: ``error: interrupted`` and exit status 130, also while a command is still importing torch.

``MOLGEN_TRACEBACK=1`` re-raises instead, for a full traceback.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Callable, NoReturn

#: Seeds are 0 .. 2**63 - 1 (what torch.Generator.manual_seed and numpy accept alike).
MAX_SEED = 2 ** 63 - 1
#: The most molecules one sampling command draws (about 1 GB of RDKit Mols); draw more in several
#: runs with different seeds.
MAX_SAMPLES = 1_000_000
#: The exit status of every kind of bad input.
BAD_INPUT = 2


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _forget_unhandled_interrupt() -> None:
    """CPython 3.11 sets a process-wide flag when a KeyboardInterrupt passes through ``exec()`` of a
    string (SciPy's import runs such code), even when the program then handles it; at exit it then kills
    itself with SIGINT (status -2) instead of exiting with the status given. The CLI has handled the
    Ctrl-C, so clear the flag where this interpreter has it."""
    try:
        import ctypes

        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (ImportError, ValueError, AttributeError, OSError):  # another interpreter or version
        pass


def run_cli(main: Callable[[], int | None]) -> NoReturn:
    """Run a command's ``main()`` (no arguments: bind argv with a lambda) and exit with its status."""
    from .._alloc import keep_large_blocks

    keep_large_blocks()  # this process is the CLI's own: keep large tensor blocks in the heap (see _alloc)
    try:
        code = main()
    except KeyboardInterrupt:
        _forget_unhandled_interrupt()
        fail("interrupted", 130)
    except (ValueError, OSError, RuntimeError) as exc:
        if os.environ.get("MOLGEN_TRACEBACK"):
            raise
        fail(first_line(exc))
    raise SystemExit(code or 0)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the handler's convention: a bad command line is one line on stderr, exit status 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")


def parser(prog: str, doc: str | None) -> ArgumentParser:
    """A command's parser: ``prog`` as typed (``molgen sample``), the module docstring as description."""
    return ArgumentParser(prog=prog, description=doc)


# --- argument checks (ValueError with the flag and the allowed range) --------------------------------
def check_seed(value: int | None, flag: str = "--seed") -> None:
    if value is not None and not 0 <= value <= MAX_SEED:
        raise ValueError(f"{flag} must be between 0 and 2**63 - 1 = {MAX_SEED}, got {value}")


def check_count(value: int | None, flag: str, low: int = 1, high: int | None = None, hint: str = "") -> None:
    """An integer option in [low, high] (None: not given, accepted)."""
    if value is None:
        return
    if value < low or (high is not None and value > high):
        allowed = f"between {low:,} and {high:,}" if high is not None else f"at least {low:,}"
        raise ValueError(f"{flag} must be {allowed}, got {value:,}{hint}")


def check_float(value: float | None, flag: str, low: float = 0.0, high: float | None = None,
                low_open: bool = True) -> None:
    """A finite float option in (low, high] (``low_open``) or [low, high]; NaN and inf are refused."""
    if value is None:
        return
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        left = "(" if low_open else "["
        right = f"{high:g}]" if high is not None else "inf)"
        raise ValueError(f"{flag} must be a finite number in {left}{low:g}, {right}, got {value}")


def check_device(value: str, flag: str = "--device") -> str:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``, checked against this machine
    (the rule of :func:`molgen.models.resolve_device`); returns the device as a string."""
    from ..models import resolve_device

    try:
        return str(resolve_device(value))
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None


def check_checkpoint(path: str | None, flag: str = "--checkpoint") -> None:
    """A checkpoint folder that exists (a file or a missing path gets its own message)."""
    if path is None:
        return
    p = Path(path)
    if p.is_file():
        raise ValueError(f"{flag} {p} is a file; give the checkpoint folder (the one holding config.json)")
    if not p.exists():
        raise ValueError(f"{flag}: checkpoint folder {p} does not exist")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two paths name the same file (links and relative paths resolved)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
        return pa.resolve() == pb.resolve()
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def check_output_file(path: str, flag: str, suffixes: tuple[str, ...] | None = None,
                      protected: dict[str, Path | None] | None = None,
                      inputs: dict[str, str | None] | None = None, creates_folders: bool = False) -> None:
    """An output file name: not a folder, a known suffix (``suffixes``; None: any), an existing
    folder above it (unless the writer ``creates_folders``), not inside a ``protected`` folder
    (checkpoints: writing there would damage trained weights) and none of the ``inputs`` (writing it
    would destroy what the command reads)."""
    out = Path(path)
    if out.is_dir():
        example = f"ending in {', '.join(suffixes)}" if suffixes else f"such as {out / 'metrics.json'}"
        raise ValueError(f"{flag} {out} is a folder; give a file name {example}")
    for what, source in (inputs or {}).items():
        if source and same_file(out, source):
            raise ValueError(f"{flag} {out} is the {what} itself; writing it would destroy it: choose another name")
    if suffixes and out.suffix.lower() not in suffixes:
        raise ValueError(f"cannot write {out.suffix or 'files without an extension'}; use {', '.join(suffixes)}")
    parent = out.parent if str(out.parent) else Path(".")
    if not creates_folders and not parent.exists():
        raise ValueError(f"cannot write {out}: folder {parent} does not exist")
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"cannot write {out}: {parent} is not a folder")
    for what, folder in (protected or {}).items():
        if folder is not None and folder.is_dir() and _inside(out, folder):
            raise ValueError(f"{flag} {out} is inside the {what} {folder}; write samples elsewhere")
