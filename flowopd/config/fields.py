"""Checks and helpers that several configs share: task and reward weight mappings, the reward of a task, the
SD3.5 presets' rewards. Torch-free.
"""

from __future__ import annotations

import math
from typing import Any

from .. import reward_names
from ..reward_names import reward_problem, sd35_rewards
from ..world.prompts import TASKS
from .base import fail

__all__ = ["check_reward_weights", "check_task_rewards", "check_weights", "sd35_reward_overrides", "task_reward"]


def check_weights(name: str, value: Any, allowed: tuple[str, ...] | list[str] = TASKS, what: str = "task") -> None:
    """A non-empty mapping of ``allowed`` names to finite weights >= 0, at least one positive."""
    if not isinstance(value, dict) or not value:
        fail(name, value, 'use a non-empty mapping such as {"compose": 1.0}')
    for key, w in value.items():
        if key not in allowed:
            fail(name, value, f"{key!r} is not a {what}; use names from {', '.join(allowed)}")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0 or not math.isfinite(w):
            fail(name, value, f"the weight of {key!r} must be a finite number >= 0")
    if sum(value.values()) <= 0:
        fail(name, value, "give at least one entry a positive weight")


def check_reward_weights(name: str, value: Any) -> None:
    """Reward -> weight: registered rewards (``reward_names.REWARD_NAMES``, read when called, so rewards registered
    later count) and real-image ones (:mod:`flowopd.reward_names`)."""
    for key in value if isinstance(value, dict) else ():
        problem = reward_problem(key, reward_names.REWARD_NAMES)
        if problem:
            fail(name, value, problem)
    check_weights(name, value, list(value) if isinstance(value, dict) else reward_names.REWARD_NAMES, what="reward")


def check_task_rewards(value: Any) -> None:
    """``task_rewards``: tasks mapped to rewards a config may use."""
    if not isinstance(value, dict):
        fail("task_rewards", value, 'map tasks to reward names, e.g. {"text": "ocr"}')
    for task, reward in value.items():
        if task not in TASKS:
            fail("task_rewards", value, f"{task!r} is not a task; use names from {', '.join(TASKS)}")
        problem = reward_problem(reward, reward_names.REWARD_NAMES)
        if problem:
            fail("task_rewards", value, problem)


def task_reward(task_rewards: dict, task: str) -> str:
    """The reward that scores ``task``: ``task_rewards[task]``, else the tiny world's reward named ``task``."""
    return task_rewards.get(task, task)


def sd35_reward_overrides(cls: type, overrides: dict) -> dict:
    """``{"rewards": ...}``: the paper's reward of each prompt task (GenEval, OCR, PickScore, DeQA), for an SD3.5
    preset whose overrides name no rewards (flowopd.reward_names.SD35_TASK_REWARDS)."""
    if "rewards" in overrides:
        return {}
    rewards = sd35_rewards(overrides.get("prompt_tasks", cls.field_info("prompt_tasks").default))
    return {"rewards": rewards} if rewards else {}
