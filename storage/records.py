"""Plain records read from the store."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

RESUMABLE = ("stopped", "interrupted", "failed")
TERMINAL = ("finished", "failed", "stopped", "interrupted")


@dataclass
class Run:
    """One row of ``runs``; ``config`` is the frozen snapshot the worker trains with.

    ``status`` moves queued → running → finished | failed | stopped | interrupted, and back to queued
    on resume. Times are Unix seconds; ``log_path`` is relative to the data folder.
    """

    id: str
    name: str
    stage: str
    config: dict
    status: str
    created_at: float
    started_at: float | None
    ended_at: float | None
    pid: int | None
    heartbeat: float | None
    device: str | None
    error: str | None
    log_path: str
    step: int
    total_steps: int | None
    resume_step: int | None
    attempts: int
    eta_s: float | None = None  # estimated seconds left, from the stage's progress events
    progress: str | None = None  # the latest progress line, e.g. "seed0/teacher-text: epoch 3/8"
    origin: str = "worker"  # worker (queued, a background process) | cli (a foreground command with --record)

    @classmethod
    def from_row(cls, row: dict) -> Run:
        return cls(**{**row, "config": json.loads(row["config"])})

    def to_dict(self) -> dict:
        return asdict(self)
