"""Config forms without Gradio: which fields a form shows (from ``describe()``), their values under a preset,
and a config built back from the form's values, with errors that name the field and the fix.

Form values arrive as the widgets give them: numbers may be floats for int fields, dict and list fields are
JSON text, an empty text is None for an optional field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flowopd.config.base import FieldInfo, config_class
from flowopd.config.presets import PRESET_NAMES, preset
from flowopd.world.prompts import TASKS

# Fields the forms set through their own widgets (not the generic settings form).
TEACHER_OWN = ("model", "rewards", "prompt_tasks", "adapter_name")
DISTILL_OWN = ("model", "teachers", "init", "prompt_tasks", "routing", "epochs_per_task", "loss_mode",
               "mar_anchor", "beta_mar", "adapter_name")


def teacher_algorithms() -> list[str]:
    """The registered training methods whose adapters are teachers (:func:`flowopd.methods.teacher_methods`)."""
    from flowopd.methods import teacher_methods

    return teacher_methods()


def form_fields(kind: str, exclude: tuple[str, ...] = ()) -> list[FieldInfo]:
    """The fields of the ``kind`` config a settings form renders (nested ``parent.field`` entries skipped)."""
    return [f for f in config_class(kind).describe() if f.name not in exclude and "." not in f.name]


def to_widget(info: FieldInfo, value: Any) -> Any:
    """A config value as its widget shows it (dict and list fields as JSON text, None as empty text)."""
    if info.type.startswith(("dict", "list")):
        return json.dumps(value)
    if value is None and "str" in info.type:
        return ""
    return value


def preset_values(kind: str, name: str, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Field -> widget value of preset ``name`` (quick | default | paper) for the form's fields."""
    cfg = _preset_dict(kind, name)
    return {f.name: to_widget(f, cfg[f.name]) for f in form_fields(kind, exclude)}


def _preset_dict(kind: str, name: str) -> dict:
    """The preset's field values (a distillation or cold-start preset gets placeholder teachers, which the form
    replaces by the chosen ones)."""
    from dataclasses import fields

    if name not in PRESET_NAMES:
        raise ValueError(f"Preset {name!r} is unknown: pick one of {', '.join(PRESET_NAMES)}")
    needs_teachers = kind in ("opd", "coldstart")
    cfg = preset(kind, name, **({"teachers": {t: "-" for t in TASKS}} if needs_teachers else {}))
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


def from_widget(info: FieldInfo, value: Any, where: str) -> Any:
    """A widget's value as the config field takes it; ``ValueError`` naming ``where``/field and the fix."""
    t = info.type
    if t.startswith(("dict", "list")):
        text = value if isinstance(value, str) else json.dumps(value)
        try:
            return json.loads(text or ("{}" if t.startswith("dict") else "[]"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: {info.name} is not valid JSON ({err.msg}): write e.g. "
                             f"{json.dumps(info.default)}") from None
    if isinstance(value, str):
        value = value.strip()
    if value is None or value == "":
        return None if "None" in t else info.default if t.startswith("str") else value
    if t.startswith(("int", "float")) and isinstance(value, str):  # an optional number's text box
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{where}: {info.name}={value!r} is not a number: write one, or leave it empty for "
                             "None") from None
    if t.startswith("int") and isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{where}: {info.name}={value} is invalid: use a whole number")
        return int(value)
    return value


def build_config(kind: str, values: dict[str, Any], fixed: dict[str, Any], where: str) -> dict:
    """The validated ``kind`` config (as a dict with ``kind``) from form ``values`` and ``fixed`` fields.

    Raises:
        ValueError: ``"{where}: field=value is invalid: fix"`` for the first bad field.
    """
    infos = {f.name: f for f in form_fields(kind)}
    data = {name: from_widget(infos[name], v, where) for name, v in values.items() if name in infos}
    data = {k: v for k, v in data.items() if v is not None or "None" in infos[k].type}
    try:
        return config_class(kind).from_dict({**data, **fixed}).to_dict()
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _name_and_weight(part: str) -> tuple[str, str]:
    """``"text=1"``, ``"text:1"`` or ``"text"`` -> (name, weight); a name may hold colons itself (``ocr``,
    ``pickscore:/models/pickscore``, ``remote:http://host:8000``), so ``:`` gives a weight only when it is the
    part's one colon and a number follows it.

    Example:
        >>> _name_and_weight("remote:http://h:8000"), _name_and_weight("text:0.5")
        (('remote:http://h:8000', '1'), ('text', '0.5'))
    """
    if "=" in part:
        name, _, weight = part.rpartition("=")
        return name.strip(), weight.strip() or "1"
    name, sep, weight = part.partition(":")
    if sep and ":" not in weight:
        try:
            float(weight)
            return name.strip(), weight.strip()
        except ValueError:
            pass
    return part.strip(), "1"


def parse_weights(text: str, field: str, allowed: tuple[str, ...] | list[str],
                  accepts: Callable[[str], bool] | None = None) -> dict[str, float]:
    """``"text=1, compose=0.5"`` (or a bare ``"text"``, weight 1; or JSON) -> ``{"text": 1.0, "compose": 0.5}``.

    ``accepts(name)`` admits names beyond ``allowed`` (the real-image rewards, ``ocr`` or ``remote:URL``).

    Raises:
        ValueError: naming ``field`` and the fix (unknown name, bad number, empty).
    """
    text = (text or "").strip()
    if text.startswith("{"):
        try:
            pairs = list(json.loads(text).items())
        except (json.JSONDecodeError, AttributeError) as err:
            raise ValueError(f"{field} is not valid JSON ({err}): write e.g. text=1, compose=0.5") from None
    else:
        pairs = []
        for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
            pairs.append(_name_and_weight(part))
    out: dict[str, float] = {}
    for name, weight in pairs:
        if name not in allowed and not (accepts is not None and accepts(name)):
            raise ValueError(f"{field}: {name!r} is unknown: use names from {', '.join(allowed)}")
        try:
            out[name] = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"{field}: the weight of {name} ({weight!r}) is not a number: write e.g. {name}=1") \
                from None
        if out[name] < 0:
            raise ValueError(f"{field}: the weight of {name} is negative: use a weight >= 0")
    if not out or sum(out.values()) <= 0:
        raise ValueError(f"{field} is empty: name at least one of {', '.join(allowed)} with a positive weight, "
                         f"e.g. {allowed[0]}=1")
    return out


def format_weights(weights: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in weights.items())
