"""The distill tab (being built: see issue 17)."""

from __future__ import annotations

import gradio as gr

from .state import AppState


def render(state: AppState) -> None:
    gr.Markdown("Coming in this release.")


def listen(widgets: None, state: AppState, **_: object) -> None:
    """No events yet."""
