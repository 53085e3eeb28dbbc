"""The real-image rewards by name (:mod:`flowopd.reward_names`): ``ocr``, ``pickscore[:FOLDER]``,
``aesthetic[:FOLDER]``, ``geneval[:URL]``, ``deqa[:URL]`` and ``remote:URL``, built once per name and process.

Building checks what can be checked without work (a folder's files, a URL's form); models load on the first
call and servers are first asked then, so naming a reward costs nothing.
"""

from __future__ import annotations

import threading

from ..reward_names import REAL_REWARDS, reward_argument, reward_problem, split_reward

_built: dict[str, object] = {}
_lock = threading.Lock()


def _build(base: str, argument: str | None):
    if base == "ocr":
        from .ocr import ocr_reward

        return ocr_reward
    if base == "pickscore":
        from .pickscore import PickScore

        return PickScore(argument)
    if base == "aesthetic":
        from .aesthetic import Aesthetic

        return Aesthetic(argument)
    from .remote import RemoteReward

    # The servers: GenEval answers partial credit in [0, 1]; DeQA-Score rates 1-5, divided by 5 as in the paper.
    return RemoteReward(argument, scale=5.0 if base == "deqa" else 1.0)


def real_reward(name: str):
    """The reward callable of a real-image reward name; ValueError (saying how to write one) for other names."""
    problem = reward_problem(name, ())
    if problem:
        raise ValueError(f"unknown reward {name!r}: {problem}")
    with _lock:
        if name not in _built:
            base, _ = split_reward(name)
            _built[name] = _build(base, reward_argument(name))
        return _built[name]


def is_real_reward(name: str) -> bool:
    """Whether ``name`` is written as a real-image reward (it may still be malformed)."""
    return split_reward(name)[0] in REAL_REWARDS
