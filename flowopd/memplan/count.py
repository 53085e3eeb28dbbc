"""Counting the activation memory of one training forward/backward of a transformer slice, on a CPU.

The peak of live tensor bytes during a guided student velocity and its backward, parameters and buffers
excluded: saved activations, the backward's transient buffers and, with gradient checkpointing, the recomputed
block. It is what a GPU allocator must hold beyond the weights (fragmentation aside). Real-width slices of 1-3
blocks give the per-token coefficients of :mod:`.plan`'s formula (``benchmarks/activation_bytes.py``).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveBytes(TorchDispatchMode):
    """Tracks the bytes of every storage an op creates while the mode is active; ``peak`` is their maximum.

    Storages listed in ``ignore`` (the weights') are not counted when an op returns a view of them.
    """

    def __init__(self, ignore: set[int] = frozenset()):
        super().__init__()
        self.ignore, self.live, self.now, self.peak = set(ignore), {}, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self.live or key in self.ignore:
            return
        self.live[key] = storage.nbytes()
        self.now += self.live[key]
        self.peak = max(self.peak, self.now)
        weakref.finalize(storage, self._free, key)  # fires when the storage itself is freed

    def _free(self, key: int) -> None:
        self.now -= self.live.pop(key)


def storage_keys(module: torch.nn.Module) -> set[int]:
    """The storages of a module's parameters and buffers (for :class:`LiveBytes`'s ``ignore``)."""
    return {t.untyped_storage()._cdata for t in (*module.parameters(), *module.buffers())}


def slice_peak_bytes(config: dict[str, Any], layers: int, dual: int, resolution: int, *, text_tokens: int = 205,
                     dtype: torch.dtype = torch.bfloat16, checkpointing: bool = False, lora_rank: int = 32) -> int:
    """Peak activation bytes of one guided (CFG) student velocity and its backward for one image, on a
    ``layers``-block slice of the ``SD3Transformer2DModel`` ``config`` (``dual`` dual-attention blocks first),
    with a float32 LoRA of ``lora_rank`` on a base in ``dtype``, as the trainers run it."""
    from diffusers import SD3Transformer2DModel

    from ..adapters import add_lora, trainable_parameters, use_adapter
    from ..bench.model import BenchFlowModel
    from ..models.base import PromptEmbeds

    cfg = dict(config, num_layers=layers, dual_attention_layers=tuple(range(dual)))
    torch.manual_seed(0)
    model = BenchFlowModel(SD3Transformer2DModel(**cfg), resolution, text_tokens)
    add_lora(model, "student", lora_rank, 2.0 * lora_rank)
    trainable_parameters(model, "student")
    for name, p in model.transformer.named_parameters():  # as flowopd.training.dist.prepare_model casts
        p.data = p.data.float() if "lora_" in name else p.data.to(dtype)
    if checkpointing:
        model.transformer.enable_gradient_checkpointing()
    model.transformer.train()
    x = torch.randn(1, *model.latent_shape)

    def embeds() -> PromptEmbeds:
        return PromptEmbeds(torch.randn(1, text_tokens, cfg["joint_attention_dim"]),
                            torch.randn(1, cfg["pooled_projection_dim"]))

    cond, uncond = embeds(), embeds()
    tracker = LiveBytes(storage_keys(model.transformer))
    with tracker, use_adapter(model, "student"):
        model.velocity(x, 0.5, cond, uncond, 4.5).float().square().mean().backward()
    return tracker.peak
