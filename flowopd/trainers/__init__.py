"""The training stages on the shared model interface: GRPO teachers, cold start, on-policy distillation.

* :func:`flowopd.trainers.grpo.train_grpo`: Stage 1, a Flow-GRPO teacher on one reward, or GRPO-Mix on several.
* :func:`flowopd.trainers.nft.train_nft`: a DiffusionNFT teacher on one reward, or NFT-Mix on several.
* :func:`flowopd.trainers.awm.train_awm`: an Advantage Weighted Matching teacher on one reward, or several.
* :func:`flowopd.trainers.coldstart.run_coldstart`: the student's first LoRA (merge, merge-avg, sft, none).
* :func:`flowopd.trainers.opd.train_opd`: Stage 2, on-policy distillation of the routed teachers, with MAR.

Every trainer runs under ``accelerate`` (one process by default; ``accelerate launch`` for several), keeps one
frozen base with named LoRA adapters (only the student trains), reports through a ``callback`` and saves
resumable checkpoints (:mod:`flowopd.trainers.checkpoint`). This package imports nothing heavy itself, so
``flowopd --help`` stays fast: the names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"train_grpo": "grpo", "train_nft": "nft", "train_awm": "awm", "train_opd": "opd",
            "run_coldstart": "coldstart", "TrainResult": "loop"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
