"""The real-image rewards a config may name, checked without importing torch (configs load before torch).

A reward name in a config is a registered reward (:data:`REWARD_NAMES`, the tiny world's) or
a real-image reward, written ``NAME`` or ``NAME:ARGUMENT``:

==================  ===========  ========  =======================================================================
name                argument     task      what it scores (every score is in [0, 1], about)
==================  ===========  ========  =======================================================================
``ocr``             none         text      rapidocr reads the image: 1 - normalised edit distance to the quoted text
``pickscore``       FOLDER       prefer    PickScore: CLIP logit of (prompt, image) / 26 (Flow-GRPO's scale)
``aesthetic``       FOLDER       quality   LAION aesthetic predictor (MLP on CLIP ViT-L/14 image embeddings) / 10
``geneval``         URL          compose   GenEval's detector behind a reward server (partial credit)
``deqa``            URL          quality   DeQA-Score behind a reward server (1-5) / 5
``remote``          URL (given)  none      any reward server answering the protocol of :mod:`flowopd.rewards.remote`
==================  ===========  ========  =======================================================================

FOLDER defaults to ``~/.cache/flowopd/rewards/NAME`` and URL to Flow-GRPO's port of that server, so
``{"ocr": 1.0}``, ``{"pickscore:/data/pickscore": 1.0}`` and ``{"remote:http://gpu3:8000": 1.0}`` are all rewards.
In a mix, a reward scores only its task's prompts when that task is trained (as a tiny-world reward named after
its task does), and every prompt otherwise; so DeQA is added to all images, as in the paper.

Example:
    >>> split_reward("geneval:http://gpu3:18085")
    ('geneval', 'http://gpu3:18085')
    >>> reward_task("ocr"), reward_task("remote:http://gpu3:8000"), reward_task("text")
    ('text', None, 'text')
    >>> sd35_rewards({"text": 1.0, "compose": 3.0})
    {'ocr': 1.0, 'geneval': 1.0}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The registered rewards' names (flowopd.rewards.REWARDS; a test checks it), so a config is checked without
# importing torch; flowopd.rewards.register_reward adds a new name here too.
REWARD_NAMES: list[str] = ["compose", "text", "prefer", "quality"]
# The environment variable holding a reward server's token, for the server and its clients (flowopd reward serve).
TOKEN_ENV = "FLOWOPD_REWARD_TOKEN"


@dataclass(frozen=True)
class RealReward:
    """How a real-image reward is named: its argument, the task whose prompts it scores, its default."""

    argument: str | None  # "FOLDER", "URL" or None (takes none)
    task: str | None  # the tiny-world task it stands for in a mix; None = it scores every prompt
    default: str | None = None  # the argument when none is given; None = the argument is required


# Flow-GRPO serves GenEval on 18085 and DeQA on 18086 (flow_grpo/rewards.py).
GENEVAL_URL = "http://127.0.0.1:18085"
DEQA_URL = "http://127.0.0.1:18086"
REAL_REWARDS: dict[str, RealReward] = {
    "ocr": RealReward(None, "text"),
    "pickscore": RealReward("FOLDER", "prefer", "~/.cache/flowopd/rewards/pickscore"),
    "aesthetic": RealReward("FOLDER", "quality", "~/.cache/flowopd/rewards/aesthetic"),
    "geneval": RealReward("URL", "compose", GENEVAL_URL),
    "deqa": RealReward("URL", "quality", DEQA_URL),
    "remote": RealReward("URL", None),
}
# The paper's reward of each task on SD3.5 (GenEval, OCR, PickScore, DeQA), by the tiny world's task names.
SD35_TASK_REWARDS: dict[str, str] = {"compose": "geneval", "text": "ocr", "prefer": "pickscore", "quality": "deqa"}


def split_reward(name: str) -> tuple[str, str | None]:
    """``"NAME:ARGUMENT"`` -> ``(NAME, ARGUMENT)``; ``"NAME"`` -> ``(NAME, None)``."""
    base, sep, argument = name.partition(":")
    return base, (argument if sep else None)


def real_reward_forms() -> str:
    """The ways to write a real-image reward, for messages: ``ocr, pickscore[:FOLDER], ..., remote:URL``."""
    forms = []
    for name, r in REAL_REWARDS.items():
        forms.append(name if r.argument is None else f"{name}[:{r.argument}]" if r.default else f"{name}:{r.argument}")
    return ", ".join(forms)


def reward_problem(name: object, registered: list[str] | tuple[str, ...]) -> str | None:
    """Why ``name`` is not a reward a config may use (a registered name or a real-image one), or None."""
    if name in registered:
        return None
    base, argument = split_reward(name) if isinstance(name, str) else (None, None)
    real = REAL_REWARDS.get(base)
    if real is None:
        return (f"{name!r} is not a registered reward; use names from {', '.join(registered)}, or a real-image "
                f"reward: {real_reward_forms()}")
    if real.argument is None and argument is not None:
        return f"{base!r} takes no argument: write {base!r}"
    if argument is not None and not argument.strip():
        return f"{name!r} has an empty {real.argument}: write {base}:{real.argument} or leave ':' out"
    if real.argument == "URL":
        url = argument if argument is not None else real.default
        if url is None:
            return f"{base!r} needs the server's address: write {base}:http://HOST:PORT"
        if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
            return f"{name!r}: the server's address must start with http:// or https://, e.g. {base}:http://HOST:PORT"
    return None


def reward_task(name: str) -> str | None:
    """The task whose prompts ``name`` scores in a mix: its own name for a tiny-world reward, the task a
    real-image reward stands for, or None for a reward of every prompt (``remote:URL``)."""
    base, _ = split_reward(name)
    return REAL_REWARDS[base].task if base in REAL_REWARDS else name


def reward_argument(name: str) -> str | None:
    """The folder or URL of a real-image reward: the one written after ':' or its default (``~`` expanded)."""
    base, argument = split_reward(name)
    value = argument if argument is not None else REAL_REWARDS[base].default
    if value is not None and REAL_REWARDS[base].argument == "FOLDER":
        return str(Path(value).expanduser())
    return value


def sd35_rewards(prompt_tasks: dict) -> dict[str, float]:
    """The paper's reward for each trained task, weight 1 each (each scores only its own task's prompts)."""
    return {SD35_TASK_REWARDS[task]: 1.0 for task in prompt_tasks if task in SD35_TASK_REWARDS}


__all__ = ["DEQA_URL", "GENEVAL_URL", "REAL_REWARDS", "SD35_TASK_REWARDS", "RealReward", "real_reward_forms",
           "reward_argument", "reward_problem", "reward_task", "sd35_rewards", "split_reward"]
