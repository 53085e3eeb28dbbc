"""The ``flowopd reproduce`` help's examples are commands that parse and name no missing model folder."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from flowopd.reproduce.cli import EXAMPLE, register


def test_every_example_parses_and_its_model_exists() -> None:
    parser = argparse.ArgumentParser(prog="flowopd")
    register(parser.add_subparsers(dest="command"))
    commands = [line.split("flowopd ", 1)[1].split("   ")[0] for line in EXAMPLE.splitlines() if "flowopd " in line]
    assert len(commands) == 4
    for command in commands:
        args = parser.parse_args(shlex.split(command))
        assert args.command == "reproduce" and args.out
        assert args.model is None or Path(args.model).is_dir(), command
