"""The Export tab: a student, a cold start or any teacher (a run's adapter, a built-in example, an imported
teacher) as a LoRA, zipped with a model card, verified by loading it back onto the base model (a fixed-seed
image identical to the source's) before it is offered for download."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial

import gradio as gr

from flowopd.rewards import REWARDS

from ..services.export import FORMATS, ModelCard, export_adapter, known_scores
from ..services.files import exports_folder, serve_copy
from ..services.sources import BASE, Source, list_sources
from .state import AppState


@dataclass
class ExportWidgets:
    source: gr.Dropdown
    refresh: gr.Button
    name: gr.Textbox
    formats: gr.CheckboxGroup
    with_grid: gr.Checkbox
    button: gr.Button
    status: gr.Markdown
    download: gr.DownloadButton
    card: gr.Markdown


def exportable(state: AppState) -> list[Source]:
    with state.store() as store:
        return [s for s in list_sources(store, state.model_name, state.model.model_id) if s.key != BASE]


def choices(state: AppState) -> list[tuple[str, str]]:
    return [(f"{s.label} ({s.kind}: {s.origin})", s.key) for s in exportable(state)]


def render(state: AppState) -> ExportWidgets:
    options = choices(state)
    with gr.Row():
        with gr.Column(scale=3):
            source = gr.Dropdown(options, value=options[-1][1] if options else None, label="Adapter to export",
                                 info="a student, a cold start or a teacher: built-in examples, finished runs, "
                                      "teachers of the store", elem_id="export-source")
            refresh = gr.Button("Refresh the list", size="sm")
        with gr.Column(scale=2):
            name = gr.Textbox(label="Export name (optional)", placeholder="e.g. my-student (letters, digits, . _ -)")
            formats = gr.CheckboxGroup([(f"{k}: {f.help}", k) for k, f in FORMATS.items()], value=["flowopd"],
                                       label="Formats")
            with_grid = gr.Checkbox(True, label="Include the latest saved comparison grid that shows this adapter "
                                          "in the model card")
    button = gr.Button("Export and verify", variant="primary", elem_id="export-button")
    status = gr.Markdown(elem_id="export-status")
    download = gr.DownloadButton("Download the LoRA (.zip)", elem_id="export-download")
    with gr.Accordion("Model card (README.md of the export)", open=False):
        card = gr.Markdown()
    return ExportWidgets(source, refresh, name, formats, with_grid, button, status, download, card)


def _grid_models(grid) -> list[str]:
    try:
        return list(json.loads(grid.with_suffix(".json").read_text()).get("models", []))
    except (OSError, ValueError, AttributeError):
        return []


def card_for(state: AppState, source: Source, store, with_grid: bool) -> ModelCard:
    rewards = source.config.get("rewards") if isinstance(source.config.get("rewards"), dict) else None
    grid = None
    if with_grid:  # the newest saved grid that shows this adapter (its .json names the grid's columns)
        grids = sorted(exports_folder(state.data_folder).glob("*.png"), key=lambda p: p.stat().st_mtime)
        grid = next((g for g in reversed(grids) if source.key in _grid_models(g)), None)
    return ModelCard(source.label, state.model_name, source.kind, source.origin, source.task,
                     list(rewards) if rewards else ([source.task] if source.task else list(REWARDS)),
                     dict(source.config), known_scores(source, store), grid)


def run_export(state: AppState, key: str, name: str, formats: list[str], with_grid: bool):
    """Export, verify, zip; returns the download, a status line and the model card."""
    found = {s.key: s for s in exportable(state)}
    if not key or key not in found:
        raise gr.Error(f"Adapter to export: {key!r} is not in the list; pick one (press Refresh the list)")
    source = found[key]
    try:
        with state.store() as store:
            card = card_for(state, source, store, bool(with_grid))
        with state.lock:
            result = export_adapter(source, exports_folder(state.data_folder), card, tuple(formats or ()),
                                    model=state.model, name=(name or "").strip() or None)
    except ValueError as err:
        raise gr.Error(str(err)) from None
    except RuntimeError as err:  # ExportError: the export did not load back to the same image
        raise gr.Error(str(err)) from None
    size = result.zip_path.stat().st_size / 1024
    status = (f"**Ready**: exports/{result.zip_path.name} ({size:.0f} KB; {', '.join(result.formats)}). Verified: "
              f"loaded back onto the base model, its fixed-seed image is identical to the source's.")
    return serve_copy(state.data_folder, result.zip_path), status, result.card


def listen(w: ExportWidgets, state: AppState, *, demo: gr.Blocks | None = None, tabs: gr.Tabs | None = None,
           **_: object) -> None:
    w.button.click(partial(run_export, state), inputs=[w.source, w.name, w.formats, w.with_grid],
                   outputs=[w.download, w.status, w.card], api_name="export", concurrency_id="gpu",
                   concurrency_limit=1)
    w.refresh.click(lambda: gr.Dropdown(choices=choices(state)), outputs=[w.source], api_name="export_sources",
                    api_visibility="undocumented", concurrency_limit=None)
    # The choices follow the store: new runs and teachers appear on a page load or on opening a tab.
    for event in [e for e in (demo and demo.load, tabs and tabs.select) if e]:
        event(lambda: gr.Dropdown(choices=choices(state)), outputs=[w.source], api_visibility="private",
              show_progress="hidden", concurrency_limit=None)
