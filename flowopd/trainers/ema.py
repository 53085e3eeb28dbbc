"""Exponential moving average of the student's LoRA weights (Flow-GRPO evaluates the EMA)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch


class LoraEMA:
    """EMA of the student's LoRA, updated every ``every`` steps with decay ``min(decay, (1 + k) / (10 + k))``."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float, every: int):
        self.params, self.decay, self.every = params, decay, every
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        if step % self.every == 0:
            decay = min(self.decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - decay)

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
