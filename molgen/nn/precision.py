"""The precision a network runs in: float32 (the default), or bfloat16 autocast around the network
alone, so that whatever surrounds it (a diffusion chain's arithmetic, say) stays in float32.

bfloat16 pays on CUDA and on CPUs with bfloat16 instructions (:func:`molgen._cpu.native_bf16`);
elsewhere torch emulates it, slower than float32, so it is refused there."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, ContextManager

from .._cpu import require_native_bf16

if TYPE_CHECKING:  # torch is imported where it is used: the command-line parsers read PRECISIONS
    import torch

#: the names a ``precision`` argument takes
PRECISIONS = ("fp32", "bf16")


def autocast_dtype(precision: str, device: torch.device | str, name: str = "precision") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``: None for ``"fp32"``, ``torch.bfloat16`` for
    ``"bf16"`` (CUDA, or a CPU with bfloat16 instructions). Anything else is a ValueError of one line
    that calls the setting ``name`` (a command line passes its flag)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown {name} {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    import torch

    kind = torch.device(device).type
    if kind == "cpu":
        require_native_bf16(f"{name} bf16")
    elif kind != "cuda":
        raise ValueError(f"{name} bf16 runs on CUDA or a CPU with bfloat16 instructions, not on {kind}")
    return torch.bfloat16


def network_autocast(dtype: torch.dtype | None, device_type: str) -> ContextManager:
    """``torch.autocast`` to ``dtype`` on ``device_type``; a no-op for None (an enclosing autocast, as in
    training, then stays in force)."""
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device_type, dtype=dtype)
