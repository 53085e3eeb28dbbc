"""From the stages' results of every seed to ``results.json`` (and ``details.json``).

``results.json``::

    {"rows": {ROW: {"compose", "text", "prefer", "quality", "average", "std": {...} (seeds > 1)}},
     "compute": {ROW: {"optimizer_steps": n, "images": n}},      # the row's own training stage
     "wall_time_s": {STAGE: s, ..., "total": s},                 # summed over seeds (training + evaluation)
     "seeds": n, "machine": "..."}                                 # where the stages ran (see machines)

Rows are the mean over seeds; ``std`` is the sample standard deviation over seeds (ddof 1).
``details.json`` holds what the report needs besides: per-seed metrics of every evaluated stage (the
seesaw runs included), the compute of every stage, training and evaluation times, and the config.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Mapping

from ..world.prompts import TASKS
from .plan import SEESAW, StageSpec, rows
from .retention import task_retention

METRICS = (*TASKS, "average")
PerSeed = Mapping[int, Mapping[str, dict]]  # seed -> stage name -> the stage's result


def machine() -> str:
    """A one-line description of this machine: OS, CPU, core count, torch threads and device."""
    import torch

    cpu = platform.processor() or platform.machine()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads, {device}")


def machines(results: PerSeed) -> str:
    """Where the stages ran: the distinct ``machine`` lines their records hold, in order of first use.

    Stages record the machine (with its torch thread count) when they train, so a run resumed elsewhere or
    gathered by another process is still described by where it ran. Records older than that field fall
    back to this process's :func:`machine`.
    """
    seen = [r["machine"] for seed in sorted(results) for r in results[seed].values() if r.get("machine")]
    return "; ".join(dict.fromkeys(seen)) or machine()


def mean_std(values: list[dict[str, float]]) -> dict:
    """Mean of each metric over seeds, with ``std`` (ddof 1) per metric when there are several.

    Example:
        >>> row = mean_std([{"compose": 0.2, "text": 0.4, "prefer": 0, "quality": 0, "average": 0.15},
        ...                 {"compose": 0.4, "text": 0.4, "prefer": 0, "quality": 0, "average": 0.2}])
        >>> round(row["compose"], 3), round(row["std"]["compose"], 3), row["std"]["text"]
        (0.3, 0.141, 0.0)
    """
    row: dict = {m: statistics.fmean(v[m] for v in values) for m in METRICS}
    if len(values) > 1:
        row["std"] = {m: statistics.stdev(v[m] for v in values) for m in METRICS}
    return row


def per_seed_metrics(results: PerSeed, stage: str) -> list[dict[str, float]]:
    """The metrics of ``stage`` for each seed, in seed order."""
    return [results[seed][stage]["metrics"] for seed in sorted(results)]


def summarize(plan: list[StageSpec], results: PerSeed, config: dict) -> tuple[dict, dict]:
    """``(results.json, details.json)`` from the per-seed stage results (aliases resolved already)."""
    first = results[min(results)]
    table = rows(plan)
    summary_rows = {row: mean_std(per_seed_metrics(results, row)) for row in table}
    compute = {row: {"optimizer_steps": int(first[row]["optimizer_steps"]), "images": int(first[row]["images"])}
               for row in table}
    ran = [spec.name for spec in plan if not spec.same_as]
    wall = {name: sum(float(results[s][name]["wall_time_s"]) for s in results) for name in ran}
    wall["total"] = sum(wall.values())
    evaluated = [spec.name for spec in plan if spec.evaluate]
    per_seed = {name: per_seed_metrics(results, name) for name in evaluated}
    summary = {"rows": summary_rows, "compute": compute, "wall_time_s": wall, "seeds": len(results),
               "machine": machines(results), "per_seed": {row: per_seed[row] for row in table},
               "retention": task_retention(per_seed)}
    details = {
        "config": config,
        "per_seed": per_seed,
        "seesaw": ({name: mean_std(per_seed_metrics(results, name)) for name in ("base", *SEESAW)}
                   if set(SEESAW) <= set(evaluated) else {}),  # {}: the plan left the seesaw out
        "stage_compute": {spec.name: {"optimizer_steps": int(first[spec.name]["optimizer_steps"]),
                                      "images": int(first[spec.name]["images"]), "same_as": spec.same_as}
                          for spec in plan},
        "train_time_s": {name: sum(float(results[s][name]["train_time_s"]) for s in results) for name in ran},
        "eval_time_s": {name: sum(float(results[s][name]["eval_time_s"]) for s in results) for name in ran},
    }
    return summary, details
