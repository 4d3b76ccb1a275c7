"""Small helpers shared by the command-line entry points: one clear line for expected errors, and
the checks of argument values that every command applies before it loads or writes anything."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable, NoReturn

#: Seeds are 0 .. 2**63 - 1 (what torch.Generator.manual_seed and numpy accept alike).
MAX_SEED = 2 ** 63 - 1
#: The most molecules one sampling command draws (about 1 GB of RDKit Mols); draw more in several
#: runs with different seeds.
MAX_SAMPLES = 1_000_000


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a CLI main(): expected errors become one line on stderr and a non-zero exit code, Ctrl-C
    becomes ``error: interrupted`` and exit code 130 (also while main() is still importing torch)."""
    from ._alloc import keep_large_blocks

    keep_large_blocks()  # this process is the CLI's own: keep large tensor blocks in the heap (see _alloc)
    try:
        code = main()
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:
        from .models.checkpoint import CheckpointError  # here, so that importing this module stays cheap

        if not isinstance(exc, (ValueError, FileNotFoundError, CheckpointError, PermissionError, IsADirectoryError,
                                NotADirectoryError, RuntimeError)):
            raise
        fail(str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__)
    raise SystemExit(code or 0)


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


def check_checkpoint(path: str | None, flag: str = "--checkpoint") -> None:
    """A checkpoint folder that exists (a file or a missing path gets its own message)."""
    if path is None:
        return
    p = Path(path)
    if p.is_file():
        raise ValueError(f"{flag} {p} is a file; give the checkpoint folder (the one holding config.json)")
    if not p.exists():
        raise ValueError(f"{flag}: checkpoint folder {p} does not exist")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def check_output_file(path: str, flag: str, suffixes: tuple[str, ...], protected: dict[str, Path | None]) -> None:
    """An output file name: a known suffix, an existing folder above it, not a folder itself, and
    not inside a ``protected`` folder (checkpoints: writing there would damage trained weights)."""
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"{flag} {out} is a folder; give a file name ending in {', '.join(suffixes)}")
    if out.suffix.lower() not in suffixes:
        raise ValueError(f"cannot write {out.suffix or 'files without an extension'}; use {', '.join(suffixes)}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise ValueError(f"cannot write {out}: folder {parent} does not exist")
    if not parent.is_dir():
        raise ValueError(f"cannot write {out}: {parent} is not a folder")
    for what, folder in protected.items():
        if folder is not None and folder.is_dir() and _inside(out, folder):
            raise ValueError(f"{flag} {out} is inside the {what} {folder}; write samples elsewhere")
