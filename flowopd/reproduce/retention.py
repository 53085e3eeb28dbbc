"""How much of each teacher's gain the student keeps: per-task *retention* on the teacher's own metric,

    retention = (student − base) / (teacher − base),

per seed (paired rows), then mean ± std over seeds. A teacher that gains less than :data:`MIN_GAIN` has a
retention that is noise over noise: it is reported, flagged, and left out of the target (≥ 0.9 on every task
whose teacher gains ≥ +0.05). Torch-free.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from ..world.prompts import TASKS

MIN_GAIN = 0.05  # a teacher's gain on its own metric below which its retention is not judged
TARGET = 0.9


def retention(student: float, teacher: float, base: float) -> float | None:
    """``(student − base) / (teacher − base)``; None when the teacher did not move (a zero gain).

    Example:
        >>> retention(0.75, 1.0, 0.5), retention(0.5, 0.5, 0.5)
        (0.5, None)
    """
    gain = teacher - base
    return None if abs(gain) < 1e-12 else (student - base) / gain


def task_retention(per_seed: Mapping[str, Sequence[Mapping[str, float]]], student: str = "opd",
                   tasks: Sequence[str] = TASKS) -> dict[str, dict]:
    """Task -> ``{"mean", "std", "per_seed", "teacher_gain", "judged"}`` of ``student``'s retention of
    ``teacher-<task>``'s gain over ``base`` on ``task``, from the rows' metrics per seed (tasks without a teacher
    row are skipped). ``judged``: the mean teacher gain is at least :data:`MIN_GAIN`."""
    out = {}
    for task in tasks:
        teacher = f"teacher-{task}"
        if teacher not in per_seed or student not in per_seed or "base" not in per_seed:
            continue
        seeds = list(zip(per_seed[student], per_seed[teacher], per_seed["base"]))
        values = [retention(s[task], t[task], b[task]) for s, t, b in seeds]
        known = [v for v in values if v is not None]
        gain = statistics.fmean(t[task] - b[task] for _, t, b in seeds)
        out[task] = {"mean": statistics.fmean(known) if known else None,
                     "std": statistics.stdev(known) if len(known) > 1 else None,
                     "per_seed": values, "teacher_gain": gain, "judged": gain >= MIN_GAIN}
    return out
