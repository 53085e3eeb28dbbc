"""What the trainer stages (``grpo``, ``opd``, ``coldstart``) share: config freezing and the training loop bridge.

Freezing resolves references so the stored snapshot stands on its own: ``model`` may be the id of a
pretrain run (its ``checkpoint/`` folder); an adapter field (OPD ``teachers``, ``init``, ``mar_anchor``;
cold-start ``teachers``) may be the id of a ``grpo``, ``coldstart``, ``opd``, ``nft``, ``awm`` or ``sft`` run (its
``adapter/`` folder, which a queued run writes before the next one starts). Folders become absolute paths.

:func:`run_rl` runs a GRPO, OPD, NFT or AWM trainer with the run folder as its ``out_dir`` (``checkpoint/`` and
``adapter/`` inside it). The trainer's callback logs every epoch's metrics at its optimizer step and polls
the run's commands: *stop* (or SIGTERM) ends the run after a checkpoint; *checkpoint now* and *sample now*
stop the trainer, which saves, and the loop restarts it at once from that checkpoint (an exact resume,
in-process); *sample now* also samples the fixed prompts from the saved adapter. The trainer speaks
:mod:`flowopd.events`; :class:`~..recorder.StoreCallback` writes what it reports.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowopd.layout import ADAPTER_DIR, CHECKPOINT_DIR

from ..errors import CheckpointError
from ..paths import RUN_ID_RE

if TYPE_CHECKING:
    from ..reporter import Reporter
    from ..store import Store

log = logging.getLogger(__name__)
ADAPTER_STAGES = ("grpo", "coldstart", "opd", "sft", "nft", "awm")


def resolve_model(model: Any, store: Store) -> str | None:
    """None, an absolute model folder, a Hub id, or a pretrain run's checkpoint folder."""
    from flowopd.models import looks_like_hub_id

    if model is None:
        return None
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a folder, a Hub id or a pretrain run id, got {model!r}")
    if RUN_ID_RE.fullmatch(model):
        run = store.get_run(model)
        if run.stage != "pretrain":
            raise ValueError(f"model {model} is a {run.stage} run, not a pretrain run: give a pretrain run id, "
                             "a model folder or a Hub id")
        return str(store.run_dir(model) / CHECKPOINT_DIR)
    if Path(model).expanduser().exists():
        return str(Path(model).expanduser().resolve())
    if looks_like_hub_id(model):
        return model
    raise ValueError(f"model folder {model} does not exist: give a model folder, a Hub id or a pretrain run id")


def resolve_adapter(value: Any, store: Store, field: str) -> str:
    """An adapter folder (made absolute) or the ``adapter/`` folder of a grpo, coldstart or opd run."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field}={value!r} is invalid: give an adapter folder or the id of a "
                         f"{', '.join(ADAPTER_STAGES)} run")
    if RUN_ID_RE.fullmatch(value):
        run = store.get_run(value)
        if run.stage not in ADAPTER_STAGES:
            raise ValueError(f"{field}={value!r} is a {run.stage} run, which leaves no adapter: give a "
                             f"{', '.join(ADAPTER_STAGES)} run or an adapter folder")
        return str(store.run_dir(value) / ADAPTER_DIR)
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{field}={value!r} is not a folder: give an adapter folder (OUT/adapter of a "
                         f"trainer) or the id of a finished {', '.join(ADAPTER_STAGES)} run")
    return str(folder.resolve())


def resolve_teachers(teachers: Any, store: Store) -> dict[str, str]:
    if not isinstance(teachers, dict):
        raise ValueError(f"teachers={teachers!r} is invalid: map tasks to adapter folders or run ids")
    return {task: resolve_adapter(ref, store, f"teachers[{task!r}]") for task, ref in teachers.items()}


def checkpoint_step(run_dir: Path, config: dict) -> int:
    """The optimizer step a resume of a GRPO/OPD run continues from (0 before its first checkpoint).

    Raises:
        CheckpointError: the checkpoint exists but cannot be read.
    """
    from flowopd.trainers.checkpoint import CheckpointError as TrainerCheckpointError
    from flowopd.trainers.checkpoint import checkpoint_step as trainer_step

    try:
        return trainer_step(run_dir)
    except TrainerCheckpointError as err:
        raise CheckpointError(str(err)) from None


def _sample(model, cfg, step: int, reporter: Reporter) -> None:
    """ODE samples of the first test prompt of each trained task from the student adapter now in ``model``."""
    from flowopd.adapters import use_adapter
    from flowopd.models.base import to_pil
    from flowopd.sampling import generate
    from flowopd.world.splits import load_prompts

    records = [load_prompts(task, "test")[0] for task in cfg.prompt_tasks]
    seeds = [cfg.seed + i for i in range(len(records))]
    with use_adapter(model, cfg.adapter_name):
        images = generate(model, [r["prompt"] for r in records], seeds=seeds, num_steps=cfg.eval_steps,
                          guidance=cfg.guidance)
    for record, seed, image in zip(records, seeds, to_pil(images)):
        reporter.sample(step, record["prompt"], seed, image, {"task": record["task"]})


def run_rl(kind: str, config: dict, run_dir: Path, reporter: Reporter) -> str:
    """Train a ``grpo``, ``opd``, ``nft`` or ``awm`` run to its last epoch (finished) or a stop command (stopped)."""
    import torch

    from flowopd.awm_config import AWMConfig
    from flowopd.configs import GRPOConfig, OPDConfig
    from flowopd.models import load_model
    from flowopd.nft_config import NFTConfig
    from flowopd.trainers.awm import train_awm
    from flowopd.trainers.dist import make_accelerator
    from flowopd.trainers.grpo import train_grpo
    from flowopd.trainers.nft import train_nft
    from flowopd.trainers.opd import train_opd

    from ..recorder import StoreCallback

    config_cls, train = {"grpo": (GRPOConfig, train_grpo), "opd": (OPDConfig, train_opd),
                         "nft": (NFTConfig, train_nft), "awm": (AWMConfig, train_awm)}[kind]
    cfg = config_cls.from_dict(dict(config))
    accelerator = make_accelerator()
    reporter.set_device(accelerator.device.type)
    reporter.set_total(cfg.epochs * cfg.optimizer_steps_per_epoch)
    start = checkpoint_step(run_dir, config)
    reporter.truncate(start)  # what lies past the checkpoint is redone
    if start:
        log.info("resuming %s run %s from its checkpoint at step %d", kind, reporter.run_id, start)
    torch.manual_seed(cfg.seed)  # a new LoRA's init: the same run gives the same weights (a resume restores RNG)
    reporter.progress(reporter.step, None, None, "loading the model")  # seen from the first second
    model = load_model(cfg.model, device=accelerator.device)
    callback = StoreCallback(reporter, pausable=True)
    while True:
        result = train(model, cfg, run_dir, callback=callback, resume=True, accelerator=accelerator)
        if not result.stopped:
            return "finished"
        if callback.stop:
            return "stopped"
        if callback.want_sample:
            _sample(model, cfg, result.step, reporter)
        log.info("checkpoint written at step %d on request; continuing", result.step)
        callback.resumed()
