"""``python -m flowopd``: the ``flowopd`` command.

Run with a Python that lacks the project's dependencies (the system's ``python3`` instead of the virtual
environment's), it says which Python to use in one line instead of a traceback.
"""

import sys

OURS = ("flowopd", "flowopd_studio")


def run() -> int:
    try:
        from flowopd_studio.cli import main  # the command root: library commands, runs and --record

        return main()
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] in OURS:
            raise  # a missing module of our own is a bug, not the environment
        print(f"flowopd: error: {sys.executable} lacks the dependency {err.name!r}: use the project's virtual "
              "environment, .venv/bin/python -m flowopd ... (make test or make app creates it; see README.md)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
