"""What the handlers share: the loaded model (loaded once at start-up, never inside an event)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from flowopd.models.base import FlowModel


@dataclass
class AppState:
    model: FlowModel
    model_name: str
    # Sampling is not re-entrant on one model (CFG buffers, torch threads): one request at a time.
    lock: threading.Lock = field(default_factory=threading.Lock)
