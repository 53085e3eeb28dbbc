"""Which LoRA adapters a model has, and which transformer layers and parameters belong to which adapter."""

from __future__ import annotations

from peft.tuners.lora import LoraLayer
from torch import nn

from ..models.base import FlowModel


class AdapterError(ValueError):
    """An adapter is missing, malformed or does not fit the model."""


def adapter_names(model: FlowModel) -> list[str]:
    """Names of the LoRA adapters on the model's transformer, in the order they were added."""
    return list(getattr(model.transformer, "peft_config", {}) or {})


def require_adapter(model: FlowModel, name: str) -> None:
    """Raise :class:`AdapterError` unless the model has an adapter ``name``."""
    if name not in adapter_names(model):
        raise AdapterError(f"no adapter named {name!r} on this model: adapters are {adapter_names(model) or 'none'}")


def lora_layers(model: FlowModel) -> dict[str, LoraLayer]:
    """The transformer's LoRA-wrapped modules by qualified name (e.g. ``transformer_blocks.0.attn.to_q``)."""
    return {n: m for n, m in model.transformer.named_modules() if isinstance(m, LoraLayer)}


def adapter_of_parameter(param_name: str) -> str | None:
    """The adapter a transformer parameter belongs to, None for a base weight.

    Example:
        >>> adapter_of_parameter("transformer_blocks.0.attn.to_q.lora_A.student.weight")
        'student'
    """
    parts = param_name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.startswith("lora_"):
            return parts[i + 1]
    return None


def adapter_parameters(model: FlowModel, name: str) -> dict[str, nn.Parameter]:
    """The LoRA parameters of adapter ``name`` by qualified name."""
    require_adapter(model, name)
    return {n: p for n, p in model.transformer.named_parameters() if adapter_of_parameter(n) == name}
