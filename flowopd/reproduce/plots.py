"""Training curves as PNG files (matplotlib, Agg backend): one figure per training stage.

Each figure has a panel of the reward per task (``reward/<task>``) against the optimizer step and, when the
stage logs them, a panel of the KL terms (``kl_base``, ``kl_teacher``, ``kl_anchor``); a stage without
rewards (the SFT cold start) shows its loss. Lines are the mean over seeds; the band spans the seeds'
minimum to maximum.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from ..world.prompts import TASKS

log = logging.getLogger(__name__)
KL_KEYS = ("kl_base", "kl_teacher", "kl_anchor")


def _series(curves: list[list[dict]], key: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """(steps, mean, min, max) of ``key`` over the seeds' curves, at the steps where any seed logged it."""
    by_step: dict[float, list[float]] = {}
    for curve in curves:
        for row in curve:
            if isinstance(row.get(key), (int, float)):
                by_step.setdefault(float(row["step"]), []).append(float(row[key]))
    steps = sorted(by_step)
    return (steps, [sum(by_step[s]) / len(by_step[s]) for s in steps], [min(by_step[s]) for s in steps],
            [max(by_step[s]) for s in steps])


def _panels(curves: list[list[dict]]) -> list[tuple[str, list[str]]]:
    keys = {k for curve in curves for row in curve for k in row}
    panels = [("reward (training)", [f"reward/{t}" for t in TASKS if f"reward/{t}" in keys]),
              ("KL (mean over trained steps)", [k for k in KL_KEYS if k in keys])]
    panels = [(title, names) for title, names in panels if names]
    return panels or ([("loss", ["loss"])] if "loss" in keys else [])


def plot_stage(name: str, curves: list[list[dict]], path: Path) -> Path | None:
    """Draw one stage's curves (a list per seed) to ``path``; returns it, or None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _panels(curves)
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            steps, mean, low, high = _series(curves, key)
            (line,) = ax.plot(steps, mean, marker="o" if len(steps) < 12 else None, markersize=3,
                              label=key.split("/", 1)[-1])
            if len(curves) > 1:
                ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    seeds = f"mean of {len(curves)} seeds, band: min-max" if len(curves) > 1 else "1 seed"
    fig.suptitle(f"{name} ({seeds})", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_all(curves: Mapping[str, list[list[dict]]], folder: Path) -> dict[str, Path]:
    """One PNG per stage with a curve (``folder/<stage>.png``); returns stage -> file."""
    out = {}
    for name, per_seed in curves.items():
        path = plot_stage(name, per_seed, folder / f"{name}.png")
        if path is not None:
            out[name] = path
    log.info("wrote %d training-curve plots to %s", len(out), folder)
    return out
