"""Every reward's score of generated images, as the Generate tab's table shows them."""

from __future__ import annotations

from PIL import Image

from flowopd.rewards import REWARDS
from flowopd.world.grammar import NotACompositionPrompt, parse_compose_prompt
from flowopd.world.splits import record_for_prompt

# The compose cell of a prompt the grammar cannot parse: it names no objects for the detector to judge.
NOT_COMPOSITION = "n/a: not a composition prompt"


def reward_cells(images: list[Image.Image], prompt: str) -> dict[str, list[float | str]]:
    """Every reward's score per image, rounded for the table. ``compose`` judges the clauses parsed from the
    prompt (``flowopd.world.grammar``); a prompt outside that grammar gets ``NOT_COMPOSITION`` instead."""
    prompts, record = [prompt] * len(images), record_for_prompt(prompt)
    try:
        clauses = parse_compose_prompt(prompt)
    except NotACompositionPrompt:
        clauses = None
    cells: dict[str, list[float | str]] = {}
    for name, fn in REWARDS.items():
        if name == "compose" and clauses is None:
            cells[name] = [NOT_COMPOSITION] * len(images)
        else:
            scores = fn(images, prompts, [clauses if name == "compose" else record] * len(images))
            cells[name] = [round(s, 3) for s in scores]
    return cells
