"""``report.md``: the paper's tables on the tiny world, the claims, compute, wall time and the curves.

Sections: the main table (rows as the paper's Table 1), the seesaw table (GRPO with the rewards stacked one
by one), the MAR ablation, the claims (:mod:`flowopd.reproduce.claims`), compute per row, wall time per
stage, and the training-curve PNGs (paths relative to the report).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..world.prompts import TASKS
from .claims import claims
from .plan import SEESAW
from .retention import MIN_GAIN

COLUMNS = (*TASKS, "average")
ROW_LABELS = {
    "base": "base (tiny-base)", "teacher-compose": "GRPO teacher: compose", "teacher-text": "GRPO teacher: text",
    "teacher-prefer": "GRPO teacher: prefer", "teacher-quality": "GRPO teacher: quality",
    "grpo-mix": "GRPO-Mix (distillation compute)", "coldstart-merge": "cold start: merge",
    "opd": "**Flow-OPD (merge init, MAR)**", "opd-no-mar": "Flow-OPD w/o MAR", "opd-sft": "Flow-OPD (SFT init)",
    "grpo-mix-long": "GRPO-Mix (whole-pipeline compute)",
}
SOURCE_NAMES = {"grpo": "GRPO", "nft": "DiffusionNFT", "awm": "AWM", "sft": "SFT"}


def row_label(row: str, teachers: Mapping[str, str] | None = None) -> str:
    """The main table's label of ``row``; teachers carry their source, joint rows their algorithm."""
    if row.startswith("teacher-") and teachers is not None:
        task = row.removeprefix("teacher-")
        return f"{SOURCE_NAMES[teachers.get(task, 'grpo')]} teacher: {task}"
    for suffix, what in (("-mix-long", "whole-pipeline compute"), ("-mix", "distillation compute")):
        source = row.removesuffix(suffix)
        if row.endswith(suffix) and source in SOURCE_NAMES and source != "grpo":
            return f"{SOURCE_NAMES[source]}-Mix joint ({what})"
    return ROW_LABELS.get(row, row)


SEESAW_LABELS = {"base": "base", **{name: f"+{task}" for name, task in zip(SEESAW, TASKS)}}
MAR_ROWS = ("base", "teacher-quality", "grpo-mix", "opd-no-mar", "opd")


def cell(row: Mapping, metric: str) -> str:
    """``0.512`` or ``0.512 ± 0.010`` (std over seeds).

    Example:
        >>> cell({"text": 0.5, "std": {"text": 0.01}}, "text")
        '0.500 ± 0.010'
    """
    std = row.get("std", {}).get(metric)
    return f"{row[metric]:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def table(rows: Mapping[str, Mapping], labels: Mapping[str, str], names: tuple[str, ...], first: str) -> list[str]:
    """A markdown table of ``names`` with the four metrics and Average; the best value of a column in bold."""
    values = {m: [rows[n][m] for n in names] for m in COLUMNS}
    best = {m: max(v) if max(v) > min(v) else None for m, v in values.items()}  # no bold when all are equal
    out = [f"| {first} | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in names:
        cells = [f"**{cell(rows[name], m)}**" if rows[name][m] == best[m] else cell(rows[name], m) for m in COLUMNS]
        out.append(f"| {labels.get(name, name)} (`{name}`) | " + " | ".join(cells) + " |")
    return out


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _seesaw(seesaw: Mapping[str, Mapping]) -> list[str]:
    """The seesaw section, or a line saying the plan left it out."""
    head = ["## Seesaw: GRPO with the rewards stacked one by one", ""]
    if not seesaw:
        return head + ["Not run in this benchmark (`seesaw` false): the seesaw rows are GRPO runs whatever the "
                       "teachers' source; `docs/results-tiny-grpo-teachers.md` has them.", ""]
    return head + ["Each row is a GRPO run from the base on the rewards (and prompts) of all tasks up to its own, "
                   "with a teacher's budget; `+compose` is the compose teacher.", "",
                   *table(seesaw, SEESAW_LABELS, ("base", *SEESAW), "stage"), ""]


def _retention(retention: Mapping[str, Mapping]) -> list[str]:
    """The share of each teacher's gain the student keeps, on the teacher's own metric."""
    if not retention:
        return []
    lines = ["## Retention of each teacher's gain", "",
             "`(opd − base) / (teacher − base)` on the teacher's own metric, per seed, then mean ± std; judged only "
             f"where the teacher gains at least +{MIN_GAIN}.", "", "| task | teacher gain | retention | per seed |",
             "|---|---|---|---|"]
    for task, r in retention.items():
        mean = "—" if r["mean"] is None else f"{r['mean']:.2f}" + (f" ± {r['std']:.2f}" if r["std"] else "")
        seeds = ", ".join("—" if v is None else f"{v:.2f}" for v in r["per_seed"])
        lines.append(f"| {task} | {r['teacher_gain']:+.3f} | {mean}{'' if r['judged'] else ' (not judged)'} | "
                     f"{seeds} |")
    return [*lines, ""]


def render(results: Mapping, details: Mapping, plots: Mapping[str, Path], out: Path) -> str:
    """The report's markdown text (see the module docstring); plot paths are made relative to ``out``."""
    seeds, wall, cfg = results["seeds"], results["wall_time_s"], details["config"]
    labels = {row: row_label(row, cfg.get("teachers", {})) for row in results["rows"]}
    lines = ["# Flow-OPD on the tiny world: reproduction report", "",
             f"Budget `{cfg['budget']}`, {seeds} seed(s) (training seeds 0..{seeds - 1}; the evaluation protocol "
             f"uses fixed seeds, so `base` is evaluated once), {cfg['eval_steps']} ODE evaluation steps, "
             + ("the whole test split" if cfg["eval_limit"] is None else f"the first {cfg['eval_limit']} test prompts "
                "per task (a subset: not the protocol)") + ".",
             f"Stages ran on: {results['machine']}.",
             f"Wall time: {_minutes(wall['total'])} in all, {_minutes(wall['total'] / seeds)} per seed (the stages' "
             "times summed: seeds run as parallel processes overlap in time, and each stage's time includes the "
             "contention).", "",
             "Every metric is in [0, 1]; Average is their mean. Cells are the mean over seeds"
             + (" ± the standard deviation over seeds (ddof 1)." if seeds > 1 else "."), "",
             "## Main table (the paper's Table 1)", "",
             *table(results["rows"], labels, tuple(results["rows"]), "model"), "",
             *_retention(results.get("retention", {})),
             *_seesaw(details["seesaw"]),
             "## MAR ablation", "",
             f"Manifold Anchor Regularization towards the base, weight {cfg['beta_mar']} (`opd`) versus none "
             "(`opd-no-mar`), both from the merge cold start.", "",
             *table(results["rows"], labels, MAR_ROWS, "model"), "",
             "## The paper's claims on the tiny world", "",
             "Differences are paired by seed; the ± is the standard deviation of the per-seed differences "
             "(the spread). A difference within the spread is no result.", "",
             *claims(details["per_seed"]), "",
             "## Compute per row", "",
             "Optimizer steps and images sampled by the row's own training stage. The `-mix` rows match the "
             "distillation stage (`opd`); the `-mix-long` rows match the four teachers + cold start + `opd`. "
             "`coldstart-merge` and the OPD rows also build on the teachers (and `opd-sft` on the SFT cold start).",
             "", "| row | optimizer steps | images | pipeline steps | pipeline images |", "|---|---|---|---|---|"]
    comp, stage = results["compute"], details["stage_compute"]
    teachers = [stage[f"teacher-{t}"] for t in TASKS]
    upstream = {"opd": teachers + [stage["coldstart-merge"]], "opd-no-mar": teachers + [stage["coldstart-merge"]],
                "opd-sft": teachers + [stage["coldstart-sft"]], "coldstart-merge": teachers}
    for row in results["rows"]:
        parts = [comp[row], *upstream.get(row, [])]
        lines.append(f"| `{row}` | {comp[row]['optimizer_steps']} | {comp[row]['images']} | "
                     f"{sum(p['optimizer_steps'] for p in parts)} | {sum(p['images'] for p in parts)} |")
    lines += ["", "## Wall time per stage (summed over seeds)", "", "| stage | training | evaluation | total |",
              "|---|---|---|---|"]
    for name, total in wall.items():
        if name != "total":
            lines.append(f"| `{name}` | {_minutes(details['train_time_s'][name])} | "
                         f"{_minutes(details['eval_time_s'][name])} | {_minutes(total)} |")
    lines.append(f"| **total** | | | **{_minutes(wall['total'])}** |")
    aliases = {n: c["same_as"] for n, c in stage.items() if c["same_as"]}
    if aliases:
        lines += ["", "Stages with the same config as an earlier one reuse its run: "
                  + ", ".join(f"`{n}` = `{s}`" for n, s in aliases.items()) + "."]
    lines += ["", "## Training curves", "", "Reward per task (on the training samples) and KL against the "
              "optimizer step, per training stage.", ""]
    for name, path in plots.items():
        lines += [f"### `{name}`", "", f"![{name}]({Path(path).resolve().relative_to(out.resolve()).as_posix()})", ""]
    return "\n".join(lines) + "\n"
