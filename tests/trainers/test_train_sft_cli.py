"""``flowopd world dataset`` and ``flowopd train sft``, in-process: help, a tiny run from a generated set, clean
errors for bad image sets and configs."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("command", [["world", "dataset"], ["train", "sft"]], ids=" ".join)
def test_help_shows_an_example(cli, command):
    code, out, _ = cli(*command, "--help")
    assert code == 0
    assert f"usage: flowopd {' '.join(command)}" in out and "--out" in out
    assert "example: flowopd " + " ".join(command) in out


def test_dataset_help_says_which_captions_win(cli):
    code, out, _ = cli("world", "dataset", "--help")
    assert code == 0 and "takes metadata.jsonl" in " ".join(out.split())


def test_world_dataset_then_train_sft(cli, small_model_dir, tmp_path):
    code, out, err = cli("world", "dataset", "--task", "prefer", "--n", "6", "--out", tmp_path / "set")
    assert code == 0, err
    assert "6 prefer renders with captions written to" in out
    assert len(list((tmp_path / "set").glob("*.png"))) == 6
    config = tmp_path / "sft.json"
    config.write_text(json.dumps({"lora_rank": 4, "lora_alpha": 8.0, "sample_every": 0, "batch_size": 4}))
    code, out, err = cli("train", "sft", "--data", tmp_path / "set", "--config", config, "--out", tmp_path / "run",
                         "--model", small_model_dir, "--steps", "3", "--lr", "1e-3")
    assert code == 0, err
    assert f"sft: step 3, 2 passes over the set; adapter written to {tmp_path / 'run' / 'adapter'}" in out
    stored = json.loads((tmp_path / "run" / "sft.json").read_text())
    assert (stored["steps"], stored["lr"], stored["lora_rank"]) == (3, 1e-3, 4)
    assert stored["data"] == str((tmp_path / "set").resolve()) and stored["reg_data"] == ""
    code, _, err = cli("world", "dataset", "--task", "quality", "--n", "4", "--source", "model", "--model",
                       small_model_dir, "--steps", "2", "--out", tmp_path / "reg")
    assert code == 0, err
    code, out, err = cli("train", "sft", "--data", tmp_path / "set", "--reg-data", tmp_path / "reg", "--prior-weight",
                         "3", "--config", config, "--out", tmp_path / "prior", "--model", small_model_dir, "--steps",
                         "2")
    assert code == 0 and "sft: step 2" in out, err
    stored = json.loads((tmp_path / "prior" / "sft.json").read_text())
    assert (stored["reg_data"], stored["prior_weight"]) == (str((tmp_path / "reg").resolve()), 3.0)


def test_bad_image_sets_and_configs_exit_2_with_the_fix(cli, small_model_dir, tmp_path):
    def fails(*argv, message):
        code, _, err = cli(*argv)
        assert code == 2 and err.startswith("flowopd: error: ") and "Traceback" not in err, err
        assert message in err, err

    fails("train", "sft", "--out", tmp_path / "run", message="data='' is invalid: give the folder of the image set")
    fails("train", "sft", "--data", tmp_path / "nowhere", "--out", tmp_path / "run",
          message="this folder does not exist")
    fails("train", "sft", "--data", tmp_path, "--out", tmp_path / "run", "--lr", "-1", message="lr=-1.0 is invalid")
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "cat.png").write_bytes(b"not an image")
    (tmp_path / "set" / "cat.txt").write_text("a cat")
    fails("train", "sft", "--data", tmp_path / "set", "--out", tmp_path / "run", "--model", small_model_dir,
          message="cannot read image")
    fails("world", "dataset", "--task", "text", "--n", "0", "--out", tmp_path / "x", message="--n 0 is invalid")
