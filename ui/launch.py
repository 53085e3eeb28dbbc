"""Launching the app: options, authentication, demo mode and sharing (``python app.py --help``).

``--share`` without authentication starts the app read-only (demo) and says so. When no share link can be
made (offline), the app keeps serving locally and prints why. Gradio's own request-history page (its footer
link "Runs") is turned off: our runs are the Runs tab.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
EXAMPLE = ("python app.py --home ~/flowopd-data --auth alice:s3cret --share\n"
           "  read-only, for showing: python app.py --demo --host 0.0.0.0")


@dataclass
class LaunchOptions:
    host: str
    port: int
    home: str | None
    model: str | None
    share: bool
    auth: list[tuple[str, str]]
    demo: bool
    demo_reason: str = ""
    webhook: str | None = None  # set in the data folder at start ('' turns it off)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="app.py", description="Flow-OPD Studio web app (Gradio): teachers, "
                                "distillation runs, live plots, comparison and export.", epilog=f"example: {EXAMPLE}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for all; default %(default)s)")
    p.add_argument("--port", type=int, default=7860, help="port (default %(default)s)")
    p.add_argument("--home", help="the run store's data folder (default: $FLOWOPD_HOME, else ~/.flowopd)")
    p.add_argument("--model", help="base model: a tiny model folder, a local SD3/SD3.5 folder or a cached Hub id "
                                   "(default: the built-in tiny model)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (needs the internet; "
                                                        "without --auth the app is then read-only)")
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                   help="require this login (repeat for several users)")
    p.add_argument("--auth-file", help="a file of USER:PASS lines (# comments and blank lines skipped)")
    p.add_argument("--demo", action="store_true", help="read-only: generate and compare only, no training controls, "
                                                       "no config or path shown")
    p.add_argument("--webhook", metavar="URL", help="POST a small JSON (run id, name, status, final metrics) to URL "
                                                    "when any run of the data folder ends, from now on ('' turns it "
                                                    "off; as `flowopd runs webhook URL`)")
    return p


def parse_auth(entries: list[str], source: str) -> list[tuple[str, str]]:
    """``USER:PASS`` strings as pairs, or a ValueError naming ``source`` and the fix.

    >>> parse_auth(["alice:s3cret", "bob:p:w"], "--auth")
    [('alice', 's3cret'), ('bob', 'p:w')]
    """
    pairs = []
    for entry in entries:
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            raise ValueError(f"{source} {entry.split(':')[0]!r}... is not USER:PASS: give a user name, a colon and "
                             "a non-empty password")
        pairs.append((user.strip(), password))
    return pairs


def read_auth_file(path: str) -> list[tuple[str, str]]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"--auth-file {path} does not exist: write one USER:PASS line per user")
    lines = [line.strip() for line in file.read_text().splitlines()]
    pairs = parse_auth([line for line in lines if line and not line.startswith("#")], f"--auth-file {path}: line")
    if not pairs:
        raise ValueError(f"--auth-file {path} holds no USER:PASS line")
    return pairs


def options(argv: list[str] | None = None) -> LaunchOptions:
    """The checked launch options; exits with a one-line message on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        auth = parse_auth(args.auth, "--auth")
        if args.auth_file:
            auth += read_auth_file(args.auth_file)
        if args.webhook:
            from ..storage.notify import check_url

            check_url(args.webhook)
    except ValueError as err:
        parser.error(str(err))
    demo, reason = args.demo, "--demo" if args.demo else ""
    if args.share and not auth and not demo:
        demo, reason = True, "--share without --auth"
    return LaunchOptions(args.host, args.port, args.home, args.model, args.share, auth, demo, reason, args.webhook)


def launch(app, opts: LaunchOptions, *, block: bool = True, **kwargs) -> None:
    """Serve ``app`` (a ``gr.Blocks``) with ``opts``; a share link that cannot be made leaves it serving locally
    with a message saying so. ``block=False`` returns once the server is up (tests)."""
    if opts.demo:
        print(f"Flow-OPD Studio runs read-only (demo mode, because of {opts.demo_reason}): generate and compare only.")
    if opts.auth:  # the login page must not describe the app's endpoints (see auth_guard)
        from starlette.middleware import Middleware

        from .auth_guard import HideApiInfoWhenLoggedOut

        kwargs.setdefault("app_kwargs", {}).setdefault("middleware", []).append(Middleware(HideApiInfoWhenLoggedOut))
    common = dict(server_name=opts.host, server_port=opts.port, auth=opts.auth or None, run_history=False,
                  auth_message="Flow-OPD Studio: log in with a user name and password given to --auth.",
                  prevent_thread_lock=True, **kwargs)
    try:
        app.launch(share=opts.share, **common)
    except Exception as err:  # some gradio versions raise when the share tunnel fails
        if not opts.share:
            raise
        print(share_failed(err))
        app.launch(share=False, **common)
    else:
        if opts.share and not getattr(app, "share_url", None):
            print(share_failed(None))
    print(f"Flow-OPD Studio serves {app.local_url}" + (f" and {app.share_url}" if getattr(app, "share_url", None)
                                                        else ""))
    if block:
        app.block_thread()


def share_failed(err: Exception | None) -> str:
    why = f" ({type(err).__name__}: {str(err).splitlines()[0][:200]})" if err else ""
    return (f"No share link could be made{why}: a share link needs the internet (Gradio's share server and its frpc "
            "download). The app keeps serving locally.")
