"""The Gradio user interface: one module per tab, each with ``render`` (widgets) and ``listen`` (events).

``build_app`` assembles the tabs; handlers call the library, they never train or load models.
"""

from __future__ import annotations

import gradio as gr

from . import generate_tab
from .state import AppState


def build_app(state: AppState) -> gr.Blocks:
    with gr.Blocks(title="Flow-OPD Studio") as demo:
        gr.Markdown("# Flow-OPD Studio\nMulti-reward post-training of flow-matching text-to-image models. "
                    f"Model: **{state.model_name}**.")
        with gr.Tab("Generate"):
            widgets = generate_tab.render()
        generate_tab.listen(widgets, state)
    return demo
