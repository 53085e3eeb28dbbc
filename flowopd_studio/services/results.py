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


@dataclass
class Results:
    """One reproduction: its table (rows of ``[row name, task means..., average]`` with ``±std`` text),
    its report text and its plots (PNG paths)."""

    title: str
    headers: list[str]
    table: list[list[str]]
    report: str = ""
    plots: list[Path] = field(default_factory=list)


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
    headers, table = table_of(json.loads(data_file.read_text()))
    md = docs / f"{name}.md"
    plots = sorted((docs / name).glob("*.png"))
    what = "committed reproduction" if name == "results-tiny" else "earlier committed reproduction"
    report = report_for_app(md.read_text(), "docs") if md.is_file() else ""
    return Results(f"{what} (docs/{name}.md)", headers, table, report, plots)


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
        headers, table, text, plots = ["row", *COLUMNS], [], "", []
        for f in files:
            if f.name == "results.json" and f.is_file():
                headers, table = table_of(json.loads(f.read_text()))
            elif f.suffix == ".md" and f.is_file():
                text = f.read_text()
                plots = sorted(f.parent.glob("*.png")) + sorted(f.parent.glob("*/*.png"))
        if table or text:
            out.append(Results(f"run {run.id} ({run.name})", headers, table, text, plots))
    return out
