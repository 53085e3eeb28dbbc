"""Rewards: plain callables ``(images, prompts, metadata) -> list[float]`` registered by name.

``images`` may be PIL images, a uint8 [N, H, W, 3] array or a float [N, 3, H, W] tensor in [0, 1], of
any size; ``metadata`` holds each prompt's record (``flowopd.world.prompts``). Every score is in [0, 1].

:data:`REWARDS` are the tiny world's (always available, so the app scores with all of them). Real images have
their own, named in :mod:`flowopd.reward_names` and built by :func:`get_reward` on demand: ``ocr``,
``pickscore``, ``aesthetic`` (weights from a local folder) and ``geneval``, ``deqa``, ``remote:URL`` (reward
servers, :mod:`flowopd.rewards.remote`).
"""

from __future__ import annotations

from collections.abc import Callable

from ..reward_names import real_reward_forms
from .compose import compose_correct, compose_reward
from .prefer import prefer_reward
from .quality import quality_reward
from .text import text_reward

RewardFn = Callable[[object, list[str], list[dict]], list[float]]

REWARDS: dict[str, RewardFn] = {
    "compose": compose_reward,
    "text": text_reward,
    "prefer": prefer_reward,
    "quality": quality_reward,
}


def get_reward(name: str) -> RewardFn:
    """The reward registered as ``name``, or the real-image reward it names (e.g. ``"pickscore:/data/ps"``)."""
    if name in REWARDS:
        return REWARDS[name]
    from .real import is_real_reward, real_reward  # cheap: models load on a reward's first call

    if is_real_reward(name):
        return real_reward(name)
    raise ValueError(f"unknown reward {name!r}: choose one of {', '.join(REWARDS)}, or a real-image reward: "
                     f"{real_reward_forms()}")


def register_reward(name: str, fn: RewardFn) -> None:
    """Add a reward under a name configs may use (e.g. a :class:`~flowopd.rewards.remote.RemoteReward` with its
    own timeout and batch size)."""
    from ..reward_names import REWARD_NAMES  # the names GRPO configs accept (kept there so configs need no torch)

    if not callable(fn):
        raise TypeError(f"reward {name!r} must be callable as fn(images, prompts, metadata)")
    REWARDS[name] = fn
    if name not in REWARD_NAMES:
        REWARD_NAMES.append(name)


def weighted_reward(weights: dict[str, float]) -> RewardFn:
    """A reward that sums several registered rewards with weights (the GRPO-Mix objective)."""
    fns = {name: get_reward(name) for name in weights}

    def combined(images, prompts, metadata):
        total = [0.0] * len(prompts)
        for name, fn in fns.items():
            for i, s in enumerate(fn(images, prompts, metadata)):
                total[i] += weights[name] * s
        return total

    return combined


__all__ = ["REWARDS", "RewardFn", "compose_correct", "get_reward", "register_reward", "weighted_reward"]
