"""Stage ``awm``: :func:`flowopd.trainers.awm.train_awm` in a worker (an Advantage Weighted Matching teacher).

Config: the ``AWMConfig`` fields; ``model`` may be a pretrain run id. The run folder is the trainer's
``out_dir``: ``checkpoint/`` (resumable: adapter, its EMA target, optimizer, step, RNG) and, at the end,
``adapter/`` (artifact ``adapter``: a teacher for ``opd`` and ``coldstart`` runs, which may name this run's
id). Metrics: one row per epoch at its optimizer step (loss, reward/<task>, policy_loss, ratio, awm/fm_loss, ...;
see :mod:`flowopd.trainers.awm`). Commands and resume: :mod:`flowopd_studio.storage.stages.training`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import Stage
from .training import checkpoint_step, resolve_model, run_rl

if TYPE_CHECKING:
    from ..reporter import Reporter
    from ..store import Store


def freeze(config: dict, store: Store) -> dict:
    """The full ``AWMConfig`` (defaults filled in, model resolved); raises ValueError on bad fields."""
    from flowopd.awm_config import AWMConfig

    data = dict(config)
    data["model"] = resolve_model(data.get("model"), store)
    return AWMConfig.from_dict(data).to_dict()


def run(config: dict, run_dir: Path, reporter: Reporter) -> str:
    return run_rl("awm", config, run_dir, reporter)


STAGE = Stage(name="awm", help="train a Advantage Weighted Matching teacher adapter (config: AWMConfig fields)",
              freeze=freeze, run=run, checkpoint_step=checkpoint_step)
