"""Molecule and report files written atomically (through :mod:`molgen._atomic`, with a one-line error), and
Ctrl-C kept alive through RDKit's conformer embedding."""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

from .._atomic import replace_atomically
from .io import MoleculeFileError


def write_atomic(path: str | os.PathLike, chunks: Iterable[str]) -> Path:
    """Write text to ``path`` atomically (:func:`molgen._atomic.replace_atomically`): an old file stays
    whole until a complete new one replaces it, and no temporary file survives an error, Ctrl-C or
    SIGTERM. A file that cannot be written is a one-line MoleculeFileError."""
    def write(f) -> None:
        for chunk in chunks:
            f.write(chunk.encode("utf-8"))

    try:
        return replace_atomically(path, write)
    except OSError as err:
        raise MoleculeFileError(f"cannot write {Path(path)}: {err.strerror or err}") from None


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically, creating parent folders (MoleculeFileError if impossible)."""
    return write_atomic(path, [text])


def _rdkit_interrupt_flag() -> Any:
    """RDKit's own Ctrl-C flag (``RDKit::ControlCHandler::d_gotSignal``), or None where not found.

    During conformer embedding RDKit replaces the SIGINT handler with its own, which cancels the
    embedding (it then fails) and resets the flag: Python never sees the KeyboardInterrupt.
    :func:`interruptible` watches the flag so that Ctrl-C still stops the program.
    """
    global _RDKIT_FLAG
    if _RDKIT_FLAG is False:
        try:
            import ctypes

            with open("/proc/self/maps") as f:
                libs = {ln.split()[-1] for ln in f if "DistGeomHelpers" in ln.split()[-1]}
            flag = None
            for lib in sorted(libs):
                try:
                    flag = ctypes.c_bool.in_dll(ctypes.CDLL(lib), "_ZN5RDKit15ControlCHandler11d_gotSignalE")
                    break
                except (OSError, ValueError):
                    continue
            _RDKIT_FLAG = flag
        except Exception:  # no /proc, no ctypes, another RDKit build: Ctrl-C may then be lost in RDKit
            _RDKIT_FLAG = None
    return _RDKIT_FLAG


_RDKIT_FLAG: Any = False  # False: not looked up yet


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Raise KeyboardInterrupt after the block if RDKit swallowed a Ctrl-C inside it."""
    flag = _rdkit_interrupt_flag()
    if flag is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = threading.Event()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.002):
            if flag.value:
                seen.set()
        if flag.value:
            seen.set()

    watcher = threading.Thread(target=watch, name="molgen-rdkit-ctrl-c", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
    if seen.is_set():
        raise KeyboardInterrupt
