"""What this CPU can do natively, for choices that only pay on some CPUs."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: what :func:`require_native_bf16` says after the name of what asked for bfloat16
NO_NATIVE_BF16 = "needs a CPU with bfloat16 instructions (AVX512-BF16 or AMX); this one has none"


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """True when the CPU has bfloat16 instructions (AVX512-BF16 or AMX), read from /proc/cpuinfo.

    There, bfloat16 matrix products run about 3x faster than float32 (oneDNN); elsewhere torch
    emulates them and autocast to bfloat16 is slower than float32. False where the flags cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return any(f in flags for f in _BF16_FLAGS)
    return False


def require_native_bf16(what: str) -> None:
    """A ValueError of one line (``"<what> needs a CPU with bfloat16 instructions ..."``) unless
    :func:`native_bf16`."""
    if not native_bf16():
        raise ValueError(f"{what} {NO_NATIVE_BF16}")
