"""Studio fixtures shared by the services and UI tests: LoRA adapter folders of the small model, a built-in
examples folder made of them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No worker process starts: run ids the queue would start are collected (this pid stands in)."""
    started: list[str] = []

    def spawn(home: Path, run_id: str) -> int:
        started.append(run_id)
        return os.getpid()

    monkeypatch.setattr("flowopd_studio.storage.queue.spawn_worker", spawn)
    return started


@pytest.fixture
def store(tmp_path: Path):
    """A store in a temporary data folder (tests/studio/storage/ has its own)."""
    from flowopd_studio.storage.store import Store

    with Store(tmp_path / "home") as s:
        yield s


@pytest.fixture(scope="session")
def small_model(small_model_dir: Path):
    """The studio's own copy of the small model: the app's adapter cache leaves LoRA layers on the model it
    serves, which must not reach the library tests' session-wide ``small_model`` (tests/conftest.py)."""
    from flowopd.models.tiny import TinyFlowModel

    return TinyFlowModel.load(small_model_dir)


def _make_adapter(model, folder: Path, *, zero: bool = True, seed: int = 0, scale: float = 0.5) -> Path:
    """Save a fresh LoRA of ``model`` to ``folder``: B = 0 (the base's images) or random B (other images)."""
    from flowopd.adapters import adapter_parameters, add_lora, drop_adapter, save_adapter

    name = "fixture_adapter"
    drop_adapter(model, name)
    add_lora(model, name, rank=2, alpha=4.0, seed=seed)
    if not zero:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n, p in adapter_parameters(model, name).items():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=gen) * scale)
    try:
        return save_adapter(model, name, folder)
    finally:
        drop_adapter(model, name)


@pytest.fixture(scope="session")
def make_adapter():
    """``make_adapter(model, folder, zero=True, seed=0)``: an adapter folder of ``model`` (B = 0 when zero)."""
    return _make_adapter


@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory: pytest.TempPathFactory, small_model) -> Path:
    """A built-in examples folder for the small model: four teachers, a merge and a student, with a manifest
    (what benchmarks/build_examples.py writes from a reproduce run)."""
    root = tmp_path_factory.mktemp("examples")
    entries = []
    stages = [("teacher-compose", "teacher", "compose"), ("teacher-text", "teacher", "text"),
              ("teacher-prefer", "teacher", "prefer"), ("teacher-quality", "teacher", "quality"),
              ("coldstart-merge", "coldstart", None), ("opd", "student", None)]
    for i, (stage, kind, task) in enumerate(stages):
        _make_adapter(small_model, root / stage, zero=False, seed=i + 1, scale=0.2)
        entries.append({"name": stage, "kind": kind, "task": task, "adapter": stage,
                        "source": f"test fixture, stage {stage}", "metrics": {"compose": 0.1 * i, "average": 0.5}})
    (root / "examples.json").write_text(json.dumps(entries))
    return root
