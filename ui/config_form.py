"""A settings form rendered from a config's field descriptions (``describe()``), shared by the Models and
Distill tabs: help texts as ``info``, choices as dropdowns, bounds on numbers, one accordion per group.
And :func:`guarded`, which turns a service's ``ValueError`` into a ``gr.Error`` (the message names the field
and the fix; nothing is saved when it is raised)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gradio as gr

from flowopd.config.base import FieldInfo

from ..services.config_forms import form_fields, preset_values


def field_widget(info: FieldInfo, value: Any, prefix: str = "field") -> gr.components.Component:
    """One widget for a config field: checkbox, dropdown, number (bounded) or text (JSON for dicts and lists)."""
    label, help_ = info.name, info.help + (f" ({info.bounds()})" if info.bounds() else "")
    t = info.type
    if t.startswith("bool"):
        return gr.Checkbox(value=value, label=label, info=help_, elem_id=f"{prefix}-{info.name}")
    if info.choices:
        return gr.Dropdown(list(info.choices), value=value, label=label, info=help_, elem_id=f"{prefix}-{info.name}")
    if t.startswith(("int", "float")) and "None" in t:  # a Number cannot be empty: None would show (and send) 0
        return gr.Textbox(value="" if value is None else str(value), label=label, info=help_ + "; empty = None",
                          elem_id=f"{prefix}-{info.name}")
    if t.startswith(("int", "float")):  # bounds in the help, checked by the config: its message names the field
        return gr.Number(value=value, label=label, info=help_, precision=0 if t.startswith("int") else None,
                         elem_id=f"{prefix}-{info.name}")
    return gr.Textbox(value=value, label=label, info=help_, elem_id=f"{prefix}-{info.name}")


def grouped_fields(kind: str, exclude: tuple[str, ...]) -> dict[str, list[FieldInfo]]:
    """The form's fields by group, in the order the form renders them (the order of its inputs)."""
    groups: dict[str, list[FieldInfo]] = {}
    for info in form_fields(kind, exclude):
        groups.setdefault(info.group or "other", []).append(info)
    return groups


def form_order(kind: str, exclude: tuple[str, ...]) -> list[str]:
    """Field names in the order :func:`settings_form` renders them."""
    return [info.name for infos in grouped_fields(kind, exclude).values() for info in infos]


def settings_form(kind: str, preset: str, exclude: tuple[str, ...]) -> dict[str, gr.components.Component]:
    """Render the ``kind`` config's fields (minus ``exclude``) grouped in accordions; field name -> widget."""
    values = preset_values(kind, preset, exclude)
    widgets = {}
    for i, (group, infos) in enumerate(grouped_fields(kind, exclude).items()):
        with gr.Accordion(f"{kind} settings: {group}", open=i == 0):
            for row in range(0, len(infos), 3):
                with gr.Row():
                    for info in infos[row:row + 3]:
                        widgets[info.name] = field_widget(info, values[info.name], kind)
    return widgets


def guarded(fn: Callable) -> Callable:
    """Run ``fn``; a ``ValueError`` (a bad field, a refused import) becomes a ``gr.Error`` with its message."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except ValueError as err:
            raise gr.Error(str(err), print_exception=False) from None

    return wrapper
