"""The stage interface: what a worker needs to run one kind of job."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..reporter import Reporter
    from ..store import Store


class StopStage(Exception):
    """Raised inside a stage's ``run`` to end the run as ``stopped`` (after it saved what it can)."""


@dataclass(frozen=True)
class Stage:
    """One kind of run.

    Attributes:
        name: what ``flowopd runs submit STAGE`` takes.
        help: one line for ``--help``.
        freeze: ``(config, store) -> config``: validates the user's config and returns the full, JSON-safe
            snapshot (defaults filled in, relative paths made absolute) stored with the run. Raises
            ``ValueError`` naming the bad field.
        run: ``(config, run_dir, reporter) -> "finished" | "stopped"``: executes the run in the worker process,
            reporting through ``reporter``; exceptions fail the run.
        checkpoint_step: ``(run_dir, config) -> step`` of the checkpoint a resume continues from; raises
            :class:`~..errors.CheckpointError` when it is missing or corrupt. ``None``: the stage has no
            checkpoints and a resume starts over from step 0.
    """

    name: str
    help: str
    freeze: Callable[[dict, Store], dict]
    run: Callable[[dict, Path, Reporter], str]
    checkpoint_step: Callable[[Path, dict], int] | None = None
