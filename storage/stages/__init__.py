"""The registry of worker stages: stage name -> :class:`Stage` (freeze, run, checkpoint_step).

Stages: ``pretrain``, ``eval``, ``coldstart``, the whole benchmark ``reproduce``, and one per training method
registered in :mod:`flowopd.methods` (``grpo``, ``nft``, ``awm``, ``sft``, ``opd``, and any method registered
later; built by :mod:`.methods`). Wiring in another kind of job means writing a module like ``pretrain.py`` (its
heavy imports inside the functions, so this registry stays cheap to import) and adding its ``STAGE`` to
:data:`OTHER_STAGES`; a training method needs no code here.
"""

from __future__ import annotations

from ..errors import UnknownStage
from .base import Stage, StopStage
from .coldstart import STAGE as COLDSTART
from .eval import STAGE as EVAL
from .pretrain import STAGE as PRETRAIN
from .reproduce import STAGE as REPRODUCE

OTHER_STAGES: tuple[Stage, ...] = (PRETRAIN, EVAL, COLDSTART, REPRODUCE)

__all__ = ["OTHER_STAGES", "Stage", "StopStage", "get_stage", "stages"]


def stages() -> dict[str, Stage]:
    """Name -> stage: pretrain, eval, the training methods in registration order, coldstart, reproduce."""
    from flowopd.methods import methods

    from .methods import method_stage

    return {PRETRAIN.name: PRETRAIN, EVAL.name: EVAL, **{kind: method_stage(m) for kind, m in methods().items()},
            COLDSTART.name: COLDSTART, REPRODUCE.name: REPRODUCE}


def get_stage(name: str) -> Stage:
    """The stage registered as ``name``.

    Raises:
        UnknownStage: no such stage.
    """
    known = stages()
    if name not in known:
        raise UnknownStage(f"unknown stage {name!r}: use one of {', '.join(known)}")
    return known[name]
