"""The CLI reference (``docs/cli.md``), generated from the parser so it cannot drift from the code.

``python -m flowopd_studio.cli_reference > docs/cli.md`` rewrites it (``make docs``); a test fails when the
committed file differs from what the parser gives, or when a command lacks help or an example.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

from .cli import build_parser

HEADER = """# Command-line reference

Generated from the parser by `python -m flowopd_studio.cli_reference > docs/cli.md` (`make docs`); do not edit
by hand. Run a command as `flowopd ...` or `.venv/bin/python -m flowopd ...`; every command also answers
`--help`.
"""


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """Every leaf command: (its words, its parser, its one-line help), depth first in the parser's order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                    yield from commands(sub, (*path, name))
                else:
                    yield (*path, name), sub, helps.get(name, "")


def render() -> str:
    """The reference as Markdown: per command its help, usage, options and example."""
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal's width: fix it
    try:
        parser = build_parser(full=True)
        parser.prog = "flowopd"
        lines = [HEADER]
        for path, sub, help_text in commands(parser):
            lines += [f"## flowopd {' '.join(path)}", "", help_text, "", "```text", sub.format_help().rstrip(),
                      "```", ""]
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
