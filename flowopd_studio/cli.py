"""The command root: ``flowopd ...`` and ``python -m flowopd ...``.

It composes the library's commands (:func:`flowopd.cli.build_parser`: generate, eval, pretrain, train,
coldstart, reproduce, bench, world, score, config) with the run store's ``runs`` commands and the store's
``--record`` option. The store loads only when it is used: the ``runs`` parser is built when the command
line asks for ``runs`` (``--help`` lists it from one line of help), and the recorder when ``--record`` is
given. Library errors (bad input) become one ``flowopd: error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from flowopd.cli import build_parser as build_library_parser
from flowopd.events import StopRequested

RUNS_HELP = "Queue, watch, stop, resume and delete runs executed by background workers."
# Commands that can record themselves in the run store while they run in the foreground (and `train <kind>` of
# every registered training method, recordable()).
RECORDABLE = (("coldstart",), ("eval",), ("reproduce",), ("pretrain",))
RECORD_HELP = ("record this run in the run store as it happens (it shows in `flowopd runs list` and the app's "
               "Runs tab; metrics, samples, artifacts, progress)")
HOME_HELP = "the run store's data folder for --record (default: $FLOWOPD_HOME, else ~/.flowopd)"


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _find(parser: argparse.ArgumentParser, path: Sequence[str]) -> argparse.ArgumentParser:
    for name in path:
        parser = _subparsers(parser).choices[name]
    return parser


def wants_runs(argv: Sequence[str]) -> bool:
    """Whether the command line's command is ``runs`` (its first word that is not an option)."""
    words = [a for a in argv if not a.startswith("-")]
    return bool(words) and words[0] == "runs"


def recordable() -> tuple[tuple[str, ...], ...]:
    """The command paths that take ``--record``: ``train <kind>`` of every registered method, and the others."""
    from flowopd.methods import methods

    return (*(("train", kind) for kind in methods()), *RECORDABLE)


def build_parser(full: bool = True) -> argparse.ArgumentParser:
    """The whole ``flowopd`` parser. ``full=False`` lists ``runs`` without importing the store (the
    command line did not ask for it)."""
    parser = build_library_parser()
    sub = _subparsers(parser)
    if full:
        from .storage.cli import register as register_runs

        register_runs(sub)
    else:
        sub.add_parser("runs", help=RUNS_HELP, description=RUNS_HELP, add_help=False)
    from .export_cli import register as register_export  # cheap: the export loads in its handler

    register_export(sub)
    for path in recordable():
        command = _find(parser, path)
        group = command.add_argument_group("run store")
        group.add_argument("--record", action="store_true", help=RECORD_HELP)
        group.add_argument("--home", dest="record_home", metavar="DIR", help=HOME_HELP)
        group.add_argument("--name", dest="record_name", metavar="NAME",
                           help="with --record: a name to recognise the run by (default: STAGE-xxxx)")
    return parser


def _attach_recorder(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """``args.recorder`` for the library's commands: None, or the store's recorder when ``--record``."""
    args.recorder = None
    if getattr(args, "record", False):
        from .storage.recorder import record

        home, name = args.record_home, args.record_name

        def recorder(stage: str, config: dict, out=None, extra: dict | None = None):
            return record(stage, config, home=home, name=name, out=out,
                          extra={"argv": ["flowopd", *argv], **(extra or {})})

        args.recorder = recorder
    elif getattr(args, "record_home", None) or getattr(args, "record_name", None):
        raise ValueError("--home and --name need --record: add --record to record the run in the run store")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(full=wants_runs(argv)).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        _attach_recorder(args, argv)
        args.func(args)
    except BrokenPipeError:  # the output was piped into a command that stopped reading (`| head`)
        sys.stderr.close()
        return 0
    except (ValueError, FileNotFoundError, FloatingPointError, ConnectionError, json.JSONDecodeError) as err:
        # ConnectionError: a reward server that is down or answers garbage (flowopd.rewards.remote)
        print(f"flowopd: error: {err}", file=sys.stderr)
        return 2
    except StopRequested as err:
        print(f"flowopd: stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flowopd: interrupted (a trainer's last checkpoint is kept: run the same command to continue)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
