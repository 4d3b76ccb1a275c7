"""Where molgen keeps processed data and cached reference statistics."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ._atomic import replace_atomically

if TYPE_CHECKING:
    import numpy as np


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder under the molgen cache.

    The root is ``$MOLGEN_CACHE`` if set, else ``$XDG_CACHE_HOME/molgen``, else ``~/.cache/molgen``.
    """
    root = os.environ.get("MOLGEN_CACHE")
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "molgen"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def digest_strings(strings: "list[str] | tuple[str, ...]") -> str:
    """SHA-256 of strings joined by newlines: the key that ties a cached statistic to its input set."""
    import hashlib

    return hashlib.sha256("\n".join(strings).encode()).hexdigest()


def digest_files(paths: "list[Path] | tuple[Path, ...]") -> str:
    """SHA-256 of files' names and full contents: the key of statistics computed from them."""
    import hashlib

    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def file_stamp(paths: "list[Path] | tuple[Path, ...]") -> str:
    """Names, sizes and modification times of files: a cheap check that they are unchanged since a
    :func:`digest_files` was taken (when it differs, compare digests before rebuilding)."""
    return ";".join(f"{Path(p).name}:{os.stat(p).st_size}:{os.stat(p).st_mtime_ns}" for p in paths)


def cached_npz(path: Path, digest: str, compute: "Callable[[], dict[str, np.ndarray]]",
               compressed: bool = False) -> "dict[str, np.ndarray]":
    """Arrays computed once for an input set and kept in ``path`` (``.npz``, no pickles) with the
    set's ``digest``; a file written for another set, or one that cannot be read, is recomputed
    (with a warning) and replaced.
    The file is replaced atomically (:mod:`molgen._atomic`), so concurrent processes never read half a file."""
    import numpy as np

    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["digest"]) == digest:
                    return {k: data[k] for k in data.files if k != "digest"}
            why = "were computed on another set"
        except Exception as exc:  # a truncated or foreign file: zipfile, OSError, ValueError, KeyError, ...
            why = f"cannot be read ({type(exc).__name__}: {exc})"
        warnings.warn(f"cached arrays {path} {why}; recomputing", stacklevel=2)
    arrays = compute()
    write_npz(path, {"digest": np.array(digest), **arrays}, compressed)
    return arrays


def write_npz(path: str | os.PathLike, arrays: "dict[str, np.ndarray]", compressed: bool = False) -> Path:
    """``arrays`` as one ``.npz`` (zip-compressed with ``compressed``; no pickles), replacing ``path``
    atomically (:mod:`molgen._atomic`)."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    return replace_atomically(path, lambda f: save(f, **arrays))
