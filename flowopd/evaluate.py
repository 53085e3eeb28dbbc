"""The fixed evaluation protocol: test prompts, fixed seeds, deterministic ODE sampling.

Metrics, each in [0, 1]: ``compose`` = strict GenEval accuracy (mean over the six categories of the
per-image correctness), ``text`` = mean OCR reward, ``prefer`` and ``quality`` = mean reward on their
test prompts; ``average`` = mean of the four (the paper's "Average" column).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .dataclass_util import build_strict
from .models.base import FlowModel
from .rewards import compose_correct, get_reward
from .sampling import generate
from .world.prompts import TASKS
from .world.splits import load_prompts

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """The protocol's settings: tiny-world defaults; :meth:`sd35_medium` for SD3.5 Medium (40 steps, CFG 4.5)."""

    num_steps: int = 20  # ODE (Euler) steps
    guidance: float = 3.0  # classifier-free guidance scale
    images_per_prompt: int = 1
    seed: int = 1000  # image i of the split uses seed + i
    batch_size: int = 64
    tasks: list[str] = field(default_factory=lambda: list(TASKS))

    def __post_init__(self) -> None:
        if not 1 <= self.num_steps <= 1000:
            raise ValueError(f"num_steps {self.num_steps} is impossible: use 1 to 1000")
        if self.images_per_prompt < 1:
            raise ValueError(f"images_per_prompt must be >= 1, got {self.images_per_prompt}")
        if not self.guidance >= 0:
            raise ValueError(f"guidance {self.guidance} is invalid: use a scale >= 0 (1.0 disables guidance)")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        bad = [t for t in self.tasks if t not in TASKS]
        if bad:
            raise ValueError(f"unknown tasks {bad} in tasks: use some of {list(TASKS)}")

    @classmethod
    def sd35_medium(cls, **overrides) -> EvalConfig:
        """SD3.5 Medium's evaluation setting in the paper: 40 ODE steps at CFG 4.5."""
        return cls(**{"num_steps": 40, "guidance": 4.5, "batch_size": 16, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EvalConfig:
        """From a dict of fields; unknown keys are refused by name."""
        return build_strict(cls, data, "eval")


def task_metric(task: str, images, records: list[dict]) -> float:
    prompts = [r["prompt"] for r in records]
    if task == "compose":
        correct = np.array(compose_correct(images, prompts, records))
        tags = np.array([r["tag"] for r in records])
        return float(np.mean([correct[tags == t].mean() for t in sorted(set(tags))]))
    return float(np.mean(get_reward(task)(images, prompts, records)))


def evaluate(model: FlowModel, cfg: EvalConfig | None = None, *, model_name: str = "",
             on_images: Callable[[str, list[dict], object], None] | None = None) -> dict:
    """Run the protocol; returns ``{"model", "protocol", "metrics", "average"}``.

    ``on_images(task, records, images)`` sees every task's images (e.g. to save a grid).
    """
    cfg = cfg or EvalConfig()
    start = time.perf_counter()
    metrics = {}
    for task in cfg.tasks:
        records = [r for r in load_prompts(task, "test") for _ in range(cfg.images_per_prompt)]
        seeds = [cfg.seed + i for i in range(len(records))]
        images = generate(model, [r["prompt"] for r in records], seeds=seeds, num_steps=cfg.num_steps,
                          guidance=cfg.guidance, batch_size=cfg.batch_size)
        if on_images:
            on_images(task, records, images)
        metrics[task] = task_metric(task, images, records)
        log.info("eval %s: %.4f", task, metrics[task])
    log.info("evaluation took %.1f s", time.perf_counter() - start)
    return {"model": model_name, "protocol": asdict(cfg), "metrics": metrics,
            "average": float(np.mean(list(metrics.values())))}
