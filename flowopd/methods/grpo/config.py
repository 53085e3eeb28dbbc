"""The Flow-GRPO teacher's config (``kind="grpo"``): tiny-world defaults, ``sd35_medium()`` for SD3.5 Medium.
Torch-free. The method: docs/method.md, "GRPO".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...config.base import fail, option
from ...config.fields import check_reward_weights, check_weights, sd35_reward_overrides
from ...config.rl import SDERLConfig

__all__ = ["GRPOConfig"]


@dataclass
class GRPOConfig(SDERLConfig, kind="grpo"):
    """Stage 1: a Flow-GRPO teacher on one reward, or on several with weights (the GRPO-Mix baseline)."""

    rewards: dict = option({"compose": 1.0}, "reward name -> weight; several rewards at once is GRPO-Mix", group="GRPO")
    prompt_tasks: dict = option({"compose": 1.0}, "task -> sampling weight of its train prompts", group="GRPO")
    beta: float = option(0.04, "weight of the KL to the base model (adapters disabled); 0 turns it off",
                         min=0, group="GRPO")
    global_std: bool = option(True, "normalise advantages by the std of all rewards (Flow-GRPO), else per group",
                              group="GRPO")
    mask_zero_std: bool = option(True, "skip groups whose rewards are all equal (no learning signal)", group="GRPO")
    adapter_name: str = option("teacher", "name of the trained LoRA adapter", group="GRPO")

    def check(self) -> None:
        self._check_common()
        check_reward_weights("rewards", self.rewards)
        check_weights("prompt_tasks", self.prompt_tasks)
        if self.group_size < 2:
            fail("group_size", self.group_size, "GRPO needs >= 2 images per prompt for a group baseline")

    @classmethod
    def sd35_medium(cls, **overrides: Any) -> GRPOConfig:
        """Flow-GRPO's SD3.5-M teacher settings (its released config): G 24, lr 3e-4, beta 0.04; rewards: the paper's
        reward of
        each prompt task unless given (compose -> geneval, text -> ocr, prefer -> pickscore, quality -> deqa)."""
        return cls._sd35(**{"batch_size": 48, "group_size": 24, "train_batch_size": 8, "lr": 3e-4,
                            **sd35_reward_overrides(cls, overrides), **overrides})
