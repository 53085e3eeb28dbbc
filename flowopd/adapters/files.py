"""Adapter folders: ``pytorch_lora_weights.safetensors`` (diffusers' LoRA format) and ``adapter.json``.

``adapter.json`` holds the rank, alpha, target modules and the id of the base model the adapter was trained
on (``FlowModel.model_id``), and per-layer ranks when they differ (``rank_pattern``, ``alpha_pattern``);
:func:`load_adapter` refuses an adapter of another base or of layers the model lacks. It may
also hold ``guidance``: the CFG scale the adapter is meant to be sampled at (its method's: 1.0 for DiffusionNFT
and AWM teachers, the config's for GRPO, SFT and OPD), which evaluation, the app and distillation use unless
told otherwise (:func:`adapter_guidance`; docs/method.md, "Guidance").
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..layout import ADAPTER_META_FILE, ADAPTER_WEIGHTS_FILE
from ..models.base import FlowModel
from .full import linear_layers
from .lora import drop_adapter, quiet_peft
from .registry import AdapterError, adapter_names, adapter_parameters, require_adapter
from .switching import active_state, lora_grad_flags, restore_state

log = logging.getLogger(__name__)

WEIGHTS_NAME = ADAPTER_WEIGHTS_FILE
META_NAME = ADAPTER_META_FILE


def base_model_id(model: FlowModel) -> str:
    """The id adapters record of their base model: :attr:`FlowModel.model_id`."""
    return model.model_id


def adapter_metadata(model: FlowModel, name: str) -> dict:
    """rank, alpha, target modules and base model id of adapter ``name``."""
    require_adapter(model, name)
    cfg = model.transformer.peft_config[name]
    meta = {"name": name, "rank": int(cfg.r), "alpha": float(cfg.lora_alpha),
            "target_modules": sorted(cfg.target_modules), "base_model": base_model_id(model)}
    for key in ("rank_pattern", "alpha_pattern"):  # per-layer ranks (e.g. a full delta, flowopd.adapters.full)
        if getattr(cfg, key, None):
            meta[key] = dict(getattr(cfg, key))
    return meta


def save_adapter(model: FlowModel, name: str, directory: str | Path, *, guidance: float | None = None) -> Path:
    """Write adapter ``name`` to ``directory`` (safetensors weights + ``adapter.json``, with ``guidance``, the CFG
    scale it is meant to be sampled at, when given); returns the folder."""
    meta = adapter_metadata(model, name)
    if guidance is not None:
        meta["guidance"] = float(guidance)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    # diffusers warns about fp32 modules on every save's dtype cast even when the list is empty: noise in logs.
    cast_log = logging.getLogger("diffusers.models.modeling_utils")
    level = cast_log.level
    cast_log.setLevel(logging.ERROR)
    try:
        model.transformer.save_lora_adapter(str(d), adapter_name=name, weight_name=WEIGHTS_NAME)
    finally:
        cast_log.setLevel(level)
    (d / META_NAME).write_text(json.dumps(meta, indent=1))
    log.info("saved adapter %s (r=%d) to %s", name, meta["rank"], d)
    return d


def read_adapter_metadata(directory: str | Path) -> dict:
    """The ``adapter.json`` of an adapter folder, checked for the fields :func:`load_adapter` needs."""
    d = Path(directory)
    if not (d / WEIGHTS_NAME).is_file() or not (d / META_NAME).is_file():
        raise AdapterError(f"{d} is not an adapter folder: it needs {WEIGHTS_NAME} and {META_NAME} "
                           "(written by flowopd.adapters.save_adapter)")
    try:
        meta = json.loads((d / META_NAME).read_text())
        missing = {"rank", "alpha", "target_modules", "base_model"} - set(meta)
    except (json.JSONDecodeError, TypeError) as err:
        raise AdapterError(f"{d / META_NAME} is corrupt ({err}): save the adapter again") from None
    if missing:
        raise AdapterError(f"{d / META_NAME} lacks {sorted(missing)}: save the adapter again")
    return meta


def adapter_guidance(directory: str | Path | None, default: float) -> float:
    """The CFG scale the adapter folder ``directory`` is meant to be sampled at: its ``adapter.json``'s
    ``guidance``, else ``default`` (an adapter saved before adapters carried one, an imported LoRA without one,
    or ``directory`` None: the base model).

    Raises:
        AdapterError: the folder is not an adapter folder, or its guidance is not a number > 0.
    """
    if directory is None:
        return float(default)
    value = read_adapter_metadata(directory).get("guidance")
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise AdapterError(f"{Path(directory) / META_NAME}: guidance={value!r} is invalid: use a number > 0 "
                           "(1.0 = no classifier-free guidance)")
    return float(value)


def load_adapter(model: FlowModel, directory: str | Path, name: str) -> dict:
    """Load an adapter folder as adapter ``name`` (frozen, inactive); returns its metadata.

    Raises:
        AdapterError: the folder is not an adapter, the name is taken, or the adapter was trained on
            another base model or targets modules that are not Linear layers of this model.
    """
    d = Path(directory)
    meta = read_adapter_metadata(d)
    if name in adapter_names(model):
        raise AdapterError(f"adapter {name!r} already exists on the model: load under another name")
    base = base_model_id(model)
    if meta["base_model"] != base:
        raise AdapterError(f"adapter {d} was trained on base model {meta['base_model']!r}, but this model is "
                           f"{base!r}: load it onto the model it was trained on")
    layers = linear_layers(model)
    unknown = sorted(t for t in meta["target_modules"] if t not in model.lora_target_modules
                     and not any(n == t or n.endswith("." + t) for n in layers))
    if unknown:
        raise AdapterError(f"adapter {d} targets {unknown}, which match no Linear layer of this model (its LoRA "
                           f"targets are {sorted(model.lora_target_modules)}): retrain it on this model's layers")
    previous, flags = active_state(model), lora_grad_flags(model)
    with quiet_peft(name):
        model.transformer.load_lora_adapter(str(d), weight_name=WEIGHTS_NAME, adapter_name=name, prefix=None)
    cfg = model.transformer.peft_config[name]
    if int(cfg.r) != int(meta["rank"]) or float(cfg.lora_alpha) != float(meta["alpha"]):
        raise AdapterError(f"adapter {d}: weights have r={cfg.r}, alpha={cfg.lora_alpha} but {META_NAME} says "
                           f"r={meta['rank']}, alpha={meta['alpha']}: the folder is inconsistent, save it again")
    restore_state(model, previous, flags)
    for p in adapter_parameters(model, name).values():
        p.requires_grad_(False)
    return meta


def replace_adapter(model: FlowModel, folder: str | Path, name: str, field: str | None = None) -> None:
    """Load an adapter folder as ``name``, dropping an adapter of that name left by an earlier run.

    ``field``: the config field that named the folder (e.g. ``teachers['text']``); a refusal starts with it,
    so the user knows which entry to fix.
    """
    drop_adapter(model, name)
    try:
        load_adapter(model, folder, name)
    except AdapterError as err:
        if field is None:
            raise
        raise AdapterError(f"{field}={str(folder)!r}: {err}") from None
