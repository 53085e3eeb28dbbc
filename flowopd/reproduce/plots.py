"""Training curves as PNG files (matplotlib, Agg backend): one figure per training stage.

Each figure has up to three panels:

* the reward per task (``reward/<task>``) against the optimizer step. Training rewards are dominated by which
  prompts an epoch happened to draw, so with enough epochs a solid line shows the trailing mean over
  :data:`SMOOTH_EPOCHS` epochs over the faint raw line;
* the KL terms (``kl/base``, ``kl/teacher``, ``kl/anchor``, mean over trained steps) against the optimizer step;
* the same KL terms per denoising step ``j`` (``<kl>/step_<j>``) in the first and the last epoch: where along
  the trajectory the dense supervision acts, and how much of it distillation removed.

A stage without rewards (the SFT cold start) shows its loss. Lines are the mean over seeds; the band spans
the seeds' minimum to maximum.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import metric_names as names
from ..world.prompts import TASKS

log = logging.getLogger(__name__)
KL_KEYS = names.KL_NAMES
SMOOTH_EPOCHS = 4
_STEP_KEY = re.compile(r"^(kl/base|kl/teacher|kl/anchor)/step_(\d+)$")


def trailing_mean(values: Sequence[float], window: int) -> list[float]:
    """Mean of each value and the ``window - 1`` before it (fewer at the start).

    Example:
        >>> trailing_mean([1.0, 3.0, 5.0, 7.0], 2)
        [1.0, 2.0, 4.0, 6.0]
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return [sum(values[max(0, i - window + 1):i + 1]) / (i + 1 - max(0, i - window + 1)) for i in range(len(values))]


def step_profile(curves: list[list[dict]], kl: str, which: str) -> tuple[list[int], list[float]]:
    """(denoising steps j, mean over seeds of ``<kl>/step_<j>``) in each seed's ``first`` or ``last`` logged epoch.

    Example:
        >>> rows = [{"step": 2, "kl/teacher/step_0": 4.0, "kl/teacher/step_1": 2.0},
        ...         {"step": 4, "kl/teacher/step_0": 1.0, "kl/teacher/step_1": 0.5}]
        >>> step_profile([rows], "kl/teacher", "last")
        ([0, 1], [1.0, 0.5])
    """
    if which not in ("first", "last"):
        raise ValueError(f"which must be 'first' or 'last', got {which!r}")
    by_j: dict[int, list[float]] = {}
    for curve in curves:
        logged = [row for row in curve if any(k.startswith(f"{kl}/step_") for k in row)]
        if not logged:
            continue
        row = logged[0] if which == "first" else logged[-1]
        for key, value in row.items():
            match = _STEP_KEY.match(key)
            if match and match.group(1) == kl and isinstance(value, (int, float)):
                by_j.setdefault(int(match.group(2)), []).append(float(value))
    steps = sorted(by_j)
    return steps, [sum(by_j[j]) / len(by_j[j]) for j in steps]


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


PER_STEP = "KL per denoising step (first and last epoch)"


def _panels(curves: list[list[dict]]) -> list[tuple[str, list[str]]]:
    """(title, keys) of the panels a stage's curves fill; the per-step panel's keys are KL names."""
    keys = {k for curve in curves for row in curve for k in row}
    stepped = {m.group(1) for k in keys if (m := _STEP_KEY.match(k))}
    panels = [("reward (training)", [f"reward/{t}" for t in TASKS if f"reward/{t}" in keys]),
              ("KL (mean over trained steps)", [k for k in KL_KEYS if k in keys]),
              (PER_STEP, [k for k in KL_KEYS if k in stepped])]
    panels = [(title, names) for title, names in panels if names]
    return panels or ([("loss", ["loss"])] if "loss" in keys else [])


def _draw_per_step(ax, curves: list[list[dict]], kls: list[str]) -> None:
    positive = False
    for kl in kls:
        first_j, first = step_profile(curves, kl, "first")
        last_j, last = step_profile(curves, kl, "last")
        positive = positive or any(v > 0 for v in first + last)
        (line,) = ax.plot(first_j, first, linestyle="--", marker="o", markersize=3, label=f"{kl}, first epoch")
        ax.plot(last_j, last, color=line.get_color(), marker="o", markersize=3, label=f"{kl}, last epoch")
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("denoising step j (0 = pure noise)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if positive:  # the KLs span decades along the trajectory (all 0: a student that never moved)
        ax.set_yscale("log", nonpositive="mask")


def _draw_series(ax, curves: list[list[dict]], keys: list[str], smooth: bool) -> None:
    for key in keys:
        steps, mean, low, high = _series(curves, key)
        label = key.split("/", 1)[-1]
        if smooth and len(steps) >= 2 * SMOOTH_EPOCHS:
            (line,) = ax.plot(steps, mean, alpha=0.3, linewidth=0.8)
            ax.plot(steps, trailing_mean(mean, SMOOTH_EPOCHS), color=line.get_color(),
                    label=f"{label} (mean of {SMOOTH_EPOCHS} epochs)")
        else:
            (line,) = ax.plot(steps, mean, marker="o" if len(steps) < 12 else None, markersize=3, label=label)
        if len(curves) > 1:
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("optimizer step")


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
        if title == PER_STEP:
            _draw_per_step(ax, curves, keys)
        else:
            _draw_series(ax, curves, keys, smooth=title.startswith("reward"))
        ax.set_title(title, fontsize=10)
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
        per_seed = [[{names.canonical(k): v for k, v in row.items()} for row in curve] for curve in per_seed]
        path = plot_stage(name, per_seed, folder / f"{name}.png")
        if path is not None:
            out[name] = path
    log.info("wrote %d training-curve plots to %s", len(out), folder)
    return out
