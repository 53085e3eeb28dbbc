"""The fixed evaluation protocol: test prompts, fixed seeds, deterministic ODE sampling.

Metrics, each in [0, 1]: ``compose`` = strict GenEval accuracy (mean over the six categories of the
per-image correctness), ``text`` = mean OCR reward, ``prefer`` and ``quality`` = mean reward on their
test prompts; ``average`` = mean of the four (the paper's "Average" column).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from .eval_config import EvalConfig  # re-exported; the config lives in a torch-free module
from .models.base import FlowModel
from .rewards import compose_correct, get_reward
from .sampling import generate
from .world.splits import load_prompts

log = logging.getLogger(__name__)


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
