"""The Compare tab: the base, each teacher, the cold start and the student side by side from the same initial
noise, every reward's score under each image, the best per row marked, per-task means below; the grid saved
as a PNG. At page load it shows the built-in examples (``flowopd_studio/examples``) on one prompt per task."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gradio as gr
from PIL import Image

from flowopd.rewards import REWARDS
from flowopd.world.prompts import TASKS

from ..services import compare as cmp
from ..services.files import export_path, safe_name
from ..services.grid import fmt, grid_image
from ..services.sources import BASE, Source, list_sources
from .state import AppState

FROM_LIST = "the prompts above"
DEFAULT_STEPS, DEFAULT_GUIDANCE, DEFAULT_SEEDS = 20, 3.0, "0"
_DEFAULT_CACHE = "_studio_default_comparison"  # the page-load grid, cached on the model it was sampled from


@dataclass
class CompareWidgets:
    prompts: gr.Textbox
    prompt_set: gr.Dropdown
    count: gr.Slider
    seeds: gr.Textbox
    steps: gr.Slider
    guidance: gr.Slider
    own_guidance: gr.Checkbox
    models: gr.CheckboxGroup
    refresh: gr.Button
    button: gr.Button
    note: gr.Markdown
    grid: gr.Image
    scores: gr.Dataframe
    means: gr.Dataframe
    tradeoff: gr.Image
    retention: gr.Markdown
    file_name: gr.Textbox
    save: gr.Button
    download: gr.DownloadButton


def sources(state: AppState) -> list[Source]:
    """What can be compared on this model: base, built-in examples, finished runs' adapters, teachers."""
    with state.store() as store:
        return list_sources(store, state.model_name, state.model.model_id)


def model_choices(state: AppState) -> tuple[list[tuple[str, str]], list[str]]:
    """Checkbox choices (label, key) and the default pick: the base and every built-in example."""
    found = sources(state)
    choices = [(f"{s.label} ({s.kind}: {s.origin})", s.key) for s in found]
    default = [s.key for s in found if s.key == BASE or s.key.startswith("example:")]
    return choices, default


def render(state: AppState) -> CompareWidgets:
    with gr.Row():
        with gr.Column(scale=2):
            prompts = gr.Textbox(label="Prompts (one per line)", lines=4, elem_id="compare-prompts",
                                 value="\n".join(i.prompt for i in cmp.default_items()))
            with gr.Row():
                prompt_set = gr.Dropdown([FROM_LIST, *TASKS], value=FROM_LIST, label="Or a task's test prompts")
                count = gr.Slider(1, cmp.MAX_PROMPTS, value=2, step=1, label="How many of the set")
            with gr.Row():
                seeds = gr.Textbox(label="Seeds (same noise in every column)", value=DEFAULT_SEEDS)
                steps = gr.Slider(1, 100, value=DEFAULT_STEPS, step=1, label="Steps (ODE)")
                guidance = gr.Slider(1.0, 10.0, value=DEFAULT_GUIDANCE, step=0.5, label="Guidance (CFG)",
                                     info="used when 'each at its own guidance' is off")
                own = gr.Checkbox(value=True, label="Each model at its own guidance",
                                  info="an adapter's (1.0 for NFT and AWM teachers); the base at 3.0")
        with gr.Column(scale=3):
            choices, default = model_choices(state)
            models = gr.CheckboxGroup(choices, value=default, label="Models (columns)", elem_id="compare-models")
            with gr.Row():
                refresh = gr.Button("Refresh the list", size="sm")
                button = gr.Button("Compare", variant="primary", elem_id="compare-button")
    note = gr.Markdown(elem_id="compare-note")
    grid = gr.Image(label="Grid (best per row framed)", type="pil", format="png", interactive=False,
                    elem_id="compare-grid")
    scores = gr.Dataframe(label="Scores (* the best of a line)", interactive=False, wrap=True)
    means = gr.Dataframe(label="Per-task means: the reproduction's table for these prompts", interactive=False)
    with gr.Row():
        tradeoff = gr.Image(label="Trade-off: each model's task means on one chart", type="filepath", scale=3,
                            elem_id="compare-tradeoff")
        retention = gr.Markdown(elem_id="compare-retention")
    with gr.Row():
        file_name = gr.Textbox(label="File name", value="compare-grid.png", scale=2)
        save = gr.Button("Save grid as PNG", scale=1)
        download = gr.DownloadButton("Download PNG", scale=1, elem_id="compare-download")
    return CompareWidgets(prompts, prompt_set, count, seeds, steps, guidance, own, models, refresh, button, note, grid,
                          scores, means, tradeoff, retention, file_name, save, download)


def headers(columns: list[Source]) -> list[str]:
    """Unique column names (two runs may share a name)."""
    out: list[str] = []
    for s in columns:
        name, k = s.label, 2
        while name in out:
            name, k = f"{s.label} ({k})", k + 1
        out.append(name)
    return out


def tables(result: cmp.Comparison) -> tuple[dict, dict]:
    """The scores table (one line per prompt, seed and reward; ``*`` marks a line's best) and the means."""
    names = headers(result.columns)
    rows = []
    for (item, seed), cells in zip(result.rows, result.scores):
        for reward in REWARDS:
            values = [c.get(reward) for c in cells]
            known = [v for v in values if v is not None]
            top = max(known) if len(set(known)) > 1 else None
            rows.append([item.prompt, seed, reward + (" (task)" if reward == item.task else ""),
                         *(fmt(v) + (" *" if top is not None and v == top else "") for v in values)])
    means = cmp.task_means(result)
    mean_rows = [[n, s.origin, *(fmt(m[t]) for t in (*TASKS, "average"))]
                 for n, s, m in zip(names, result.columns, means)]
    return ({"headers": ["prompt", "seed", "reward", *names], "data": rows},
            {"headers": ["model", "from", *TASKS, "average"], "data": mean_rows})


def run_compare(state: AppState, prompts: str, prompt_set: str, count: float, seeds: str, steps: float,
                guidance: float, keys: list[str], own_guidance: bool = True):
    """The grid image, the scores and means tables, and a note."""
    try:
        items = cmp.prompt_items(prompts, None if prompt_set in (None, "", FROM_LIST) else prompt_set, int(count))
        seed_list = cmp.parse_seeds(seeds)
        found = {s.key: s for s in sources(state)}
        if not keys:
            raise ValueError("Models is empty: tick at least one model (the base, an example, a run, a teacher)")
        missing = [k for k in keys if k not in found]
        if missing:
            raise ValueError(f"Models: {', '.join(missing)} no longer exist; press Refresh the list")
        cmp.check_budget(len(items), len(seed_list), len(keys), int(steps))
        start = time.perf_counter()
        with state.lock:
            result = cmp.compare(state.model, [found[k] for k in keys], items, seed_list, num_steps=int(steps),
                                 guidance=None if own_guidance else float(guidance))
    except ValueError as err:
        raise gr.Error(str(err)) from None
    return present(result, time.perf_counter() - start)


def present(result: cmp.Comparison, seconds: float):
    scores, means = tables(result)
    note = (f"{len(result.rows)} rows x {len(result.columns)} models, sampled and scored in {seconds:.1f} s. "
            + " | ".join(f"**{s.label}**: {s.origin}" for s in result.columns))
    return grid_image(result), scores, means, note


def default_compare(state: AppState):
    """The page-load grid: base and the built-in examples on the first test prompt of each task (all different), seed 0
    (sampled once per model and examples; later page loads reuse it)."""
    found = [s for s in sources(state) if s.key == BASE or s.key.startswith("example:")]
    key = tuple((s.key, str(s.folder)) for s in found)
    cached = getattr(state.model, _DEFAULT_CACHE, None)
    if cached is not None and cached[0] == key:
        return cached[1]
    items = cmp.default_items()  # the prompts the Prompts box shows at first launch
    start = time.perf_counter()
    with state.lock:
        result = cmp.compare(state.model, found, items, [0], num_steps=DEFAULT_STEPS)  # each at its own guidance
    out = list(present(result, time.perf_counter() - start))
    if len(found) == 1:
        out[3] = ("No built-in examples are installed (flowopd_studio/examples/examples.json is empty): only the "
                  "base is shown. Train teachers and a student, or run benchmarks/build_examples.py. " + out[3])
    setattr(state.model, _DEFAULT_CACHE, (key, tuple(out)))
    return tuple(out)


def save_grid(state: AppState, image: Image.Image | None, name: str, models: list[str] | None = None):
    """Write the grid to the data folder's exports/ (not in demo mode) and offer a copy for download. ``models``
    (the ticked columns) go to a ``.json`` beside it, so an export's model card attaches only a grid that shows
    its adapter."""
    if image is None:
        raise gr.Error("There is no grid yet: press Compare first")
    try:
        name = safe_name(name if str(name).lower().endswith(".png") else f"{name}.png", "File name")
    except ValueError as err:
        raise gr.Error(str(err)) from None
    copy = Path(tempfile.mkdtemp(prefix="flowopd-grid-")) / name
    image.save(copy)
    if state.demo:
        return str(copy), "Ready to download (demo: not kept on the server)."
    target = export_path(state.data_folder, name)
    image.save(target)
    target.with_suffix(".json").write_text(json.dumps({"models": list(models or [])}) + "\n")
    return str(copy), f"Saved to the data folder as exports/{name}; press Download PNG."


def tradeoff_view(state: AppState, means) -> tuple[str | None, str]:
    """The means table's models on one trade-off chart, and each student's retention of each teacher's gain
    (roles and tasks from the compared sources, matched by their column name)."""
    from ..services.results import column_retention, draw_tradeoff

    rows = means.to_dict("split")["data"] if hasattr(means, "to_dict") else (means or {}).get("data", [])
    by_label = {}
    for src in sources(state):
        by_label.setdefault(src.label, src)
    lines = []
    for row in rows:
        name, scores = row[0], dict(zip(TASKS, row[2:2 + len(TASKS)]))
        src = by_label.get(name) or by_label.get(name.rsplit(" (", 1)[0])
        role = "base" if src is not None and src.key == BASE else {"teacher": "teacher", "student": "student"}.get(
            src.kind if src is not None else "", "other")
        lines.append((name, role, src.task if src is not None else None,
                      {t: float(v) if v not in ("", None) else None for t, v in scores.items()}))
    if not lines:
        return None, ""
    out = Path(tempfile.mkdtemp(prefix="flowopd-compare-")) / "tradeoff.png"
    chart = draw_tradeoff(lines, out, "trade-off: each model's task means on these prompts")
    kept = column_retention(lines)
    text = ("**Retention** of each teacher's gain over the base, on its task and these prompts:\n"
            + "\n".join(kept)) if kept else "Retention needs the base, a teacher and a student among the columns."
    return (str(chart) if chart else None), text


def listen(w: CompareWidgets, state: AppState, *, demo: gr.Blocks, tabs: gr.Tabs | None = None,
           **_: object) -> None:
    outputs = [w.grid, w.scores, w.means, w.note]
    view = dict(fn=partial(tradeoff_view, state), inputs=[w.means], outputs=[w.tradeoff, w.retention],
                api_visibility="private", show_progress="hidden")
    w.button.click(partial(run_compare, state), api_name="compare", concurrency_id="gpu", concurrency_limit=1,
                   time_limit=600,
                   inputs=[w.prompts, w.prompt_set, w.count, w.seeds, w.steps, w.guidance, w.models, w.own_guidance],
                   outputs=outputs).success(**view)
    demo.load(lambda: default_compare(state), outputs=outputs, api_name="compare_default",
              api_visibility="undocumented", concurrency_id="gpu", concurrency_limit=1).success(**view)

    def refresh():
        choices, default = model_choices(state)
        return gr.CheckboxGroup(choices=choices)

    w.refresh.click(refresh, outputs=[w.models], api_name="compare_models", api_visibility="undocumented",
                    concurrency_limit=None)
    # The choices follow the store: new runs and teachers appear on a page load or on opening a tab.
    for event in (demo.load, *([tabs.select] if tabs is not None else [])):
        event(refresh, outputs=[w.models], api_visibility="private", show_progress="hidden", concurrency_limit=None)
    w.save.click(lambda img, name, models: save_grid(state, img, name, models), inputs=[w.grid, w.file_name, w.models],
                 outputs=[w.download, w.note], api_name="save_grid")
