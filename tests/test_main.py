"""``python -m flowopd`` outside the virtual environment: one line saying which Python to use, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_without(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m flowopd ARGS`` with ``module`` made unimportable, as on a Python without the dependencies."""
    code = (f"import runpy, sys; sys.modules[{module!r}] = None; sys.argv = ['flowopd', *{list(args)!r}]; "
            "runpy.run_module('flowopd', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_missing_dependency_says_which_python_to_use() -> None:
    result = _run_without("PIL", "score", "--reward", "compose", "--prompt", "a photo of a circle", "a.png")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "lacks the dependency 'PIL'" in result.stderr and ".venv/bin/python -m flowopd" in result.stderr


def test_a_missing_module_of_our_own_is_not_hidden() -> None:
    result = _run_without("flowopd.world.grammar", "score", "--reward", "compose", "--prompt", "x", "a.png")
    assert result.returncode == 1 and "Traceback" in result.stderr and "ModuleNotFoundError" in result.stderr
