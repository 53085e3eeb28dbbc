"""``benchmarks/carry_run.py``: what a session carries of an unfinished reproduction, and its restore."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from flowopd.reproduce.config import ReproduceConfig

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "carry_run.py"


@pytest.fixture
def carry_run():
    spec = importlib.util.spec_from_file_location("carry_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _file(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_save_keeps_finished_results_loaded_adapters_and_unfinished_checkpoints(carry_run, tmp_path):
    out, dest = tmp_path / "run", tmp_path / "carried"
    _file(out / "config.json", json.dumps(ReproduceConfig.preset("smoke", seeds=1).to_dict()))
    seed = out / "seed0"
    _file(seed / "teacher-text/result.json", "{}")
    _file(seed / "teacher-text/adapter/adapter_model.safetensors")  # the cold start and OPD load it
    _file(seed / "teacher-text/checkpoint/state.pt")  # a finished stage's checkpoint: not needed
    _file(seed / "grpo-mix/result.json", "{}")
    _file(seed / "grpo-mix/adapter/adapter_model.safetensors")  # no later stage loads it
    _file(seed / "opd/checkpoint/state.pt", "step 4")  # unfinished: resumes from here
    _file(seed / "opd/curve.jsonl", '{"step": 2}\n')
    _file(seed / "opd/checkpoint.new/state.pt")  # a save in progress: not a checkpoint yet
    _file(seed / "opd-sft/train.json", "{}")  # trained, awaiting evaluation
    _file(seed / "opd-sft/adapter/adapter_model.safetensors")
    _file(seed / "opd-no-mar/curve.jsonl")  # begun, no checkpoint yet: starts again

    carry_run.save(out, dest)
    carried = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert carried == ["config.json", "origin", "seed0/grpo-mix/result.json",
                       "seed0/opd-sft/adapter/adapter_model.safetensors", "seed0/opd-sft/train.json",
                       "seed0/opd/checkpoint/state.pt", "seed0/opd/curve.jsonl",
                       "seed0/teacher-text/adapter/adapter_model.safetensors", "seed0/teacher-text/result.json"]

    # The stage finishes before the next carry: its old checkpoint leaves the carried folder.
    _file(seed / "opd/result.json", "{}")
    carry_run.save(out, dest)
    assert sorted(p.name for p in (dest / "seed0/opd").iterdir()) == ["result.json"]

    shutil.rmtree(out)
    carry_run.restore(dest)
    assert (out / "seed0/opd-sft/adapter/adapter_model.safetensors").is_file()
    assert (out / "config.json").read_bytes() == (dest / "config.json").read_bytes()


def test_restore_refuses_to_mix_two_benchmarks(carry_run, tmp_path):
    out, dest = tmp_path / "run", tmp_path / "carried"
    _file(out / "config.json", json.dumps(ReproduceConfig.preset("smoke", seeds=1).to_dict()))
    carry_run.save(out, dest)
    _file(out / "config.json", json.dumps(ReproduceConfig.preset("smoke", seeds=2).to_dict()))
    with pytest.raises(SystemExit, match="holds another benchmark"):
        carry_run.restore(dest)
