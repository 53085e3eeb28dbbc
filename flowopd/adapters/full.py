"""A full fine-tune held as an adapter: every Linear layer of the transformer gets a trainable weight delta.

Each layer's delta is a LoRA whose rank is the layer's input width, with A fixed at the identity and scale 1
(``alpha = r``), so ``(alpha / r) B A = B``: B *is* the delta of the layer's weight, and training B alone (A
frozen) is training the weight itself, with the optimizer's own geometry (docs/method.md, "A fully fine-tuned
student"). Held as a named adapter, it switches off like any LoRA, so the teachers and the MAR anchor stay the
frozen base plus their own adapters while the student's weights move. It covers the Linear layers (99 % of the
tiny transformer's parameters); norms, embeddings' biases and the patch convolution stay frozen.

The per-layer ranks are peft's ``rank_pattern`` (saved with the weights and in ``adapter.json``), so the folder
loads, evaluates and exports like any adapter.
"""

from __future__ import annotations

import torch
from peft.tuners.lora import LoraLayer
from torch import nn

from ..models.base import FlowModel
from .lora import add_lora_by_layer
from .registry import AdapterError, adapter_parameters, lora_layers


class IdentityFactor(nn.Linear):
    """A full delta's A factor: its weight is the identity (kept for saving and merging), so the forward pass
    skips the product, which would cost up to 4x the layer's own (a 512-wide MLP output)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@torch.no_grad()
def skip_identities(model: FlowModel, name: str) -> None:
    """Let every A factor of adapter ``name`` that is exactly the identity skip its product (same parameters)."""
    for module in lora_layers(model).values():
        a = module.lora_A[name] if name in module.lora_A else None
        if isinstance(a, nn.Linear) and a.in_features == a.out_features and torch.equal(a.weight, _eye(a.weight)):
            a.__class__ = IdentityFactor  # same module and parameter, another forward


def _eye(like: torch.Tensor) -> torch.Tensor:
    return torch.eye(like.shape[0], dtype=like.dtype, device=like.device)


def linear_layers(model: FlowModel) -> dict[str, int]:
    """The transformer's Linear layers (LoRA-wrapped or not) by qualified name -> input width."""
    out: dict[str, int] = {}
    for name, module in model.transformer.named_modules():
        if isinstance(module, LoraLayer):
            out[name] = int(module.base_layer.in_features)
        elif isinstance(module, nn.Linear) and ".lora_" not in name and not name.endswith("base_layer"):
            out[name] = int(module.in_features)
    return out


@torch.no_grad()
def add_full_delta(model: FlowModel, name: str, init: dict[str, torch.Tensor] | None = None) -> None:
    """Add adapter ``name``: a weight delta on every Linear layer (frozen, inactive, like :func:`add_lora`).

    Args:
        init: layer name -> the delta [out, in] to start from (e.g. a cold start's, :func:`adapter_deltas`);
            layers not named start at zero, so the adapter starts equal to the base plus ``init``.

    Raises:
        AdapterError: the name is taken, or ``init`` names a layer that is not a Linear layer of this model or
            a delta of the wrong shape.
    """
    widths = linear_layers(model)
    unknown = sorted(set(init or {}) - set(widths))
    if unknown:
        raise AdapterError(f"init deltas name layers this model lacks: {unknown[:3]}: start from an adapter of "
                           "this base model")
    for layer, delta in (init or {}).items():  # checked before the adapter exists, so a refusal leaves none
        module = model.transformer.get_submodule(layer)
        shape = tuple(getattr(module, "base_layer", module).weight.shape)
        if tuple(delta.shape) != shape:
            raise AdapterError(f"init delta of {layer} has shape {tuple(delta.shape)}, the layer {shape}")
    add_lora_by_layer(model, name, widths, 1.0)  # rank = the layer's input width, alpha / r = 1
    for layer, module in lora_layers(model).items():
        if name not in module.lora_A:
            continue
        a, b = module.lora_A[name].weight, module.lora_B[name].weight
        a.copy_(_eye(a))
        delta = (init or {}).get(layer)
        b.copy_(delta.to(b) if delta is not None else torch.zeros_like(b))
    skip_identities(model, name)


@torch.no_grad()
def adapter_deltas(model: FlowModel, name: str) -> dict[str, torch.Tensor]:
    """Layer name -> ``(alpha / r) B A`` [out, in] (fp32) of adapter ``name``, on every layer it adapts."""
    out = {}
    for layer, module in lora_layers(model).items():
        if name in module.lora_A:
            a, b = module.lora_A[name].weight.float(), module.lora_B[name].weight.float()
            out[layer] = module.scaling[name] * b @ a
    return out


def identity_factors(model: FlowModel, name: str) -> list[nn.Parameter]:
    """The fixed A factors (identities) of a full-delta adapter ``name``: the parameters its training leaves
    frozen."""
    return [p for n, p in adapter_parameters(model, name).items() if ".lora_A." in n]


def is_full_delta(model: FlowModel, name: str) -> bool:
    """Whether adapter ``name`` is a full delta: every Linear layer adapted, each A the identity at scale 1."""
    layers = lora_layers(model)
    if set(linear_layers(model)) - {n for n, m in layers.items() if name in m.lora_A}:
        return False
    for module in layers.values():
        if name not in module.lora_A:
            continue
        a = module.lora_A[name].weight
        if module.scaling[name] != 1.0 or a.shape[0] != a.shape[1] or not torch.equal(a, _eye(a)):
            return False
    return True
