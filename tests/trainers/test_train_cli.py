"""``flowopd train grpo|opd`` and ``flowopd coldstart``, in-process: help, a tiny run, clean errors."""

from __future__ import annotations

import json

import pytest

from flowopd.methods.grpo.config import GRPOConfig

COMMANDS = [["train", "grpo"], ["train", "opd"], ["coldstart"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_an_example(cli, command):
    code, out, _ = cli(*command, "--help")
    assert code == 0
    assert f"usage: flowopd {' '.join(command)}" in out and "--config" in out and "--out" in out
    assert "example: flowopd " + " ".join(command) in out


def test_train_group_help_lists_both_stages(cli):
    code, out, _ = cli("train", "--help")
    assert code == 0 and "grpo" in out and "opd" in out


def test_grpo_then_coldstart_from_the_command_line(cli, small_model_dir, tmp_path, fast):
    config = tmp_path / "grpo.json"
    GRPOConfig(**fast, rewards={"prefer": 1.0}, prompt_tasks={"prefer": 1.0}).to_json(config)
    code, out, err = cli("train", "grpo", "--config", config, "--out", tmp_path / "teacher", "--model", small_model_dir)
    assert code == 0, err
    assert f"adapter written to {tmp_path / 'teacher' / 'adapter'}" in out

    merge = tmp_path / "merge.json"
    merge.write_text(json.dumps({"mode": "merge", "teachers": {"prefer": str(tmp_path / "teacher" / "adapter")}}))
    code, out, err = cli("coldstart", "--config", merge, "--out", tmp_path / "merge", "--model", small_model_dir)
    assert code == 0, err
    assert (tmp_path / "merge" / "adapter" / "adapter.json").is_file()


@pytest.mark.parametrize("config, message", [
    ({"kind": "opd", "teachers": {"text": "t"}, "prompt_tasks": {"text": 1.0}, "loss_mode": "gkd"},
     "loss_mode='gkd' is invalid: use one of kl, pg, paper"),
    ({"kind": "opd", "teachers": {"text": "t"}, "prompt_tasks": {"text": 1.0}, "routing": "soft"},
     "routing='soft' is invalid: use one of per-sample, alternate"),
    ({"kind": "opd", "teachers": {"text": "t"}}, "tasks ['compose', 'prefer'] have no teacher"),
    ({"kind": "grpo"}, "this is a 'grpo' config, not a 'opd' one"),
    ({"kind": "opd", "teachers": {"text": "t"}, "prompt_tasks": {"text": 1.0}, "lr": -1}, "lr=-1 is invalid"),
])
def test_a_bad_opd_config_exits_2_with_the_field_and_the_fix(cli, tmp_path, config, message):
    path = tmp_path / "opd.json"
    path.write_text(json.dumps(config))
    code, _, err = cli("train", "opd", "--config", path, "--out", tmp_path / "out")
    assert code == 2 and err.startswith("flowopd: error: ") and "Traceback" not in err
    assert message in err, err


def test_missing_config_and_missing_teacher_folder(cli, small_model_dir, tmp_path, fast):
    code, _, err = cli("coldstart", "--config", tmp_path / "nope.json", "--out", tmp_path)
    assert code == 2 and "config file" in err and "does not exist" in err
    path = tmp_path / "opd.json"
    path.write_text(json.dumps({**fast, "teachers": {"text": str(tmp_path / "gone")}, "prompt_tasks": {"text": 1}}))
    code, _, err = cli("train", "opd", "--config", path, "--out", tmp_path / "out", "--model", small_model_dir)
    assert code == 2 and "is not an adapter folder" in err, err
