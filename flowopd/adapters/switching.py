"""Which adapter runs: :func:`use_adapter`, and the save/restore of the transformer's adapter state around it.

peft's ``set_adapter`` and ``disable_adapters`` also flip ``requires_grad`` (the active adapter trains, the
rest freeze), and a parameter frozen *after* a forward pass gets no gradient from it. So switching here
restores every LoRA parameter's ``requires_grad``: which adapter *trains* is
:func:`flowopd.adapters.trainable_parameters`' business alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from ..models.base import FlowModel
from .registry import adapter_names, adapter_of_parameter, lora_layers, require_adapter

AdapterState = tuple[list[str], bool]  # (active adapter names, whether adapters are disabled)


def lora_grad_flags(model: FlowModel) -> dict[nn.Parameter, bool]:
    """``requires_grad`` of every LoRA parameter of the transformer."""
    return {p: p.requires_grad for n, p in model.transformer.named_parameters() if adapter_of_parameter(n) is not None}


def active_state(model: FlowModel) -> AdapterState:
    """(active adapter names, whether adapters are disabled) of the transformer."""
    layer = next(iter(lora_layers(model).values()), None)
    if layer is None:
        return [], True
    return list(layer.active_adapters), bool(layer.disable_adapters)


def _apply_state(model: FlowModel, active: list[str], disabled: bool) -> None:
    if not adapter_names(model):  # every adapter was deleted: the LoRA layers left behind run as the base
        return
    tr = model.transformer
    if disabled or not active:
        tr.disable_adapters()
    else:
        tr.enable_adapters()
        tr.set_adapter(active)


def restore_state(model: FlowModel, state: AdapterState, flags: dict[nn.Parameter, bool]) -> None:
    """Put back an adapter state and the ``requires_grad`` flags that peft's switching overwrote."""
    _apply_state(model, *state)
    for p, flag in flags.items():
        p.requires_grad_(flag)


@contextmanager
def use_adapter(model: FlowModel, name: str | None) -> Iterator[None]:
    """Run the transformer with adapter ``name`` only, or with none (the base) when ``name`` is None.

    Restores the previous adapter state on exit, and never changes which parameters require gradients.

    Example::

        with torch.no_grad(), use_adapter(model, "teacher_text"):
            v_teacher = model.velocity(x, sigma, cond, uncond, guidance)
    """
    if name is not None:
        require_adapter(model, name)
    if not lora_layers(model):  # no adapters at all: the transformer is the base already
        yield
        return
    previous, flags = active_state(model), lora_grad_flags(model)
    try:
        restore_state(model, ([name] if name is not None else [], name is None), flags)
        yield
    finally:
        restore_state(model, previous, flags)
