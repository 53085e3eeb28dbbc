"""What the trainer stages (the training methods' and ``coldstart``) share: resolving references when a run is
frozen, and the step a resume continues from.

Freezing resolves references so the stored snapshot stands on its own: ``model`` may be the id of a
pretrain run (its ``checkpoint/`` folder); an adapter field (OPD ``teachers``, ``init``, ``mar_anchor``;
cold-start ``teachers``) may be the id of a run of any training method or of a cold start (its ``adapter/``
folder, which a queued run writes before the next one starts). Folders become absolute paths.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowopd.layout import ADAPTER_DIR, CHECKPOINT_DIR

from ..paths import RUN_ID_RE

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger(__name__)


def adapter_stages() -> tuple[str, ...]:
    """The stages whose runs leave an ``adapter/``: every training method's, and the cold start's."""
    from flowopd.methods import methods

    return (*methods(), "coldstart")


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
                         f"{', '.join(adapter_stages())} run")
    if RUN_ID_RE.fullmatch(value):
        run = store.get_run(value)
        if run.stage not in adapter_stages():
            raise ValueError(f"{field}={value!r} is a {run.stage} run, which leaves no adapter: give a "
                             f"{', '.join(adapter_stages())} run or an adapter folder")
        return str(store.run_dir(value) / ADAPTER_DIR)
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{field}={value!r} is not a folder: give an adapter folder (OUT/adapter of a "
                         f"trainer) or the id of a finished {', '.join(adapter_stages())} run")
    return str(folder.resolve())


def resolve_teachers(teachers: Any, store: Store) -> dict[str, str]:
    if not isinstance(teachers, dict):
        raise ValueError(f"teachers={teachers!r} is invalid: map tasks to adapter folders or run ids")
    return {task: resolve_adapter(ref, store, f"teachers[{task!r}]") for task, ref in teachers.items()}


def checkpoint_step(run_dir: Path, config: dict) -> int:
    """The optimizer step a resume of a trainer's run continues from (0 before its first checkpoint).

    Raises:
        flowopd.layout.CheckpointError: the checkpoint exists but cannot be read.
    """
    from flowopd.training.checkpoint import checkpoint_step as trainer_step

    return trainer_step(run_dir)
