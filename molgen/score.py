"""``python -m molgen.score``: the same as ``molgen score``; the code lives in :mod:`molgen.cli.score`."""
from molgen.cli.common import run_cli
from molgen.cli.score import main

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
