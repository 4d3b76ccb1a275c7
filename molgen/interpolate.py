"""``python -m molgen.interpolate``: the older spelling of ``molgen interpolate``, kept so that existing command
lines and scripts keep working. It runs :func:`molgen.cli.interpolate.main` through the shared error handler;
the code lives in :mod:`molgen.cli.interpolate`.
"""
from molgen.cli.common import run_cli
from molgen.cli.interpolate import main

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
