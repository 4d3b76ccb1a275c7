"""The ``molgen`` command: one subcommand per module of this package, one error handler for all.

    molgen sample --model edm -n 10 --output samples.sdf
    molgen evaluate samples.sdf --reference qm9
    molgen --help                   # the commands; molgen COMMAND --help for each one's options

``python -m molgen`` is the same command. The older ``python -m molgen.sample`` (``.train``,
``.evaluate``, ``.interpolate``) and ``python -m molgen.datasets.moses fetch`` keep working.

A command module has ``build_parser()`` and ``main(argv) -> int``: it parses its arguments, checks
them and calls the API, raising on bad input; :func:`molgen.cli.common.run_cli` turns that into one
line on stderr and an exit status. A new command is a new module here plus a line in ``COMMANDS``.
"""
from __future__ import annotations

import importlib
import sys
from typing import NoReturn

#: name -> one-line summary; the code is ``molgen.cli.<name>``.
COMMANDS = {
    "sample": "sample molecules from a shipped or trained model",
    "evaluate": "metrics of a file of molecules (validity, uniqueness, novelty, FCD, ...)",
    "train": "train a model (resumes when the output folder has a checkpoint)",
    "interpolate": "decode molecules along a path in the graph VAE's latent space",
    "denoise": "refine 3D geometries with EDM (noise them part way, denoise back)",
    "score": "negative log-likelihood of each molecule and its percentile among test molecules (anomalies)",
    "fetch": "download data molgen does not ship (the MOSES sets)",
}


def _usage() -> str:
    from .. import __version__

    width = max(map(len, COMMANDS))
    lines = [f"usage: molgen COMMAND [options]      (molgen {__version__})", "",
             "Generative models for molecules, checked with RDKit.", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items()]
    lines += ["", "molgen COMMAND --help lists a command's options; python -m molgen is the same as molgen."]
    return "\n".join(lines)


def command_main(name: str):
    """The ``main(argv)`` of a command."""
    return importlib.import_module(f"{__name__}.{name}").main


def main(argv: list[str] | None = None) -> NoReturn:
    """The ``molgen`` console script and ``python -m molgen``: dispatch to a command, exit with its status."""
    from .common import fail, run_cli

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(_usage(), file=sys.stderr)
        raise SystemExit(2)
    if argv[0] in ("-h", "--help", "help"):
        print(_usage())
        raise SystemExit(0)
    if argv[0] == "--version":
        from .. import __version__

        print(f"molgen {__version__}")
        raise SystemExit(0)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        fail(f"unknown command {name!r}; choose from {', '.join(COMMANDS)} (see molgen --help)")
    run_cli(lambda: command_main(name)(rest))
