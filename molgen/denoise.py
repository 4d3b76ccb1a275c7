"""``python -m molgen.denoise``: the same as ``molgen denoise``; the code lives in :mod:`molgen.cli.denoise`."""
from molgen.cli.common import run_cli
from molgen.cli.denoise import main

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
