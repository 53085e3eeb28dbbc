"""Which package may import which (docs/architecture.md), and the generated CLI reference (docs/cli.md).

The library (``flowopd``) imports neither the run store nor gradio; the command root loads the store only
when a ``runs`` command or ``--record`` asks for it; the store imports no UI.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_LIBRARY = ("flowopd_studio", "gradio", "sqlite_utils", "sqlite3")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (absolute names; relative ones skipped)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def offenders(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> dict[str, list[str]]:
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if path.name in allowed:
            continue
        bad = sorted(m for m in imported_modules(path) if m.split(".")[0] in forbidden or m in forbidden)
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_the_library_imports_neither_the_store_nor_gradio_anywhere() -> None:
    # __main__.py is the `python -m flowopd` entry: it hands over to the command root.
    assert offenders("flowopd", FORBIDDEN_IN_LIBRARY, allowed=("__main__.py",)) == {}


def test_the_store_imports_no_ui() -> None:
    assert offenders("storage", ("gradio",)) == {}
    found = {f: m for f, m in offenders("storage", ("flowopd_studio",)).items()
             if any(x.startswith("flowopd_studio.ui") for x in m)}
    assert found == {}


def test_the_services_import_no_ui() -> None:
    """What the tabs do is plain functions over the store and the library, tested without gradio."""
    found = offenders("flowopd_studio/services", ("gradio",))
    found.update({f: m for f, m in offenders("flowopd_studio/services", ("flowopd_studio",)).items()
                  if any(x.startswith("flowopd_studio.ui") for x in m)})
    assert found == {}


def _loaded_after(code: str) -> set[str]:
    probe = (f"{code}\nimport sys\nprint(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
             f"{FORBIDDEN_IN_LIBRARY!r} or m.startswith('flowopd_studio.storage'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(out.stdout.split())


def test_importing_flowopd_and_its_commands_loads_neither_store_nor_gradio() -> None:
    assert _loaded_after("import flowopd, flowopd.cli, flowopd.events, flowopd.terminal, flowopd.evaluate, "
                         "flowopd.methods.cli, flowopd.reproduce.cli, flowopd.training.loop") == set()


def test_the_command_root_loads_the_store_only_for_runs() -> None:
    plain = _loaded_after("from flowopd_studio.cli import build_parser, wants_runs\n"
                          "build_parser(full=wants_runs(['eval', '--steps', '2']))")
    assert not any(m.startswith("flowopd_studio.storage") for m in plain) and "gradio" not in plain
    runs = _loaded_after("from flowopd_studio.cli import build_parser, wants_runs\n"
                         "build_parser(full=wants_runs(['runs', 'list']))")
    assert "flowopd_studio.storage.cli" in runs


def test_every_command_has_help_and_an_example() -> None:
    from flowopd_studio.cli import build_parser
    from flowopd_studio.cli_reference import commands

    found = list(commands(build_parser(full=True)))
    assert len(found) >= 19
    for path, parser, help_text in found:
        assert help_text.strip(), f"flowopd {' '.join(path)} has no help"
        assert parser.description, f"flowopd {' '.join(path)} has no description"
        assert "example" in (parser.epilog or ""), f"flowopd {' '.join(path)} has no example in its epilog"
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction) and action.help != argparse.SUPPRESS:
                assert action.help, f"flowopd {' '.join(path)}: {action.option_strings or action.dest} has no help"


def test_the_committed_cli_reference_is_what_the_parser_gives() -> None:
    from flowopd_studio.cli_reference import render

    committed = (ROOT / "docs" / "cli.md").read_text()
    if committed != render():
        pytest.fail("docs/cli.md is out of date: run `make docs` (python -m flowopd_studio.cli_reference > "
                    "docs/cli.md) and commit it")
