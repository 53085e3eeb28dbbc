"""One frozen base transformer, many named LoRA adapters (algorithm.md A.5): teachers, anchor and student.

Adapters live on ``model.transformer`` through diffusers' PEFT integration (``add_adapter`` /
``set_adapter``); switching costs about a millisecond, against the 3-5 full model copies of the released
code. Two peft behaviours shape this module:

* ``set_adapter`` and ``disable_adapters`` also flip ``requires_grad`` (the active adapter trains, the rest
  freeze), and a parameter frozen *after* a forward pass gets no gradient from it. So here *which adapter
  runs* (:func:`use_adapter`) and *which adapter trains* (:func:`trainable_parameters`) are kept apart:
  switching restores every LoRA parameter's ``requires_grad``.
* after ``add_adapter`` the new adapter is the active one; :func:`add_lora` restores the previous state.

An adapter on disk is a folder with ``pytorch_lora_weights.safetensors`` (diffusers' LoRA format) and
``adapter.json`` (rank, alpha, target modules and the id of the base model it was trained on).
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from torch import nn

from .models.base import FlowModel

log = logging.getLogger(__name__)

WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
META_NAME = "adapter.json"


class AdapterError(ValueError):
    """An adapter is missing, malformed or does not fit the model."""


def adapter_names(model: FlowModel) -> list[str]:
    """Names of the LoRA adapters on the model's transformer, in the order they were added."""
    return list(getattr(model.transformer, "peft_config", {}) or {})


def _require(model: FlowModel, name: str) -> None:
    if name not in adapter_names(model):
        raise AdapterError(f"no adapter named {name!r} on this model: adapters are {adapter_names(model) or 'none'}")


def lora_layers(model: FlowModel) -> dict[str, LoraLayer]:
    """The transformer's LoRA-wrapped modules by qualified name (e.g. ``transformer_blocks.0.attn.to_q``)."""
    return {n: m for n, m in model.transformer.named_modules() if isinstance(m, LoraLayer)}


def _adapter_of(param_name: str) -> str | None:
    """The adapter a parameter belongs to: ``...to_q.lora_A.<adapter>.weight`` -> ``<adapter>``."""
    parts = param_name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.startswith("lora_"):
            return parts[i + 1]
    return None


def adapter_of_parameter(param_name: str) -> str | None:
    """The adapter a transformer parameter belongs to, None for a base weight.

    Example:
        >>> adapter_of_parameter("transformer_blocks.0.attn.to_q.lora_A.student.weight")
        'student'
    """
    return _adapter_of(param_name)


def _lora_grad_flags(model: FlowModel) -> dict[nn.Parameter, bool]:
    return {p: p.requires_grad for n, p in model.transformer.named_parameters() if _adapter_of(n) is not None}


def _active_state(model: FlowModel) -> tuple[list[str], bool]:
    """(active adapter names, whether adapters are disabled) of the transformer."""
    layer = next(iter(lora_layers(model).values()), None)
    if layer is None:
        return [], True
    return list(layer.active_adapters), bool(layer.disable_adapters)


def _apply_state(model: FlowModel, active: list[str], disabled: bool) -> None:
    tr = model.transformer
    if disabled or not active:
        tr.disable_adapters()
    else:
        tr.enable_adapters()
        tr.set_adapter(active)


def _restore(model: FlowModel, state: tuple[list[str], bool], flags: dict[nn.Parameter, bool]) -> None:
    """Put back an adapter state and the ``requires_grad`` flags that peft's switching overwrote."""
    _apply_state(model, *state)
    for p, flag in flags.items():
        p.requires_grad_(flag)


class _OtherAdaptersMissing(logging.Filter):
    """Drop diffusers' "led to missing keys" warning when every key it lists belongs to another adapter: it
    picks the keys of "its" adapter by substring, so loading ``b`` lists the keys of ``a`` (``transformer_b``...).
    A key of the adapter being loaded still warns."""

    def __init__(self, name: str):
        super().__init__()
        self.segment = f".{name}."

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        marker = "led to missing keys in the model:"
        if marker not in message:
            return True
        keys = message.split(marker, 1)[1].strip().rstrip(".").split(", ")
        return any(self.segment in key for key in keys)


@contextmanager
def _quiet_peft(name: str | None = None) -> Iterator[None]:
    """Silence peft's "Already found a `peft_config` attribute" warning (several adapters are the design) and,
    when loading adapter ``name``, diffusers' missing-keys warning about other adapters."""
    logger = logging.getLogger("diffusers.utils.peft_utils")
    flt = _OtherAdaptersMissing(name) if name else None
    if flt:
        logger.addFilter(flt)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            yield
    finally:
        if flt:
            logger.removeFilter(flt)


def add_lora(model: FlowModel, name: str, rank: int, alpha: float, target_modules: tuple[str, ...] | None = None,
             *, init: str | bool = "gaussian", seed: int | None = None) -> None:
    """Add a named LoRA adapter (frozen, inactive; B = 0 so it starts equal to the base).

    Args:
        name: adapter name without dots, e.g. ``"student"`` or ``"teacher_compose"``.
        rank, alpha: LoRA rank r and alpha; the update is ``(alpha / r) B A``.
        target_modules: module names to adapt; default ``model.lora_target_modules``.
        init: peft's ``init_lora_weights`` (``"gaussian"`` as the released code).
        seed: draw the random A from this seed, leaving torch's global generator as it was; None draws from
            the global generator, which torch seeds differently in every process.
    """
    if name in adapter_names(model):
        raise AdapterError(f"adapter {name!r} already exists: pick another name or delete it first")
    if "." in name or not name:
        raise AdapterError(f"adapter name {name!r} is invalid: use a non-empty name without dots")
    if int(rank) < 1 or not alpha > 0:
        raise AdapterError(f"rank {rank} and alpha {alpha} must be positive (the paper uses r=32, alpha=64)")
    targets = list(target_modules if target_modules is not None else model.lora_target_modules)
    # Checked here because a failed first add_adapter leaves diffusers half-initialised (no peft_config).
    if not any(n == t or n.endswith("." + t) for n, _ in model.transformer.named_modules() for t in targets):
        raise AdapterError(f"target modules {targets} match no layer of the transformer: use module names such as "
                           f"{list(model.lora_target_modules)}")
    previous, flags = _active_state(model), _lora_grad_flags(model)
    config = LoraConfig(r=int(rank), lora_alpha=alpha, init_lora_weights=init, target_modules=targets)
    device = model.device
    with _quiet_peft(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else [],
                                              enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model.transformer.add_adapter(config, adapter_name=name)
    _restore(model, previous, flags)
    for p in adapter_parameters(model, name).values():
        p.requires_grad_(False)


@contextmanager
def use_adapter(model: FlowModel, name: str | None) -> Iterator[None]:
    """Run the transformer with adapter ``name`` only, or with none (the base) when ``name`` is None.

    Restores the previous adapter state on exit, and never changes which parameters require gradients.

    Example::

        with torch.no_grad(), use_adapter(model, "teacher_text"):
            v_teacher = model.velocity(x, sigma, cond, uncond, guidance)
    """
    if name is not None:
        _require(model, name)
    if not lora_layers(model):  # no adapters at all: the transformer is the base already
        yield
        return
    previous, flags = _active_state(model), _lora_grad_flags(model)
    try:
        _restore(model, ([name] if name is not None else [], name is None), flags)
        yield
    finally:
        _restore(model, previous, flags)


@contextmanager
def merged_adapter(model: FlowModel, name: str) -> Iterator[None]:
    """Run the base with adapter ``name`` folded into its weights (``W0 + (alpha / r) B A``), adapters off.

    The same function as :func:`use_adapter` up to float rounding, without the LoRA matmuls: on the tiny
    model they cost about 30 % of a forward pass, so evaluation uses this. The base weights are copied
    before the merge and copied back on exit, so the base is restored bit for bit (peft's ``unmerge``
    subtracts the delta again, which leaves rounding residue in the frozen base). No gradients flow here.
    """
    _require(model, name)
    saved: dict[str, torch.Tensor] = {}
    layers = lora_layers(model)
    try:
        with torch.no_grad():
            for qualified, layer in layers.items():
                if name in layer.lora_A:
                    weight = layer.get_base_layer().weight
                    saved[qualified] = weight.detach().clone()
                    weight.add_(layer.get_delta_weight(name).to(weight.dtype))
        with use_adapter(model, None):
            yield
    finally:
        with torch.no_grad():
            for qualified, original in saved.items():
                layers[qualified].get_base_layer().weight.copy_(original)


def adapter_parameters(model: FlowModel, name: str) -> dict[str, nn.Parameter]:
    """The LoRA parameters of adapter ``name`` by qualified name."""
    _require(model, name)
    return {n: p for n, p in model.transformer.named_parameters() if _adapter_of(n) == name}


def trainable_parameters(model: FlowModel, name: str) -> list[nn.Parameter]:
    """Make adapter ``name`` the only trainable part of the model and return its parameters.

    Freezes the base transformer, every other adapter and the model's other modules (text encoders).
    """
    params = adapter_parameters(model, name)
    modules = model.modules() if callable(getattr(model, "modules", None)) else {"transformer": model.transformer}
    for module in modules.values():
        module.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    return list(params.values())


def base_model_id(model: FlowModel) -> str:
    """An id of the base model: ``model.model_id`` when the backend sets one, else a fingerprint.

    The fingerprint hashes the transformer's config and the first values of every base weight (cast to
    fp16, so an fp16 copy of the same weights matches), ignoring LoRA weights, so it does not change when
    adapters are added or trained.
    """
    explicit = getattr(model, "model_id", None)
    if explicit:
        return str(explicit)
    h = hashlib.sha256()
    config = getattr(model.transformer, "config", {})
    h.update(json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}, sort_keys=True,
                        default=str).encode())
    for n, p in sorted(model.transformer.named_parameters()):
        if _adapter_of(n) is not None:
            continue
        h.update(n.replace(".base_layer", "").encode())
        h.update(p.detach().reshape(-1)[:64].to("cpu", torch.float16).numpy().tobytes())
    return f"{type(model).__name__}:{h.hexdigest()[:16]}"


def adapter_metadata(model: FlowModel, name: str) -> dict:
    """rank, alpha, target modules and base model id of adapter ``name``."""
    _require(model, name)
    cfg = model.transformer.peft_config[name]
    return {"name": name, "rank": int(cfg.r), "alpha": float(cfg.lora_alpha),
            "target_modules": sorted(cfg.target_modules), "base_model": base_model_id(model)}


def save_adapter(model: FlowModel, name: str, directory: str | Path) -> Path:
    """Write adapter ``name`` to ``directory`` (safetensors weights + ``adapter.json``); returns the folder."""
    meta = adapter_metadata(model, name)
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


def load_adapter(model: FlowModel, directory: str | Path, name: str) -> dict:
    """Load an adapter folder as adapter ``name`` (frozen, inactive); returns its metadata.

    Raises:
        AdapterError: the folder is not an adapter, the name is taken, or the adapter was trained on
            another base model or targets other modules than ``model.lora_target_modules``.
    """
    d = Path(directory)
    meta = read_adapter_metadata(d)
    if name in adapter_names(model):
        raise AdapterError(f"adapter {name!r} already exists on the model: load under another name")
    base = base_model_id(model)
    if meta["base_model"] != base:
        raise AdapterError(f"adapter {d} was trained on base model {meta['base_model']!r}, but this model is "
                           f"{base!r}: load it onto the model it was trained on")
    if set(meta["target_modules"]) != set(model.lora_target_modules):
        raise AdapterError(f"adapter {d} targets {sorted(meta['target_modules'])}, but this model's LoRA targets "
                           f"are {sorted(model.lora_target_modules)}: retrain it with the model's targets")
    previous, flags = _active_state(model), _lora_grad_flags(model)
    with _quiet_peft(name):
        model.transformer.load_lora_adapter(str(d), weight_name=WEIGHTS_NAME, adapter_name=name, prefix=None)
    cfg = model.transformer.peft_config[name]
    if int(cfg.r) != int(meta["rank"]) or float(cfg.lora_alpha) != float(meta["alpha"]):
        raise AdapterError(f"adapter {d}: weights have r={cfg.r}, alpha={cfg.lora_alpha} but {META_NAME} says "
                           f"r={meta['rank']}, alpha={meta['alpha']}: the folder is inconsistent, save it again")
    _restore(model, previous, flags)
    for p in adapter_parameters(model, name).values():
        p.requires_grad_(False)
    return meta


def delete_adapter(model: FlowModel, name: str) -> None:
    """Remove adapter ``name`` from the model."""
    _require(model, name)
    model.transformer.delete_adapters(name)


def drop_adapter(model: FlowModel, name: str) -> None:
    """Delete adapter ``name`` if the model has it (e.g. one left by an earlier run in this process)."""
    if name in adapter_names(model):
        with warnings.catch_warnings():  # peft warns when the deleted adapter was the active one: expected here
            warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")
            delete_adapter(model, name)


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
