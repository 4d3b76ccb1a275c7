"""``python -m molgen.sample``: the older spelling of ``molgen sample``, kept so that existing command
lines and scripts keep working. It runs :func:`molgen.cli.sample.main` through the shared error handler;
the code lives in :mod:`molgen.cli.sample`.
"""
from molgen.cli.common import run_cli
from molgen.cli.sample import main

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
