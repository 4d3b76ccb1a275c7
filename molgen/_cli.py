"""Small helpers shared by the command-line entry points: one clear line for expected errors."""
from __future__ import annotations

import sys
from typing import Callable, NoReturn

from .models.checkpoint import CheckpointError


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a CLI main(): expected errors become one line on stderr and a non-zero exit code."""
    try:
        code = main()
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except (ValueError, FileNotFoundError, CheckpointError, PermissionError, IsADirectoryError,
            NotADirectoryError, RuntimeError) as exc:
        fail(str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__)
    raise SystemExit(code or 0)
