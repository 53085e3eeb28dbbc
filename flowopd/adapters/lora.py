"""Adding, training and removing named LoRA adapters on the model's transformer (diffusers' PEFT integration)."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from peft import LoraConfig
from torch import nn

from ..models.base import FlowModel
from .registry import AdapterError, adapter_names, adapter_parameters, require_adapter
from .switching import active_state, lora_grad_flags, restore_state


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
def quiet_peft(name: str | None = None) -> Iterator[None]:
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

    After peft's ``add_adapter`` the new adapter is the active one; this restores the previous state.

    Args:
        name: adapter name without dots, e.g. ``"student"`` or ``"teacher_compose"``.
        rank, alpha: LoRA rank r and alpha; the update is ``(alpha / r) B A``.
        target_modules: module names to adapt; default ``model.lora_target_modules``.
        init: peft's ``init_lora_weights`` (``"gaussian"`` as the released code).
        seed: draw the random A from this seed, leaving torch's global generator as it was; None draws from
            the global generator, which torch seeds differently in every process.
    """
    _check_new_name(model, name)
    if int(rank) < 1 or not alpha > 0:
        raise AdapterError(f"rank {rank} and alpha {alpha} must be positive (the paper uses r=32, alpha=64)")
    targets = list(target_modules if target_modules is not None else model.lora_target_modules)
    # Checked here because a failed first add_adapter leaves diffusers half-initialised (no peft_config).
    if not any(n == t or n.endswith("." + t) for n, _ in model.transformer.named_modules() for t in targets):
        raise AdapterError(f"target modules {targets} match no layer of the transformer: use module names such as "
                           f"{list(model.lora_target_modules)}")
    previous, flags = active_state(model), lora_grad_flags(model)
    config = LoraConfig(r=int(rank), lora_alpha=alpha, init_lora_weights=init, target_modules=targets)
    device = model.device
    with quiet_peft(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else [],
                                             enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model.transformer.add_adapter(config, adapter_name=name)
    restore_state(model, previous, flags)
    for p in adapter_parameters(model, name).values():
        p.requires_grad_(False)


def add_lora_by_layer(model: FlowModel, name: str, ranks: dict[str, int], scale: float,
                      target_modules: tuple[str, ...] | None = None) -> None:
    """Add a named LoRA whose rank may differ by layer, frozen and inactive like :func:`add_lora`, with its A and
    B left for the caller to write.

    Args:
        ranks: qualified layer name -> rank (peft's ``rank_pattern`` when they differ; one rank otherwise).
        scale: ``alpha / r`` on every layer.
        target_modules: the module names the adapter records (default: the layers of ``ranks``).
    """
    targets = tuple(target_modules or sorted(ranks))
    if len(set(ranks.values())) == 1:
        rank = next(iter(ranks.values()))
        add_lora(model, name, rank, scale * rank, targets, init=False)
        return
    _check_new_name(model, name)
    pattern = {re.escape(layer): int(r) for layer, r in ranks.items()}
    top = max(pattern.values())
    config = LoraConfig(r=top, lora_alpha=scale * top, target_modules=list(targets), rank_pattern=pattern,
                        alpha_pattern={k: scale * r for k, r in pattern.items()}, init_lora_weights=False)
    previous, flags = active_state(model), lora_grad_flags(model)
    with quiet_peft():
        model.transformer.add_adapter(config, adapter_name=name)
    restore_state(model, previous, flags)
    for p in adapter_parameters(model, name).values():
        p.requires_grad_(False)


def _check_new_name(model: FlowModel, name: str) -> None:
    if name in adapter_names(model):
        raise AdapterError(f"adapter {name!r} already exists: pick another name or delete it first")
    if "." in name or not name:
        raise AdapterError(f"adapter name {name!r} is invalid: use a non-empty name without dots")


def trainable_parameters(model: FlowModel, name: str) -> list[nn.Parameter]:
    """Make adapter ``name`` the only trainable part of the model and return its parameters.

    Freezes the base transformer, every other adapter and the model's other modules (text encoders).
    """
    params = adapter_parameters(model, name)
    for module in model.modules().values():
        module.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    return list(params.values())


def delete_adapter(model: FlowModel, name: str) -> None:
    """Remove adapter ``name`` from the model."""
    require_adapter(model, name)
    model.transformer.delete_adapters(name)


def drop_adapter(model: FlowModel, name: str) -> None:
    """Delete adapter ``name`` if the model has it (e.g. one left by an earlier run in this process)."""
    if name in adapter_names(model):
        with warnings.catch_warnings():  # peft warns when the deleted adapter was the active one: expected here
            warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")
            delete_adapter(model, name)
