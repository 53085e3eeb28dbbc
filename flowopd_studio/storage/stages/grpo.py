"""Stage ``grpo``: :func:`flowopd.trainers.grpo.train_grpo` in a worker (a teacher, or GRPO-Mix).

Config: the ``GRPOConfig`` fields; ``model`` may be a pretrain run id. The run folder is the trainer's
``out_dir``: ``checkpoint/`` (resumable: adapter, optimizer, EMA, step, RNG) and, at the end, ``adapter/``
(artifact ``adapter``: a teacher for ``opd`` and ``coldstart`` runs, which may name this run's id).
Metrics: one row per epoch at its optimizer step (loss, reward/<task>, kl/base, ...; see
:mod:`flowopd.trainers.loop`). Commands and resume: :mod:`flowopd_studio.storage.stages.training`.
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
    """The full ``GRPOConfig`` (defaults filled in, model resolved); raises ValueError on bad fields."""
    from flowopd.configs import GRPOConfig

    data = dict(config)
    data["model"] = resolve_model(data.get("model"), store)
    return GRPOConfig.from_dict(data).to_dict()


def run(config: dict, run_dir: Path, reporter: Reporter) -> str:
    return run_rl("grpo", config, run_dir, reporter)


STAGE = Stage(name="grpo", help="train a GRPO teacher or GRPO-Mix adapter (config: GRPOConfig fields)",
              freeze=freeze, run=run, checkpoint_step=checkpoint_step)
