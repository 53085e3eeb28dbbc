"""The tiny reproduction benchmark (``flowopd reproduce``): the paper's tables on the tiny world.

* :class:`~flowopd.reproduce.config.ReproduceConfig`: budgets per stage, seeds, presets ``smoke`` and
  ``default``;
* :func:`~flowopd.reproduce.plan.build_plan`: one seed's stages (base, teachers, GRPO-Mix, cold starts,
  OPD variants, GRPO-Mix-long, seesaw) with their trainer configs;
* :func:`~flowopd.reproduce.runner.reproduce`: runs (or continues) every seed, then writes
  ``results.json``, ``report.md`` and the training-curve PNGs.

The names below load on first use, so importing the package (and ``flowopd --help``) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"ReproduceConfig": "config", "StageBudget": "config", "build_plan": "plan", "ROWS": "plan",
            "reproduce": "runner", "ReproduceStopped": "stage"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
