"""``compose``: GenEval-style reward from the analytic detector (partial credit per include clause)."""

from __future__ import annotations

from ..world.detector import detect, judge
from ..world.scene import IMAGE_SIZE
from .images import as_uint8_list


def compose_reward(images, prompts: list[str], metadata: list[dict]) -> list[float]:
    """Flow-GRPO's GenEval training score: mean over clauses of count, colour and position credit.

    >>> from flowopd.world.scene import Scene, SceneObject, render
    >>> image = render(Scene((SceneObject("circle", "red", "big", 0.5, 0.5),)))
    >>> compose_reward([image], ["a photo of a red circle"],
    ...                [{"include": [{"class": "circle", "count": 1, "color": "red"}]}])
    [1.0]
    """
    return [judge(detect(a), m)[1] for a, m in zip(as_uint8_list(images, IMAGE_SIZE), metadata)]


def compose_correct(images, prompts: list[str], metadata: list[dict]) -> list[float]:
    """Strict GenEval correctness (1.0 or 0.0) per image: the evaluation metric."""
    return [float(judge(detect(a), m)[0]) for a, m in zip(as_uint8_list(images, IMAGE_SIZE), metadata)]
