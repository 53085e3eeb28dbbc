"""The prompt-set upload both training tabs show: a zip in Flow-GRPO's layout (``train.txt`` / ``test.txt`` or
``*_metadata.jsonl``) for one task, unpacked into the data folder, read as a run would, and written into the
forms' ``prompt_sets`` field ({task: folder}; an existing entry of another task is kept)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import gradio as gr

from flowopd.world.prompts import TASKS

from ..services import uploads
from .state import AppState


@dataclass
class PromptSetWidgets:
    file: gr.File
    task: gr.Dropdown
    button: gr.Button
    info: gr.Markdown


def render(prefix: str) -> PromptSetWidgets:
    """The accordion; ``prefix`` keeps the element ids apart between tabs."""
    with gr.Accordion("Your own prompts for a task (upload a prompt set)", open=False):
        gr.Markdown("A zip of a folder in Flow-GRPO's dataset layout: `train.txt` and `test.txt` (one prompt a line) "
                    "or `train_metadata.jsonl` and `test_metadata.jsonl` (a `prompt` and the task's metadata, e.g. "
                    "GenEval's objects or OCR's target text), so Flow-GRPO's own prompt files work as they are; up "
                    f"to {uploads.PROMPT_ZIP_MAX_BYTES // 1024 ** 2} MiB. The task then trains and is evaluated on "
                    "these prompts instead of the tiny world's (the settings' `prompt_sets`; a folder on the "
                    "server can be typed there instead).")
        with gr.Row():
            file = gr.File(label="Prompt set (.zip)", file_types=[".zip"], type="filepath",
                           elem_id=f"{prefix}-prompts-upload")
            task = gr.Dropdown(list(TASKS), value="text", label="For the task")
            button = gr.Button("Unpack as the task's prompt set", elem_id=f"{prefix}-prompts-unpack")
        info = gr.Markdown(elem_id=f"{prefix}-prompts-info")
    return PromptSetWidgets(file, task, button, info)


def unpack(state: AppState, upload: str | None, name: str, task: str, *current: str) -> list:
    """Unpack and check the upload; returns each form's new ``prompt_sets`` text, then the message."""
    folder, counts = uploads.prompt_set_upload(state.data_folder, upload, name, task)
    values = []
    for text in current:
        try:
            sets = json.loads(text) if (text or "").strip() else {}
        except json.JSONDecodeError:
            sets = {}
        values.append(json.dumps({**(sets if isinstance(sets, dict) else {}), task: str(folder)}))
    message = (f"Unpacked a **{task}** prompt set: {counts['train']} train and {counts['test']} test prompts in "
               f"`{folder}`; it is now the settings' `prompt_sets[\"{task}\"]`.")
    return [*values, message]


def listen(w: PromptSetWidgets, state: AppState, name: gr.components.Component, targets: list, api_name: str) -> None:
    """Wire the button: ``targets`` are the ``prompt_sets`` widgets to fill, ``name`` names the folder."""
    from .config_form import guarded

    w.button.click(guarded(lambda f, n, t, *cur: unpack(state, f, n, t, *cur)), [w.file, name, w.task, *targets],
                   [*targets, w.info], api_name=api_name)
