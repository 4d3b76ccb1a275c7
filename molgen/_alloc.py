"""Allocator settings for CPU sampling: the command-line tools, and EDM's sampler on a CPU.

glibc serves large blocks (such as the pair tensors of the EGNN) with fresh ``mmap`` calls and gives
memory back to the kernel eagerly, so every sampling step maps, faults in and unmaps tens of MB: on a
2-core CPU that was two thirds of the run time of ``python -m molgen.sample --model edm`` as system
time, and through the API (``molgen.load("edm").sample(100)``) 67 of 91 s. Raising the mmap and trim
thresholds keeps those blocks in the heap for reuse (44 s, 0.7 s of it system time). This changes
process-wide allocator behaviour: freed heap memory below 1 GiB is kept for reuse rather than handed
back to the kernel. The CLIs apply it at start, and EDM applies it the first time it samples on a
CPU; ``MOLGEN_NO_MALLOPT=1`` turns it off everywhere.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_MAX_THRESHOLD = 32 * 1024 * 1024   # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit
_TRIM_THRESHOLD = 1024 * 1024 * 1024      # return freed heap memory to the kernel only above 1 GiB
_done = False


def keep_large_blocks() -> bool:
    """Tune glibc malloc for repeated large tensor allocations; True when applied (Linux/glibc only)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("MOLGEN_NO_MALLOPT"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_MAX_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _done
