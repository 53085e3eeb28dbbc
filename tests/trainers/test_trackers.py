"""Experiment trackers from the one event stream (flowopd.trackers): ``--report-to tensorboard`` writes event files
in the run folder that TensorBoard reads back with the run's metrics and samples; a tracker whose package is
missing is refused before anything loads, naming the install command."""

from __future__ import annotations

import builtins

import pytest

from flowopd.methods.grpo.config import GRPOConfig


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_report_to_tensorboard_writes_event_files_read_back(cli, small_model_dir, tmp_path, fast) -> None:
    from flowopd.layout import TRACKERS_DIR

    config = tmp_path / "grpo.json"
    GRPOConfig(**{**fast, "epochs": 2, "sample_every": 1}, rewards={"prefer": 1.0},
               prompt_tasks={"prefer": 1.0}).to_json(config)
    code, _, err = cli("train", "grpo", "--config", config, "--out", tmp_path / "t", "--model", small_model_dir,
                       "--report-to", "tensorboard")
    assert code == 0, err
    acc = _scalars(tmp_path / "t" / TRACKERS_DIR / "tensorboard")
    tags = acc.Tags()
    assert "loss" in tags["scalars"] and "reward/prefer" in tags["scalars"]
    steps = [e.step for e in acc.Scalars("loss")]
    assert steps == sorted(steps) and steps[-1] == 4  # 2 epochs x 2 optimizer steps, at their step
    assert any(t.startswith("samples/prefer") for t in tags["images"])
    assert all(0.0 <= e.value <= 1.0 for e in acc.Scalars("reward/prefer"))  # the prefer reward's range


def test_a_missing_tracker_package_is_refused_before_the_model_loads(cli, tmp_path, fast, monkeypatch) -> None:
    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    config = tmp_path / "grpo.json"
    GRPOConfig(**fast).to_json(config)
    code, _, err = cli("train", "grpo", "--config", config, "--out", tmp_path / "t", "--model", tmp_path / "nope",
                       "--report-to", "wandb")
    assert code == 2 and "report_to='wandb' needs the wandb package" in err and "pip install wandb" in err
    code, _, err = cli("train", "grpo", "--config", config, "--out", tmp_path / "t", "--report-to", "mlflow")
    assert code == 2 and "invalid choice: 'mlflow'" in err


def test_the_app_form_offers_the_field(cli) -> None:
    from flowopd_studio.services.config_forms import form_fields

    (field,) = [f for f in form_fields("grpo") if f.name == "report_to"]
    assert field.choices == ("none", "tensorboard", "wandb")
    with pytest.raises(ValueError, match="report_to='x' is invalid"):
        GRPOConfig(report_to="x")
