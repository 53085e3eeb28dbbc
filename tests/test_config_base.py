"""The config base: every registered config has typed, helped fields; one JSON form; one file reader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowopd.coldstart.config import ColdStartConfig
from flowopd.config.base import config_class, config_kinds, read_config
from flowopd.config.eval import EvalConfig
from flowopd.config.pretrain import PretrainConfig
from flowopd.methods.grpo.config import GRPOConfig
from flowopd.methods.opd.config import OPDConfig
from flowopd.reproduce.config import ReproduceConfig
from flowopd.reward_names import REWARD_NAMES

TEACHERS = {"compose": "runs/t-compose", "text": "runs/t-text"}
KINDS = ["awm", "coldstart", "eval", "grpo", "nft", "opd", "pretrain", "reproduce", "tiny"]
ROOT = Path(__file__).resolve().parents[1]


def example(kind: str):
    """A valid config of ``kind`` (the defaults, plus teachers where a stage needs them)."""
    cls = config_class(kind)
    if kind in ("opd", "coldstart"):
        return cls(teachers=dict(TEACHERS), **({"prompt_tasks": {"compose": 1.0}} if kind == "opd" else {}))
    return ReproduceConfig.preset("smoke") if kind == "reproduce" else cls()


def test_registry_holds_every_stage_config() -> None:
    assert set(KINDS) <= set(config_kinds())
    assert config_class("grpo") is GRPOConfig and config_class("reproduce") is ReproduceConfig
    with pytest.raises(ValueError, match="unknown config kind 'nope': use one of awm, coldstart, eval"):
        config_class("nope")


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_has_help_and_a_type(kind: str) -> None:
    infos = config_class(kind).describe()
    missing = [i.name for i in infos if not i.help.strip()]
    assert not missing, f"{kind}: fields without help {missing}"
    assert all(i.type for i in infos)
    if kind in ("reproduce", "pretrain"):  # nested configs are walked too, as parent.field
        assert any("." in i.name for i in infos)


@pytest.mark.parametrize("kind", KINDS)
def test_json_round_trip(kind: str, tmp_path: Path) -> None:
    cfg = example(kind)
    data = json.loads(cfg.to_json())
    assert data["kind"] == kind
    assert type(cfg).from_json(cfg.to_json()) == cfg
    cfg.to_json(tmp_path / "c.json")
    assert read_config(tmp_path / "c.json", type(cfg)) == cfg
    data.pop("kind")  # files written before the kind key load too
    assert type(cfg).from_dict(data) == cfg


def test_describe_gives_choices_bounds_and_nested_defaults() -> None:
    info = GRPOConfig.field_info("mixed_precision")
    assert (info.type, info.default, info.choices, info.group) == ("str", "no", ("no", "fp16", "bf16"), "LoRA and EMA")
    steps = EvalConfig.field_info("num_steps")
    assert (steps.type, steps.default, steps.min, steps.max, steps.bounds()) == ("int", 20, 1, 1000, "1..1000")
    assert GRPOConfig.field_info("lr").bounds() == "> 0" and GRPOConfig.field_info("ema_decay").bounds() == "(0, 1)"
    epochs = ReproduceConfig.field_info("distill.epochs")
    assert (epochs.default, epochs.group, epochs.min) == (16, "distill", 1)


@pytest.mark.parametrize("make, message", [
    (lambda: GRPOConfig(seed=-1), r"seed=-1 is invalid: use a whole number >= 0"),
    (lambda: PretrainConfig(seed=-1), r"seed=-1 is invalid"),
    (lambda: EvalConfig(seed=-1), r"seed=-1 is invalid"),
    (lambda: ColdStartConfig(teachers=dict(TEACHERS), seed=-1), r"seed=-1 is invalid"),
    (lambda: GRPOConfig(epochs=True), r"epochs=True is invalid: use a whole number"),
    (lambda: PretrainConfig(steps=10.0), r"steps=10.0 is invalid: use a whole number"),
    (lambda: GRPOConfig(lr=float("nan")), r"lr=nan is invalid: use a number"),
    (lambda: GRPOConfig(ema="yes"), r"ema='yes' is invalid: use true or false"),
    (lambda: OPDConfig(teachers=dict(TEACHERS), init=3), r"init=3 is invalid: use a string or null"),
    (lambda: GRPOConfig(rewards={"clipscore": 1.0}), r"'clipscore' is not a registered reward; use names from "
                                                     r"compose, text, prefer, quality, or a real-image reward"),
    (lambda: PretrainConfig(model={"image_size": 8}), r"model: image_size=8 is invalid: use a whole number from 16 "
                                                      r"to 256"),
])
def test_metadata_checks_name_the_field_and_the_fix(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_reward_names_mirror_the_registry() -> None:
    from flowopd.rewards import REWARDS

    assert list(REWARDS) == REWARD_NAMES[:len(REWARDS)] and set(REWARD_NAMES) == set(REWARDS)


@pytest.mark.parametrize("text, error, message", [
    (None, FileNotFoundError, r"config file .*c.json does not exist: write a JSON object of grpo config fields"),
    ("{nope", ValueError, r"config file .*c.json is not valid JSON"),
    ("[1]", ValueError, r"config file .*c.json must hold a JSON object of grpo config fields, not a list"),
    ('{"lrr": 1}', ValueError, r"config file .*c.json: unknown grpo config keys \['lrr'\]: known keys are"),
    ('{"seed": -1}', ValueError, r"config file .*c.json: seed=-1 is invalid: use a whole number >= 0"),
    ('{"kind": "opd"}', ValueError, r"config file .*c.json: this is a 'opd' config, not a 'grpo' one"),
])
def test_read_config_names_the_file_and_the_fix(tmp_path: Path, text, error, message: str) -> None:
    path = tmp_path / "c.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(error, match=message):
        read_config(path, GRPOConfig)


def test_read_config_applies_overrides_and_presets(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"budget": "smoke", "rl": {"lr": 5e-4}}')
    cfg = read_config(path, ReproduceConfig, {"seeds": 2})
    assert (cfg.seeds, cfg.num_steps, cfg.rl["lr"], cfg.rl["lora_rank"]) == (2, 2, 5e-4, 2)
    assert read_config(None, PretrainConfig, {"steps": 7}).steps == 7


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})


def test_importing_the_configs_imports_no_torch() -> None:
    result = _run("import sys\n"
                  "import flowopd.methods, flowopd.config.base, flowopd.reproduce.config, flowopd.config.pretrain\n"
                  "from flowopd.config.base import config_kinds\n"
                  "config_kinds()\n"
                  "heavy = [m for m in ('torch', 'diffusers', 'gradio') if m in sys.modules]\n"
                  "assert not heavy, heavy\n")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("argv, message", [
    (["pretrain", "--steps", "0", "--out", "OUT"], "steps=0 is invalid: use a positive integer"),
    (["pretrain", "--seed", "-1", "--out", "OUT"], "seed=-1 is invalid: use a whole number >= 0"),
    (["train", "grpo", "--config", "BAD", "--out", "OUT"], "config file BAD: unknown grpo config keys ['lrr']"),
    (["train", "opd", "--config", "NOT_JSON", "--out", "OUT"], "config file NOT_JSON is not valid JSON"),
    (["eval", "--steps", "0"], "num_steps=0 is invalid"),
    (["generate", "--prompt", "a", "--seed", "-1", "--out", "OUT"], "--seed -1 is invalid: use a whole number >= 0"),
])
def test_bad_flags_and_configs_fail_before_torch_loads(tmp_path: Path, argv: list[str], message: str) -> None:
    files = {"BAD": '{"lrr": 1}', "NOT_JSON": "{nope"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [str(tmp_path / a) if a in files else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    message = message.replace("BAD", str(tmp_path / "BAD")).replace("NOT_JSON", str(tmp_path / "NOT_JSON"))
    result = _run("import sys\n"
                  "try:\n    from flowopd_studio.cli import main\n"  # where the command is moving
                  "except ImportError:\n    from flowopd.cli import main\n"
                  f"code = main({argv!r})\n"
                  "print('exit', code, 'torch' in sys.modules, 'diffusers' in sys.modules)\n")
    assert result.stdout.strip().splitlines()[-1] == "exit 2 False False", result.stdout + result.stderr
    assert message in result.stderr, result.stderr


def test_config_command_prints_the_field_table(cli) -> None:
    code, out, _ = cli("config", "grpo")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["FIELD", "TYPE", "DEFAULT", "ALLOWED", "HELP"]
    row = next(line for line in lines if line.startswith("mixed_precision "))
    assert "no | fp16 | bf16" in row and "frozen base" in row
    code, out, _ = cli("config", "reproduce", "--json")
    infos = {i["name"]: i for i in json.loads(out)}
    assert code == 0 and infos["teacher.epochs"]["min"] == 1
    assert infos["budget"]["choices"] == ["smoke", "default", "strong"]
    code, out, _ = cli("pretrain", "--help")
    assert "optimizer steps (default 5000)" in out


def test_runs_submit_refuses_an_unknown_reward(cli, tmp_path: Path) -> None:
    config = tmp_path / "grpo.json"
    config.write_text(json.dumps({"rewards": {"clipscore": 1.0}, "epochs": 1}))
    code, out, err = cli("runs", "--home", tmp_path / "home", "submit", "grpo", "--config", config)
    assert code == 2 and out == ""
    assert f"config file {config}: rewards={{'clipscore': 1.0}} is invalid: 'clipscore' is not a registered" in err


def test_every_config_help_is_one_short_line() -> None:
    """Forms and --help show one line per field; the reasoning lives in docs/method.md and docs/notes/."""
    long = [f"{kind}.{f.name} ({len(f.help)})" for kind in config_kinds() for f in config_class(kind).describe()
            if len(f.help) > 200]
    assert long == []
