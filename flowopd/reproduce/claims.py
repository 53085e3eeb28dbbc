"""The paper's claims, checked on the tiny world: one plain sentence each, with the spread over seeds.

Differences are paired by seed (row A of seed k minus row B of seed k); the *spread* is the sample standard
deviation of those differences. A difference no larger than the spread is no result, whatever its sign.
Targets are those of the reproduction issue: each teacher >= base + 0.05 on its own metric; ``opd``
average >= each same-compute mix baseline (``grpo-mix``, a joint ``<source>-mix``) + 0.03 and above the
spread; ``opd`` within 0.03 of (or above) each teacher on its metric; ``opd``'s retention of each teacher's
gain ≥ 0.9 where the teacher gains ≥ +0.05 (:mod:`.retention`); ``opd`` quality >= ``opd-no-mar`` quality.
Claims on rows the plan left out (the seesaw, a ``-long`` mix) are not made.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from ..world.prompts import TASKS
from .retention import MIN_GAIN, task_retention
from .retention import TARGET as RETENTION_TARGET

PerSeed = Mapping[str, list[dict[str, float]]]  # stage -> metrics per seed


@dataclass
class Diff:
    """Row A minus row B on one metric, paired by seed."""

    mean: float
    spread: float | None  # std of the per-seed differences; None with one seed

    def __str__(self) -> str:
        mean = round(self.mean, 3) + 0.0  # + 0.0: no "-0.000"
        return f"{mean:+.3f}" + (f" ± {self.spread:.3f}" if self.spread is not None else "")

    def clear(self) -> bool | None:
        """Whether the difference exceeds the spread over seeds (None with one seed)."""
        return None if self.spread is None else abs(self.mean) > self.spread


def diff(per_seed: PerSeed, a: str, b: str, metric: str) -> Diff:
    values = [x[metric] - y[metric] for x, y in zip(per_seed[a], per_seed[b])]
    return Diff(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None)


def _verdict(ok: bool) -> str:
    return "**holds**" if ok else "**missed**"


def _spread_note(d: Diff) -> str:
    clear = d.clear()
    if clear is None:
        return "one seed, so no spread to compare with"
    return "larger than the spread over seeds" if clear else "within the spread over seeds: no result"


def mix_rows(per_seed: PerSeed) -> list[str]:
    """The same-compute mix baselines present: ``grpo-mix`` and any joint ``<source>-mix``."""
    return [name for name in per_seed if name.endswith("-mix")]


def claims(per_seed: PerSeed) -> list[str]:
    """Markdown bullet lines, one per claim (see the module docstring)."""
    lines = []
    for task in TASKS:
        d = diff(per_seed, f"teacher-{task}", "base", task)
        lines.append(f"Teacher `teacher-{task}` vs `base` on `{task}`: {d} (target ≥ +0.05): "
                     f"{_verdict(d.mean >= 0.05)}; {_spread_note(d)}.")
    for mix in mix_rows(per_seed):
        d = diff(per_seed, "opd", mix, "average")
        ok = d.mean >= 0.03 and d.clear() is not False
        lines.append(f"Flow-OPD (`opd`) vs the same-compute mix baseline `{mix}`, Average: {d} (target ≥ +0.03 "
                     f"and above the spread): {_verdict(ok)}; {_spread_note(d)}.")
        if f"{mix}-long" not in per_seed:  # the plan left it out (the strong preset's grpo-mix-long)
            continue
        d = diff(per_seed, "opd", f"{mix}-long", "average")
        better = "better than" if d.mean > 0 else "worse than"
        lines.append(f"`opd` vs `{mix}-long` (`{mix}` given the compute of teachers + cold start + distillation), "
                     f"Average: {d}; `opd` is {better} it, {_spread_note(d)}.")
    for task, r in task_retention(per_seed).items():
        if r["mean"] is None:
            continue
        spread = f" ± {r['std']:.2f}" if r["std"] is not None else ""
        if r["judged"]:
            lines.append(f"Retention of `teacher-{task}`'s gain ({r['teacher_gain']:+.3f}) in `opd` on `{task}`: "
                         f"{r['mean']:.2f}{spread} (target ≥ {RETENTION_TARGET}): "
                         f"{_verdict(r['mean'] >= RETENTION_TARGET)}.")
        else:
            lines.append(f"Retention of `teacher-{task}`'s gain in `opd` on `{task}`: {r['mean']:.2f}{spread}, not "
                         f"judged: the teacher gained {r['teacher_gain']:+.3f} (< +{MIN_GAIN}), so the ratio is "
                         "noise over noise.")
    for task in TASKS:
        d = diff(per_seed, "opd", f"teacher-{task}", task)
        lines.append(f"`opd` vs `teacher-{task}` on `{task}`: {d} (target ≥ -0.03): {_verdict(d.mean >= -0.03)}; "
                     f"{_spread_note(d)}.")
    d = diff(per_seed, "opd", "opd-no-mar", "quality")
    lines.append(f"MAR: `opd` vs `opd-no-mar` on `quality`: {d} (target ≥ 0): {_verdict(d.mean >= 0)}; "
                 f"{_spread_note(d)}.")
    d = diff(per_seed, "opd", "opd-no-mar", "average")
    lines.append(f"MAR: `opd` vs `opd-no-mar`, Average: {d}; {_spread_note(d)}.")
    d = diff(per_seed, "opd", "opd-sft", "average")
    lines.append(f"Cold start: merge init (`opd`) vs SFT init (`opd-sft`), Average: {d}; {_spread_note(d)}.")
    if "seesaw-quality" in per_seed:  # the plan ran the seesaw rows
        for task, solo in (("compose", "seesaw-compose"), ("text", "seesaw-text")):
            d = diff(per_seed, "seesaw-quality", solo, task)
            seesaw = "falls" if d.mean < 0 else "does not fall"
            lines.append(f"Seesaw: `{task}` after stacking all four rewards vs right after adding `{task}`: {d}; "
                         f"it {seesaw} ({_spread_note(d)}).")
    return [f"- {line}" for line in lines]
