#!/usr/bin/env bash
# The README's test command: make a virtual environment, install molgen with its test extra
# (torch pinned to the CPU build by constraints.txt), fetch the MOSES files, run the default suite,
# then the benchmark suite's quick run (a few hundred molecules per shipped model, every metric
# range-checked, the report built in a temporary folder), then the wheel check: build the wheel,
# install it into a fresh venv without the qm9 extra and run sample / evaluate / the README's script
# from another folder (tests/test_wheel.py; its wheelhouse .whl/ makes later runs offline).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -c constraints.txt -e ".[test]"
python -m molgen.datasets.moses fetch
python -m pytest -q "$@"
python -m benchmarks.run --quick
python -m pytest -q -m wheel tests/test_wheel.py
