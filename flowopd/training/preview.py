"""What a running method shows on *sample now*: ODE samples of the adapter it trains.

:func:`prompt_preview` serves the prompt-driven methods (GRPO, NFT, AWM, OPD): the first test prompt of each
trained task. A method whose data are images (SFT) names its own preview in its :class:`~flowopd.methods.Method`.
"""

from __future__ import annotations

from typing import Any

from ..adapters import use_adapter
from ..events import Sample
from ..models.base import FlowModel, to_pil
from ..sampling import generate
from ..world.prompts import TASKS
from ..world.splits import load_prompts


def prompt_preview(model: FlowModel, cfg: Any) -> list[Sample]:
    """ODE samples (seeds ``seed + i``) of the first test prompt of each trained task from ``cfg.adapter_name``."""
    records = [load_prompts(task, "test")[0] for task in cfg.prompt_tasks if task in TASKS]
    seeds = [cfg.seed + i for i in range(len(records))]
    with use_adapter(model, cfg.adapter_name):
        images = generate(model, [r["prompt"] for r in records], seeds=seeds, num_steps=cfg.eval_steps,
                          guidance=cfg.guidance)
    return [Sample(image, r["prompt"], seed, {"task": r["task"]}) for r, seed, image in
            zip(records, seeds, to_pil(images))]
