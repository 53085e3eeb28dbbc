"""Stage ``nft``: :func:`flowopd.trainers.nft.train_nft` in a worker (a DiffusionNFT teacher, or NFT-Mix).

Config: the ``NFTConfig`` fields; ``model`` may be a pretrain run id. The run folder is the trainer's
``out_dir``: ``checkpoint/`` (resumable: adapter, the old adapter, optimizer, step, RNG) and, at the end,
``adapter/`` (artifact ``adapter``: a teacher for ``opd`` and ``coldstart`` runs, which may name this run's
id). Metrics: one row per epoch at its optimizer step (loss, reward/<task>, nft/positive, nft/negative, ...;
see :mod:`flowopd.trainers.nft`). Commands and resume: :mod:`flowopd_studio.storage.stages.training`.
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
    """The full ``NFTConfig`` (defaults filled in, model resolved); raises ValueError on bad fields."""
    from flowopd.nft_config import NFTConfig

    data = dict(config)
    data["model"] = resolve_model(data.get("model"), store)
    return NFTConfig.from_dict(data).to_dict()


def run(config: dict, run_dir: Path, reporter: Reporter) -> str:
    return run_rl("nft", config, run_dir, reporter)


STAGE = Stage(name="nft", help="train a DiffusionNFT teacher or NFT-Mix adapter (config: NFTConfig fields)",
              freeze=freeze, run=run, checkpoint_step=checkpoint_step)
