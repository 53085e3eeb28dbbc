"""The Gradio user interface: one module per tab, each with ``render`` (widgets) and ``listen`` (events).

The tabs follow the user's path: Models & teachers -> Distill -> Runs -> Compare -> Export -> Results, then
Generate. In demo mode (read-only) only Compare and Generate are built: no training control, no config and
no path is shown. Handlers call the library and the store; they never train or load a large model.
"""

from __future__ import annotations

from types import ModuleType

import gradio as gr

from . import compare_tab, distill_tab, export_tab, generate_tab, models_tab, results_tab, runs_tab
from .state import AppState

QUEUE_SIZE = 64
# (tab label, module, shown in demo mode)
TABS: list[tuple[str, ModuleType, bool]] = [
    ("Models & teachers", models_tab, False),
    ("Distill", distill_tab, False),
    ("Runs", runs_tab, False),
    ("Compare", compare_tab, True),
    ("Export", export_tab, False),
    ("Results", results_tab, False),
    ("Generate", generate_tab, True),
]


def build_app(state: AppState) -> gr.Blocks:
    """The app's Blocks; ``state.demo`` keeps only the read-only tabs."""
    mode = " (read-only demo)" if state.demo else ""
    with gr.Blocks(title="Flow-OPD Studio") as demo:
        gr.Markdown(f"# Flow-OPD Studio{mode}\nMulti-reward post-training of flow-matching text-to-image models: "
                    f"teachers, cold start, on-policy distillation. Model: **{state.model_name}**.")
        with gr.Tabs(elem_id="tabs") as tabs:
            for label, module, in_demo in TABS:
                if state.demo and not in_demo:
                    continue
                with gr.Tab(label, id=label.split()[0].lower(), elem_id=f"tab-{label.split()[0].lower()}"):
                    widgets = module.render(state)
                module.listen(widgets, state, demo=demo, tabs=tabs)
    # Mutations one at a time; sampling events share concurrency_id "gpu" (limit 1) and the model's lock; a
    # bounded queue refuses a flood instead of growing without end. Polling handlers opt out (limit None).
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return demo
