"""Stage ``opd``: :func:`flowopd.trainers.opd.train_opd` in a worker (on-policy distillation with MAR).

Config: the ``OPDConfig`` fields. ``teachers`` (task -> adapter), ``init`` and a folder ``mar_anchor`` may
name ``grpo``, ``coldstart`` or ``opd`` run ids (their ``adapter/`` folder), e.g.
``{"teachers": {"text": "r0123456789", ...}, "init": "r9876543210"}``; ``model`` may be a pretrain run id.
Files, metrics, commands and resume as the ``grpo`` stage (:mod:`flowopd_studio.storage.stages.training`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import Stage
from .training import checkpoint_step, resolve_adapter, resolve_model, resolve_teachers, run_rl

if TYPE_CHECKING:
    from ..reporter import Reporter
    from ..store import Store


def freeze(config: dict, store: Store) -> dict:
    """The full ``OPDConfig`` with run ids and folders resolved to absolute adapter folders."""
    from flowopd.configs import OPDConfig
    from flowopd.world.prompts import TASKS

    data = dict(config)
    data["model"] = resolve_model(data.get("model"), store)
    data["teachers"] = resolve_teachers(data.get("teachers", {}), store)
    if data.get("init") is not None:
        data["init"] = resolve_adapter(data["init"], store, "init")
    anchor = data.get("mar_anchor", "base")
    if anchor != "base" and anchor not in TASKS:
        data["mar_anchor"] = resolve_adapter(anchor, store, "mar_anchor")
    return OPDConfig.from_dict(data).to_dict()


def run(config: dict, run_dir: Path, reporter: Reporter) -> str:
    return run_rl("opd", config, run_dir, reporter)


STAGE = Stage(name="opd", help="distil the task teachers into a student adapter, with MAR (config: OPDConfig "
              "fields; teachers and init may be run ids)", freeze=freeze, run=run, checkpoint_step=checkpoint_step)
