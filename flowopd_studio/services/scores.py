"""Every reward's score of generated images, as the Generate tab's table shows them."""

from __future__ import annotations

from PIL import Image

from flowopd.rewards import REWARDS
from flowopd.world.grammar import NotACompositionPrompt, parse_compose_prompt
from flowopd.world.splits import record_for_prompt

# The compose cell of a prompt the grammar cannot parse: it names no objects for the detector to judge.
NOT_COMPOSITION = "n/a: not a composition prompt"
# A column no reward scores on this model (an SD3 model without PickScore weights or GenEval/DeQA servers).
NO_REWARD = "n/a: needs a reward server or weights (docs/rewards.md)"


def scoring_rewards(model=None) -> dict:
    """The reward of each score column (named by task): the tiny world's on the tiny model; on an SD3 model the
    real-image ones that need nothing more (``ocr`` for text), None for the others (PickScore weights, GenEval
    and DeQA servers are the user's to configure), since the tiny world's rewards judge 32 px shapes."""
    from flowopd.models.sd3 import SD3FlowModel

    if not isinstance(model, SD3FlowModel):
        return dict(REWARDS)
    from flowopd.rewards import get_reward

    return {"compose": None, "text": get_reward("ocr"), "prefer": None, "quality": None}


def reward_cells(images: list[Image.Image], prompt: str, rewards: dict | None = None) -> dict[str, list[float | str]]:
    """Every reward's score per image, rounded for the table (``rewards``: :func:`scoring_rewards`'s, default the
    tiny world's). ``compose`` judges the clauses parsed from the prompt (``flowopd.world.grammar``); a prompt
    outside that grammar gets ``NOT_COMPOSITION`` instead, a column without a reward ``NO_REWARD``."""
    prompts, record = [prompt] * len(images), record_for_prompt(prompt)
    try:
        clauses = parse_compose_prompt(prompt)
    except NotACompositionPrompt:
        clauses = None
    cells: dict[str, list[float | str]] = {}
    for name, fn in (REWARDS if rewards is None else rewards).items():
        if fn is None:
            cells[name] = [NO_REWARD] * len(images)
        elif name == "compose" and clauses is None:
            cells[name] = [NOT_COMPOSITION] * len(images)
        else:
            scores = fn(images, prompts, [clauses if name == "compose" else record] * len(images))
            cells[name] = [round(s, 3) for s in scores]
    return cells
