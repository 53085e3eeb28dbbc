"""Store fixtures: a data folder on disk, an open store, tiny pretrain configs, an in-process "spawn".

Workers spawned for real inherit this environment: one intra-op thread each (the machine is small and
busy) and no network.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

TINY_MODEL = dict(num_layers=1, num_heads=2, head_dim=16, text_width=32, text_layers=1, pooled_dim=32)


def _tiny_pretrain(steps: int = 30, checkpoint_every: int = 10, **extra) -> dict:
    return dict(steps=steps, batch_size=4, checkpoint_every=checkpoint_every, warmup_steps=5, lr=3e-3,
                model=dict(TINY_MODEL), **extra)


def _wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _loss_steps(store, run_id: str) -> list[int]:
    return [r["step"] for r in store.metrics(run_id, "loss")]


@pytest.fixture
def tiny_pretrain():
    """``tiny_pretrain(steps, checkpoint_every, **fields)``: a pretrain config whose steps take a few ms."""
    return _tiny_pretrain


@pytest.fixture
def wait_for():
    """``wait_for(condition, timeout, what)``: poll until truthy (returns the value), else fail."""
    return _wait_for


@pytest.fixture
def loss_steps():
    """``loss_steps(store, run_id)``: steps of the run's ``loss`` rows (duplicates would show)."""
    return _loss_steps


@pytest.fixture(autouse=True)
def _worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("FLOWOPD_HOME", raising=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def store(home: Path):
    from flowopd_studio.storage.store import Store

    with Store(home) as s:
        yield s


@pytest.fixture
def fake_spawn(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace worker processes by this (live) test process: started run ids are appended to the list.

    The test then runs a started run in-process with ``storage.worker.execute(home, run_id)``.
    """
    started: list[str] = []

    def spawn(home: Path, run_id: str) -> int:
        started.append(run_id)
        return os.getpid()

    monkeypatch.setattr("flowopd_studio.storage.queue.spawn_worker", spawn)
    return started

