"""The ``flowopd`` command line, in-process: help texts, the happy paths, and exit status 2 on bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flowopd.world.scene import Scene, SceneObject, render
from flowopd.world.splits import PROMPT_DIR

COMMANDS = [["pretrain"], ["generate"], ["eval"], ["world", "check"], ["world", "splits"], ["score"]]
RED_CIRCLE = '{"include": [{"class": "circle", "count": 1, "color": "red"}]}'


def _fails_with(result: tuple[int, str, str], *fragments: str) -> None:
    code, _, err = result
    assert code == 2, err
    assert err.startswith("flowopd: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


# --- help -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_an_example(cli, command: list[str]) -> None:
    code, out, _ = cli(*command, "--help")
    assert code == 0
    assert f"usage: flowopd {' '.join(command)}" in out
    assert "example: flowopd " + " ".join(command) in out


@pytest.mark.parametrize("command", [[], ["world"]], ids=["flowopd", "world"])
def test_group_help_lists_commands(cli, command: list[str]) -> None:
    code, out, _ = cli(*command, "--help")
    assert code == 0
    names = ["check", "splits"] if command else ["pretrain", "generate", "eval", "world", "score"]
    assert all(name in out for name in names)


def test_python_dash_m_help() -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.run([sys.executable, "-m", "flowopd", "--help"], capture_output=True, text=True,
                          timeout=120, env=env, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert "usage: flowopd" in proc.stdout and "generate" in proc.stdout


def test_missing_command_is_a_usage_error(cli) -> None:
    code, _, err = cli()
    assert code == 2 and "usage: flowopd" in err


# --- generate ---------------------------------------------------------------------------------------------


def test_generate_writes_pngs(cli, small_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, err = cli("generate", "--model", small_model_dir, "--prompt", "a photo of a circle",
                            "--prompt", 'a sign that says "TEA"', "--seed", 3, "--steps", 2, "--out", out)
    assert code == 0, err
    paths = sorted(out.glob("*.png"))
    assert [p.name for p in paths] == ["000_seed3.png", "001_seed4.png"]
    assert stdout.split() == [str(p) for p in paths]
    assert Image.open(paths[0]).size == (32, 32)


def test_generate_prompt_file_and_scale(cli, small_model_dir: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a photo of a circle"}\n{"prompt": "a photo of two squares"}\n')
    code, _, err = cli("generate", "--model", small_model_dir, "--prompt-file", prompts, "--steps", 1,
                       "--scale", 2, "--out", tmp_path / "o")
    assert code == 0, err
    images = [Image.open(p) for p in sorted((tmp_path / "o").glob("*.png"))]
    assert len(images) == 2 and images[0].size == (64, 64)
    arr = np.asarray(images[0])
    assert np.array_equal(arr[::2, ::2], arr[1::2, 1::2])  # nearest-neighbour enlargement


def test_generate_unknown_words_warn_but_succeed(cli, small_model_dir: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    code, _, err = cli("generate", "--model", small_model_dir, "--prompt", "a photo of a zebra unicorn",
                       "--steps", 1, "--out", tmp_path)
    assert code == 0, err
    assert len(list(tmp_path.glob("*.png"))) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("zebra" in w and "<unk>" in w for w in warnings), warnings


def test_generate_bad_inputs(cli, small_model_dir: Path, tmp_path: Path) -> None:
    model = ["--model", small_model_dir]
    out = ["--out", tmp_path / "out"]
    _fails_with(cli("generate", *model, "--prompt", "a circle", "--steps", 0, *out), "--steps 0 is out of range")
    _fails_with(cli("generate", *model, "--prompt", "a circle", "--steps", 1001, *out), "--steps 1001 is out of range")
    _fails_with(cli("generate", *model, *out), "no prompt")
    _fails_with(cli("generate", *model, "--prompt", "  ", *out), "no prompt")
    _fails_with(cli("generate", *model, "--prompt", "a circle", "--scale", 0, *out), "--scale")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _fails_with(cli("generate", *model, "--prompt-file", empty, *out), str(empty), "no prompts")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{prompt: no quotes}\n')
    _fails_with(cli("generate", *model, "--prompt-file", bad, *out), f"{bad}:2", "not valid JSON")
    _fails_with(cli("generate", *model, "--prompt-file", tmp_path / "none.txt", *out), "does not exist")
    assert not (tmp_path / "out").exists()


def test_missing_and_corrupt_model_folders(cli, small_model_dir: Path, tmp_path: Path) -> None:
    args = ["--prompt", "a photo of a circle", "--steps", 1, "--out", tmp_path / "out"]
    _fails_with(cli("generate", "--model", tmp_path / "no-such-model", *args), "no-such-model", "does not exist")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(small_model_dir, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 64)
    _fails_with(cli("generate", "--model", corrupt, *args), str(corrupt), "corrupt")
    _fails_with(cli("eval", "--model", corrupt, "--steps", 1, "--tasks", "prefer"), "corrupt")
    (corrupt / "vocab.json").unlink()
    _fails_with(cli("generate", "--model", corrupt, *args), "vocab.json")
    _fails_with(cli("generate", "--model", tmp_path, *args), "not a model folder")


# --- eval -------------------------------------------------------------------------------------------------


def test_eval_writes_json(cli, small_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "reports" / "eval.json"
    code, out, err = cli("eval", "--model", small_model_dir, "--steps", 2, "--tasks", "prefer", "--json", path)
    assert code == 0, err
    report = json.loads(path.read_text())
    assert json.loads(out) == report
    assert set(report) == {"model", "protocol", "metrics", "average"}
    assert report["model"] == str(small_model_dir)
    assert report["protocol"]["num_steps"] == 2 and report["protocol"]["tasks"] == ["prefer"]
    assert list(report["metrics"]) == ["prefer"] and 0 <= report["metrics"]["prefer"] <= 1
    assert report["average"] == report["metrics"]["prefer"]


def test_eval_with_an_adapter(cli, small_model_dir: Path, tmp_path: Path) -> None:
    """``--adapter`` evaluates base + LoRA: a LoRA with large weights changes the images and so the metric."""
    import torch

    from flowopd.adapters import adapter_parameters, add_lora, save_adapter
    from flowopd.models import load_model

    model = load_model(str(small_model_dir))
    add_lora(model, "trained", rank=2, alpha=2.0)
    with torch.no_grad():
        for p in adapter_parameters(model, "trained").values():
            p.copy_(torch.randn_like(p))
    save_adapter(model, "trained", tmp_path / "adapter")
    args = ("eval", "--model", small_model_dir, "--steps", 2, "--tasks", "prefer", "quality")
    code, plain, err = cli(*args)
    assert code == 0, err
    code, adapted, err = cli(*args, "--adapter", tmp_path / "adapter")
    assert code == 0, err
    plain, adapted = json.loads(plain), json.loads(adapted)
    assert adapted["model"].endswith(f"adapter {tmp_path / 'adapter'}")
    assert adapted["metrics"] != plain["metrics"]
    _fails_with(cli(*args, "--adapter", tmp_path / "nope"), "nope")


def test_eval_config_file_and_flags(cli, small_model_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "eval.json"
    config.write_text(json.dumps({"num_steps": 2, "guidance": 1.0, "seed": 7, "tasks": ["quality"]}))
    code, out, err = cli("eval", "--model", small_model_dir, "--config", config, "--guidance", 2.0)
    assert code == 0, err
    protocol = json.loads(out)["protocol"]
    picked = (protocol["num_steps"], protocol["guidance"], protocol["seed"], protocol["tasks"])
    assert picked == (2, 2.0, 7, ["quality"])
    code, out, err = cli("eval", "--model", small_model_dir, "--config", config, "--task-rewards", "quality=prefer")
    assert code == 0, err
    assert json.loads(out)["protocol"]["task_rewards"] == {"quality": "prefer"}  # another reward scores the task
    _fails_with(cli("eval", "--model", small_model_dir, "--task-rewards", "quality"), "--task-rewards 'quality' is "
                "invalid: give TASK=REWARD")
    config.write_text(json.dumps({"steps": 2}))
    _fails_with(cli("eval", "--model", small_model_dir, "--config", config), "unknown eval config keys ['steps']")
    _fails_with(cli("eval", "--model", small_model_dir, "--config", tmp_path / "none.json"), "none.json")


def test_eval_bad_inputs(cli, small_model_dir: Path, tmp_path: Path) -> None:
    _fails_with(cli("eval", "--model", small_model_dir, "--tasks", "prefer", "painting"), "painting")
    _fails_with(cli("eval", "--model", small_model_dir, "--steps", 0), "num_steps=0 is invalid")
    _fails_with(cli("eval", "--model", tmp_path / "nope", "--steps", 1), "does not exist")


# --- world ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_world_check_json(cli, tmp_path: Path) -> None:
    path = tmp_path / "world.json"
    code, _, err = cli("world", "check", "--json", path)
    assert code == 0, err
    report = json.loads(path.read_text())
    assert {"ocr_clean_accuracy", "detector_clean_accuracy", "rewards", "ms_per_image"} <= set(report)
    assert report["detector_clean_accuracy"] >= 0.98
    assert report["ocr_clean_accuracy"] >= 0.95
    names = {"compose", "text", "prefer", "quality"}
    assert set(report["rewards"]) == names and set(report["ms_per_image"]) == names
    for name, row in report["rewards"].items():
        assert set(row) == {"clean", "noisy", "blurred"} and all(0 <= v <= 1 for v in row.values()), name
        assert report["ms_per_image"][name] > 0
    quality = report["rewards"]["quality"]
    assert quality["clean"] > quality["noisy"] + 0.3 and quality["clean"] > quality["blurred"] + 0.3
    assert report["rewards"]["compose"]["clean"] >= 0.98 and report["rewards"]["text"]["clean"] >= 0.95


def test_world_splits_regenerates_identical_files(cli, tmp_path: Path) -> None:
    code, out, err = cli("world", "splits", "--out", tmp_path)
    assert code == 0, err
    written = sorted(tmp_path.glob("*.jsonl"))
    assert len(written) == 10 and sorted(out.split()) == sorted(str(p) for p in written)
    for path in written:
        assert path.read_bytes() == (PROMPT_DIR / path.name).read_bytes(), path.name


# --- score ------------------------------------------------------------------------------------------------


@pytest.fixture
def images(tmp_path: Path, render_records) -> dict[str, Path]:
    paths = {"circle": tmp_path / "circle.png", "word": tmp_path / "word.png", "blank": tmp_path / "blank.png"}
    render(Scene((SceneObject("circle", "red", "big", 0.5, 0.5),))).save(paths["circle"])
    render_records([{"prompt": "", "target": "TEA"}])[0].save(paths["word"])
    render(Scene()).save(paths["blank"])
    return paths


def _scores(out: str) -> list[float]:
    return [float(line.split("\t")[0]) for line in out.strip().splitlines()]


def test_score(cli, images: dict[str, Path]) -> None:
    code, out, err = cli("score", "--reward", "compose", "--prompt", "a photo of a red circle",
                         "--metadata", RED_CIRCLE, images["circle"], images["blank"])
    assert code == 0, err
    assert _scores(out) == [1.0, 0.0] and str(images["circle"]) in out
    code, out, err = cli("score", "--reward", "text", "--prompt", 'a sign that says "TEA"', images["word"],
                         images["blank"])
    assert code == 0, err
    assert _scores(out) == [1.0, 0.0]


def test_score_bad_inputs(cli, images: dict[str, Path], tmp_path: Path) -> None:
    circle = images["circle"]
    _fails_with(cli("score", "--reward", "clipscore", "--prompt", "x", circle), "unknown reward 'clipscore'",
                "compose, text, prefer, quality", "pickscore[:FOLDER]")
    _fails_with(cli("score", "--reward", "text", "--prompt", "no quotes here", circle), "quoted target")
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    _fails_with(cli("score", "--reward", "prefer", "--prompt", "x", not_image), "cannot read image", str(not_image))
    _fails_with(cli("score", "--reward", "prefer", "--prompt", "x", tmp_path / "missing.png"), "missing.png")


def test_score_compose_reads_the_clauses_from_the_prompt(cli, images: dict[str, Path]) -> None:
    """Without --metadata, the compose reward parses the prompt (flowopd.world.grammar) instead of scoring 0."""
    code, out, err = cli("score", "--reward", "compose", "--prompt", "a photo of a red circle", images["circle"],
                         images["blank"])
    assert code == 0, err
    assert _scores(out) == [1.0, 0.0]
    code, out, err = cli("score", "--reward", "compose", "--prompt", "a photo of two circles", images["circle"])
    assert code == 0, err
    assert _scores(out) == [0.5]  # one circle of two: half the count credit


def test_score_compose_refuses_other_prompts_and_bad_metadata(cli, images: dict[str, Path]) -> None:
    circle = images["circle"]
    _fails_with(cli("score", "--reward", "compose", "--prompt", 'a sign that says "TEA"', circle),
                "--reward compose needs a composition prompt in --prompt", "--prompt 'a photo of two circles'",
                "--metadata")
    _fails_with(cli("score", "--reward", "compose", "--prompt", "x", "--metadata", "{oops", circle),
                "--metadata is not valid JSON")
    _fails_with(cli("score", "--reward", "compose", "--prompt", "x", "--metadata", "[1, 2]", circle),
                "--metadata must be a JSON object, got list")
    _fails_with(cli("score", "--reward", "compose", "--prompt", "x", "--metadata", "{}", circle),
                '--metadata: the compose reward needs a non-empty "include" list')
    _fails_with(cli("score", "--reward", "compose", "--prompt", "x", "--metadata",
                    '{"include": [{"class": "circle"}]}', circle), "--metadata: include[0]: count None is invalid")


# --- pretrain (argument checks only: training is tested in test_pretrain.py) -----------------------------


def test_pretrain_bad_inputs(cli, tmp_path: Path) -> None:
    out = ["--out", tmp_path / "run"]
    _fails_with(cli("pretrain", *out, "--steps", 0), "steps")
    _fails_with(cli("pretrain", *out, "--lr", -1), "lr")
    _fails_with(cli("pretrain", *out, "--config", tmp_path / "none.json"), "none.json")
    config = tmp_path / "cfg.json"
    config.write_text('{"steps": 10, "bogus": 1}')
    _fails_with(cli("pretrain", *out, "--config", config), "bogus")
    config.write_text("{not json")
    _fails_with(cli("pretrain", *out, "--config", config))
    assert not (tmp_path / "run").exists()


def test_generate_checks_its_numbers_before_the_model_loads(cli, tmp_path) -> None:
    code, _, err = cli("generate", "--prompt", "a red circle", "--steps", "-5", "--out", tmp_path)
    assert code == 2 and "--steps -5 is out of range: use 1 to 1000" in err
    code, _, err = cli("generate", "--prompt", "a red circle", "--guidance", "-1", "--out", tmp_path)
    assert code == 2 and "--guidance -1.0 is out of range" in err
    assert not any(tmp_path.iterdir())
