"""The one way molgen replaces a file: write a temporary file in the same folder, then rename it over
the target, so that readers see the old file or the new one, never part of one. Standard library only,
so that every layer (molecule files, checkpoints, caches) can use it without importing RDKit or torch.
"""
from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Callable, Iterator


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


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename in it) to the disk, where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], *, durable: bool = False) -> Path:
    """Create or replace ``path`` with what ``write(f)`` writes to ``f``, a binary file open on a
    temporary file beside it (parent folders are created). The target is replaced only by a complete
    file; the temporary file is removed on any error, on Ctrl-C and on SIGTERM. ``durable`` also flushes
    the file and the rename to the disk (checkpoints). Errors are OSError (IsADirectoryError when
    ``path`` is a folder)."""
    p = Path(path)
    tmp = None
    with sigterm_as_exception():
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.is_dir():
                raise IsADirectoryError(21, "it is a folder", str(p))
            fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes owner-only files; give the usual permissions
            with os.fdopen(fd, "wb") as f:
                write(f)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, p)
            tmp = None
            if durable:
                fsync_dir(p.parent)
        finally:  # also on KeyboardInterrupt, SIGTERM and errors raised by ``write``
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
    return p
