"""The reproduction results: the committed ones (``docs/results-tiny.md``, ``.json`` and ``results-tiny/*.png``;
the earlier ``results-tiny-*`` reports kept beside it) and the reports of finished ``reproduce`` runs in the
store (artifacts of kind ``report``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from flowopd.world.prompts import TASKS

from ..storage.errors import StoreError
from ..storage.paths import CODE_ROOT

DOCS = CODE_ROOT / "docs"
COLUMNS = [*TASKS, "average"]
TEACHER_COLORS = {"compose": "tab:blue", "text": "tab:orange", "prefer": "tab:green", "quality": "tab:purple"}


@dataclass
class Results:
    """One reproduction: its table (rows of ``[row name, task means..., average]`` with ``±std`` text),
    its report text and its plots (PNG paths)."""

    title: str
    headers: list[str]
    table: list[list[str]]
    report: str = ""
    plots: list[Path] = field(default_factory=list)
    means: dict[str, dict[str, float]] = field(default_factory=dict)  # row -> task -> mean over seeds
    retention: dict[str, dict] = field(default_factory=dict)  # task -> the report's per-seed retention (JSON)


def means_of(results: dict) -> dict[str, dict[str, float]]:
    """Row -> task -> mean of ``results.json``'s rows (the four tasks; rows missing one are left out)."""
    return {name: {t: float(row[t]) for t in TASKS} for name, row in (results.get("rows") or {}).items()
            if all(isinstance(row.get(t), (int, float)) for t in TASKS)}


def retention_lines(means: dict[str, dict[str, float]], student: str = "opd",
                    per_seed: dict[str, dict] | None = None) -> list[str]:
    """The share of each teacher's gain ``student`` keeps, on the teacher's own task: the report's figure (the
    mean ± std over seeds of each seed's retention, ``results.json``'s ``retention``) where ``per_seed`` has the
    task, else computed from the rows' means (an older report), which for a teacher that hardly gained can differ
    much from the per-seed mean."""
    from flowopd.reproduce.retention import MIN_GAIN, retention

    lines = []
    for task in TASKS:
        teacher, seeds = f"teacher-{task}", (per_seed or {}).get(task) or {}
        if not {"base", teacher, student} <= set(means):
            continue
        gain = means[teacher][task] - means["base"][task]
        judged = "" if gain >= MIN_GAIN else f" (not judged: the teacher gained {gain:+.3f})"
        if isinstance(seeds.get("mean"), (int, float)):
            values = ", ".join(f"{v:.2f}" for v in seeds.get("per_seed") or [] if isinstance(v, (int, float)))
            kept = f"{seeds['mean']:.2f} ± {seeds.get('std') or 0.0:.2f}" + (f" (seeds: {values})" if values else "")
        else:
            value = retention(means[student][task], means[teacher][task], means["base"][task])
            kept = "—" if value is None else f"{value:.2f}"
        lines.append(f"- `{task}`: {student} keeps {kept} of `{teacher}`'s {gain:+.3f}{judged}")
    return lines


def tradeoff_chart(results: Results, out: Path) -> Path | None:
    """Each row's four task scores on one chart (parallel coordinates): the base, the teachers, the mixes and
    the student, so that the seesaw and the student's place are seen at once; None without rows."""
    lines = [(name, "base" if name == "base" else "student" if name == "opd" else
              "teacher" if name.startswith("teacher-") else "other", name.removeprefix("teacher-"), row)
             for name, row in results.means.items()]
    return draw_tradeoff(lines, out, "trade-off: every row's four task scores")


def draw_tradeoff(lines: list[tuple[str, str, str | None, dict]], out: Path, title: str) -> Path | None:
    """``(name, role, task, {task: score})`` lines on one parallel-coordinates chart: the base black, teachers
    dashed in their task's colour, students red, the rest grey; a missing score breaks its line. None: no line."""
    if not lines:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, role, task, row in lines:
        style = {"color": "black", "lw": 2.2} if role == "base" else (
            {"color": "tab:red", "lw": 2.6} if role == "student" else
            {"lw": 1.3, "ls": "--", "color": TEACHER_COLORS.get(task or "", "tab:brown")}
            if role == "teacher" else {"color": "0.65", "lw": 1.0})
        values = [row.get(t) for t in TASKS]
        ax.plot(list(TASKS), [float("nan") if v is None else v for v in values], marker="o", label=name, **style)
    ax.set_ylabel("score on the task's test prompts")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return out


def column_retention(lines: list[tuple[str, str, str | None, dict]]) -> list[str]:
    """Per student and teacher line: the share of the teacher's gain over the base the student keeps on the
    teacher's task, (student - base) / (teacher - base); needs a base line."""
    from flowopd.reproduce.retention import MIN_GAIN, retention

    base = next((row for _, role, _, row in lines if role == "base"), None)
    out = []
    for student, role, _, srow in lines:
        if role != "student" or base is None:
            continue
        for teacher, trole, task, trow in lines:
            if trole != "teacher" or task not in TASKS or None in (srow.get(task), trow.get(task), base.get(task)):
                continue
            gain = trow[task] - base[task]
            kept = retention(srow[task], trow[task], base[task])
            judged = "" if gain >= MIN_GAIN else f" (not judged: the teacher gained {gain:+.3f})"
            out.append(f"- `{student}` keeps {'—' if kept is None else f'{kept:.2f}'} of `{teacher}`'s {gain:+.3f} "
                       f"on `{task}`{judged}")
    return out


def table_of(results: dict) -> tuple[list[str], list[list[str]]]:
    """``results.json``'s rows as a table: ``mean ± std`` per task and the average; missing cells blank.

    >>> table_of({"rows": {"base": {"text": 0.5, "std": {"text": 0.01}}}})[1][0][:3]
    ['base', '', '0.500 ± 0.010']
    """
    rows = []
    for name, row in (results.get("rows") or {}).items():
        std = row.get("std") or {}
        cells = [name]
        for col in COLUMNS:
            v = row.get(col)
            cells.append("" if v is None else f"{v:.3f}" + (f" ± {std[col]:.3f}" if std.get(col) else ""))
        rows.append(cells)
    return ["row", *COLUMNS], rows


_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\((?!https?://|#)([^)\s]+)\)")


def report_for_app(text: str, where: str) -> str:
    """A report's markdown as the app can show it: a relative image (a plot, shown in the gallery above) becomes a
    note, and a relative link (another page of the repository, which the app does not serve) becomes its path in
    the repository, ``where`` being the report's folder there (``docs``)."""
    text = _IMAGE.sub(lambda m: f"*(plot `{Path(m.group(2)).stem}`: in the Plots gallery above)*", text)
    return _LINK.sub(lambda m: f"{m.group(1)} (`{(Path(where) / m.group(2)).as_posix()}` in the repository)", text)


def committed(docs: Path = DOCS, name: str = "results-tiny") -> Results | None:
    """The committed reproduction ``docs/<name>.json`` (its ``.md`` and ``<name>/*.png`` beside), or None where
    the docs are not shipped (an installed package)."""
    data_file = docs / f"{name}.json"
    if not data_file.is_file():
        return None
    data = json.loads(data_file.read_text())
    headers, table = table_of(data)
    md = docs / f"{name}.md"
    plots = sorted((docs / name).glob("*.png"))
    what = "committed reproduction" if name == "results-tiny" else "earlier committed reproduction"
    report = report_for_app(md.read_text(), "docs") if md.is_file() else ""
    return Results(f"{what} (docs/{name}.md)", headers, table, report, plots, means_of(data),
                   dict(data.get("retention") or {}))


def committed_all(docs: Path = DOCS) -> list[Results]:
    """Every committed reproduction: ``results-tiny`` (the current one) first, then the earlier reports kept
    beside it (``results-tiny-*.json``: the GRPO-teacher run, the previous base model)."""
    names = ["results-tiny", *sorted(p.stem for p in docs.glob("results-tiny-*.json"))]
    return [r for r in (committed(docs, n) for n in names) if r is not None]


def run_reports(store) -> list[Results]:
    """One :class:`Results` per finished ``reproduce`` run with report artifacts, newest first."""
    out = []
    for run in sorted(store.list_runs("finished"), key=lambda r: r.created_at, reverse=True):
        if run.stage != "reproduce":
            continue
        reports = [a for a in store.artifacts(run.id) if a["kind"] == "report"]
        try:
            files = [store.path(a["path"]) for a in reports]
        except StoreError:
            continue
        headers, table, text, plots, means, kept = ["row", *COLUMNS], [], "", [], {}, {}
        for f in files:
            if f.name == "results.json" and f.is_file():
                data = json.loads(f.read_text())
                headers, table = table_of(data)
                means, kept = means_of(data), dict(data.get("retention") or {})
            elif f.suffix == ".md" and f.is_file():
                text = f.read_text()
                plots = sorted(f.parent.glob("*.png")) + sorted(f.parent.glob("*/*.png"))
        if table or text:
            out.append(Results(f"run {run.id} ({run.name})", headers, table, text, plots, means, kept))
    return out
