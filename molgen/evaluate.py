"""``python -m molgen.evaluate``: the older spelling of ``molgen evaluate``, kept so that existing command
lines and scripts keep working. It runs :func:`molgen.cli.evaluate.main` through the shared error handler;
the code lives in :mod:`molgen.cli.evaluate`.
"""
from molgen.cli.common import run_cli
from molgen.cli.evaluate import main

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
