"""``python -m molgen COMMAND ...``: the same as the ``molgen`` console script (see :mod:`molgen.cli`)."""
from molgen.cli import main

if __name__ == "__main__":
    main()
