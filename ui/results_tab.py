"""The Results tab: the committed reproductions (``docs/results-tiny*``) as their table and plots, and the report
of any finished ``reproduce`` run in the store."""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..services.results import Results, committed_all, retention_lines, run_reports, tradeoff_chart
from .state import AppState


@dataclass
class ResultsWidgets:
    pick: gr.Dropdown
    refresh: gr.Button
    table: gr.Dataframe
    tradeoff: gr.Image
    retention: gr.Markdown
    plots: gr.Gallery
    report: gr.Markdown


def all_results(state: AppState) -> list[Results]:
    with state.store() as store:
        found = run_reports(store)
    return committed_all() + found


def render(state: AppState) -> ResultsWidgets:
    titles = [r.title for r in all_results(state)]
    with gr.Row():
        pick = gr.Dropdown(titles, value=titles[0] if titles else None, label="Reproduction", scale=4,
                           elem_id="results-pick")
        refresh = gr.Button("Refresh", size="sm", scale=1)
    table = gr.Dataframe(label="Per-task scores (mean ± std over seeds)", interactive=False, elem_id="results-table")
    with gr.Row():
        tradeoff = gr.Image(label="Trade-off: every row's four task scores", type="filepath", scale=3,
                            elem_id="results-tradeoff")
        retention = gr.Markdown(elem_id="results-retention")
    plots = gr.Gallery(label="Plots", columns=3, height="auto", object_fit="contain")  # whole plots, titles too
    with gr.Accordion("Report", open=False):
        report = gr.Markdown()
    return ResultsWidgets(pick, refresh, table, tradeoff, retention, plots, report)


@functools.lru_cache(maxsize=256)
def _image(path: str, mtime: float) -> str:
    """A temporary copy of a plot, made once per file version: the gallery then serves a file it may read (the
    committed plots live outside the data folder) without re-encoding a dozen images on every call."""
    folder = Path(tempfile.mkdtemp(prefix="flowopd-results-"))
    return str(shutil.copyfile(path, folder / Path(path).name))


@functools.lru_cache(maxsize=64)
def _chart(title: str, means_json: str) -> Path | None:
    """The trade-off chart of one reproduction's means, drawn once per version of them (a redraw costs a
    third of a second, and the tab must answer within one)."""
    results = Results(title, [], [], means=json.loads(means_json))
    return tradeoff_chart(results, Path(tempfile.mkdtemp(prefix="flowopd-tradeoff-")) / "tradeoff.png")


def show(state: AppState, title: str | None):
    """The table, the plots (as images: nothing is served from outside the data folder) and the report."""
    found = {r.title: r for r in all_results(state)}
    if not found:
        return ({"headers": ["row"], "data": []}, None, "", [],
                "No reproduction yet: run `flowopd reproduce --record`.")
    r = found.get(title) or next(iter(found.values()))
    plots = [(_image(str(path), path.stat().st_mtime), path.stem) for path in r.plots]
    chart = _chart(r.title, json.dumps(r.means, sort_keys=True))
    kept = retention_lines(r.means, per_seed=r.retention)
    how = "mean ± std over seeds of each seed's" if r.retention else "from the rows' means:"
    retention = (f"**Retention** of each teacher's gain, {how} (opd − base) / (teacher − base):\n\n"
                 + "\n".join(kept) if kept else "")
    return {"headers": r.headers, "data": r.table}, (str(chart) if chart else None), retention, plots, r.report


def listen(w: ResultsWidgets, state: AppState, *, demo: gr.Blocks, tabs: gr.Tabs | None = None,
           **_: object) -> None:
    outputs = [w.table, w.tradeoff, w.retention, w.plots, w.report]
    w.pick.change(lambda t: show(state, t), inputs=[w.pick], outputs=outputs, api_name="results_show",
                  concurrency_limit=None)
    if tabs is None:
        demo.load(lambda t: show(state, t), inputs=[w.pick], outputs=outputs, api_name="results_load",
                  api_visibility="undocumented", concurrency_limit=None)
        return

    def opened(title: str | None, evt: gr.SelectData):  # drawn when the tab opens, not on every page load
        return show(state, title) if evt.value == "Results" else (gr.skip(),) * len(outputs)

    tabs.select(opened, inputs=[w.pick], outputs=outputs, api_name="results_load", api_visibility="undocumented",
                concurrency_limit=None, show_progress="hidden")

    def refresh(current):
        titles = [r.title for r in all_results(state)]
        return gr.Dropdown(choices=titles, value=current if current in titles else (titles[0] if titles else None))

    w.refresh.click(refresh, inputs=[w.pick], outputs=[w.pick], api_name="results_refresh",
                    api_visibility="undocumented", concurrency_limit=None)
