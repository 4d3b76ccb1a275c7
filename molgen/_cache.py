"""Where molgen keeps processed data and cached reference statistics."""
from __future__ import annotations

import os
from pathlib import Path


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
