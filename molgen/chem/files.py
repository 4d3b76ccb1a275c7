"""Files written atomically (a temporary file renamed over the target, also on SIGTERM and Ctrl-C), and
Ctrl-C kept alive through RDKit's conformer embedding."""
from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

from .io import MoleculeFileError


class _Terminated(SystemExit):
    """SIGTERM raised as an exception while a file is written, so that the temporary file is removed."""


@contextlib.contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`_Terminated` (exit status 143) instead of killing the
    process outright; a no-op outside the main thread or when someone else handles SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        previous = None
    if previous not in (signal.SIG_DFL, None):
        yield  # an application handler (e.g. training's save-on-signal) keeps control
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def write_atomic(path: str | os.PathLike, chunks: Iterable[str]) -> Path:
    """Write text to ``path`` through a temporary file in the same folder, then rename it.

    The temporary file is removed on any error, on Ctrl-C and on SIGTERM; the target is replaced
    only by a complete file, so an old file stays whole until then.
    """
    p = Path(path)
    tmp = None
    with sigterm_as_exception():
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.is_dir():
                raise IsADirectoryError(21, "it is a folder")
            fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes owner-only files; give the usual permissions
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                for chunk in chunks:
                    f.write(chunk)
            os.replace(tmp, p)
            tmp = None
        except OSError as err:
            raise MoleculeFileError(f"cannot write {p}: {err.strerror or err}") from None
        finally:  # also on KeyboardInterrupt, SIGTERM and errors raised by ``chunks``
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
    return p


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
