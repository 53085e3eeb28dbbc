"""Exponential moving average of the student's LoRA weights (Flow-GRPO evaluates the EMA)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

from ..config.choices import EMA_WARMUPS


def ema_decay(update: int, decay: float, warmup: str = "mean") -> float:
    """The decay of the EMA's ``update``-th update (0-based).

    * ``mean``: ``min(decay, k / (k + 1))``: the first update copies the live weights and the next ones keep
      the running mean of the updates until ``decay`` is reached, so no initial (base) weight is left behind.
    * ``legacy``: ``min(decay, (1 + s) / (10 + s))`` at optimizer step ``s = (update + 1) * every``, averaging
      from the initial weights: after 16 steps with ``every`` 8 a third of the EMA is still the initial
      weights (``docs/notes/grpo-tuning.md``). The published runs of the first reproductions used it.

    Example:
        >>> [round(ema_decay(k, 0.9), 3) for k in range(4)]
        [0.0, 0.5, 0.667, 0.75]
    """
    if warmup == "mean":
        return min(decay, update / (update + 1))
    if warmup == "legacy":
        raise ValueError("the legacy warm-up depends on the optimizer step: use LoraEMA")
    raise ValueError(f"unknown EMA warm-up {warmup!r}: use one of {', '.join(EMA_WARMUPS)}")


class LoraEMA:
    """EMA of the student's LoRA, updated every ``every`` optimizer steps, with the warm-up ``warmup``
    (:func:`ema_decay`). The update count follows from the step, so a resumed run continues the same EMA."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float, every: int, warmup: str = "mean"):
        if warmup not in EMA_WARMUPS:
            raise ValueError(f"unknown EMA warm-up {warmup!r}: use one of {', '.join(EMA_WARMUPS)}")
        self.params, self.decay, self.every, self.warmup = params, decay, every, warmup
        self.shadow = [p.detach().clone() for p in params]

    def decay_at(self, step: int) -> float:
        """The decay of the update made at optimizer step ``step`` (a multiple of ``every``)."""
        if self.warmup == "legacy":
            return min(self.decay, (1 + step) / (10 + step))
        return ema_decay(step // self.every - 1, self.decay)

    @torch.no_grad()
    def update(self, step: int) -> None:
        if step % self.every == 0:
            torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - self.decay_at(step))

    def state_dict(self) -> dict:
        return {"shadow": [s.cpu() for s in self.shadow]}

    def load_state_dict(self, state: Mapping) -> None:
        for s, v in zip(self.shadow, state["shadow"], strict=True):
            s.copy_(v)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The EMA weights in the student's parameters inside the block, the live ones after."""
        live = [p.detach().clone() for p in self.params]
        self.copy_to_params()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, v in zip(self.params, live):
                    p.copy_(v)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        for p, s in zip(self.params, self.shadow):
            p.copy_(s)
