"""``python -m molgen.train``: the older spelling of ``molgen train``, kept so that existing command
lines and scripts keep working. It runs :func:`molgen.cli.train.main` through the shared error handler;
the code lives in :mod:`molgen.cli.train`.
Under torchrun too: ``torchrun --nproc_per_node 2 -m molgen.train ...``.
"""
from molgen.cli.common import run_cli
from molgen.cli.train import main

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
