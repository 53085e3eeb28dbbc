"""The evaluation protocol's settings (:class:`EvalConfig`), importable without torch (re-exported by
:mod:`flowopd.evaluate`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..world.prompt_sets import check_prompt_sets
from ..world.prompts import TASKS
from .base import ConfigBase, option
from .fields import check_task_rewards


@dataclass
class EvalConfig(ConfigBase, kind="eval"):
    """The protocol's settings: tiny-world defaults; :meth:`sd35_medium` for SD3.5 Medium (40 steps, CFG 4.5)."""

    num_steps: int = option(20, "ODE (Euler) sampling steps", min=1, max=1000)
    guidance: float | None = option(None, "CFG scale of every model (1.0 disables guidance); None = each model at "
                                    "its own: an adapter's adapter.json guidance, else base_guidance", min=0)
    base_guidance: float = option(3.0, "CFG scale of the base model, and of adapters that carry none (imported "
                                  "LoRAs, adapters saved before adapters carried one)", min=0)
    images_per_prompt: int = option(1, "images per test prompt", min=1)
    seed: int = option(1000, "seed of the first image; image i of the split uses seed + i", min=0)
    batch_size: int = option(64, "images per sampling batch", min=1)
    tasks: list[str] = option(list(TASKS), f"tasks to evaluate, some of {', '.join(TASKS)}")
    prompt_sets: dict = option({}, "task -> folder of your own prompts (Flow-GRPO's layout): its test split is "
                               "evaluated instead of the tiny world's")
    task_rewards: dict | None = option(None, "task -> the reward that scores it, e.g. {\"text\": \"ocr\"}; None = the "
                                       "model's: the tiny world's on the tiny model, the paper's on SD3 (docs/sd35.md)")

    def check(self) -> None:
        bad = [t for t in self.tasks if t not in TASKS]
        if bad:
            raise ValueError(f"unknown tasks {bad} in tasks: use some of {list(TASKS)}")
        check_prompt_sets(self.prompt_sets)
        if self.task_rewards is not None:
            check_task_rewards(self.task_rewards)

    @classmethod
    def sd35_medium(cls, **overrides) -> EvalConfig:
        """SD3.5 Medium's evaluation setting in the paper: 40 ODE steps, the base at CFG 4.5."""
        return cls(**{"num_steps": 40, "base_guidance": 4.5, "batch_size": 16, **overrides})

    def scale(self) -> float:
        """The CFG scale of a model without an adapter's own: ``guidance``, else ``base_guidance``."""
        return self.base_guidance if self.guidance is None else self.guidance
