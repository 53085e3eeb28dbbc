"""The registry of worker stages: stage name -> :class:`Stage` (freeze, run, checkpoint_step).

Stages: ``pretrain``, ``eval``, the trainers ``grpo``, ``coldstart``, ``opd``, ``nft`` and ``awm`` (their shared loop is
``training.py``), the supervised teacher ``sft`` and the whole benchmark ``reproduce``. Wiring in another
means writing a module like ``pretrain.py`` (its heavy imports inside the functions, so this registry stays
cheap to import) and adding its ``STAGE`` to :data:`STAGES`.
"""

from __future__ import annotations

from ..errors import UnknownStage
from .awm import STAGE as AWM
from .base import Stage, StopStage
from .coldstart import STAGE as COLDSTART
from .eval import STAGE as EVAL
from .grpo import STAGE as GRPO
from .nft import STAGE as NFT
from .opd import STAGE as OPD
from .pretrain import STAGE as PRETRAIN
from .reproduce import STAGE as REPRODUCE
from .sft import STAGE as SFT

STAGES: dict[str, Stage] = {stage.name: stage for stage in (PRETRAIN, EVAL, GRPO, COLDSTART, OPD, REPRODUCE, SFT,
                                                            NFT, AWM)}

__all__ = ["STAGES", "Stage", "StopStage", "get_stage"]


def get_stage(name: str) -> Stage:
    """The stage registered as ``name``.

    Raises:
        UnknownStage: no such stage.
    """
    if name not in STAGES:
        raise UnknownStage(f"unknown stage {name!r}: use one of {', '.join(STAGES)}")
    return STAGES[name]
