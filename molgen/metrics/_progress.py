"""Progress bars for computing reference statistics in chunks (a first use of MOSES' reference
builds statistics of 1.6 million molecules; without a bar that is minutes of silence).

``progress``: True shows a bar on stderr, False hides it, None shows it only when stderr is a
terminal (tqdm's ``disable=None``). Chunked computation gives the same result as one call.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

#: Molecules per chunk between two updates of a bar.
CHUNK = 8_192  # a multiple of ChemNet's batch of 128: chunks batch as one call would


def disable_flag(progress: bool | None) -> bool | None:
    """tqdm's ``disable=`` for molgen's ``progress`` (None: only on a terminal)."""
    return None if progress is None else not progress


def in_chunks(compute: Callable[[Sequence[Any]], T], items: Sequence[Any], desc: str,
              progress: bool | None = False, chunk: int | None = None) -> list[T]:
    """``compute`` on consecutive chunks of ``items`` (:data:`CHUNK` molecules unless ``chunk``), with
    a bar counting molecules; the results per chunk, in order (one call, without a bar, when the bar
    is off or ``items`` fits in one chunk)."""
    chunk = chunk or CHUNK
    if len(items) <= chunk or progress is False:
        return [compute(items)]
    from tqdm import tqdm

    out = []
    with tqdm(total=len(items), desc=desc, unit="mol", disable=disable_flag(progress), leave=False,
              dynamic_ncols=True) as bar:
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            out.append(compute(part))
            bar.update(len(part))
    return out
