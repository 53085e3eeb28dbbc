"""``flowopd runs ...`` in-process: submit, list, show, stop, logs, resume, delete, tick, with --json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from flowopd_studio.storage.cli import EXAMPLES
from flowopd_studio.storage.store import Store


@pytest.fixture
def config_file(tmp_path: Path, tiny_pretrain) -> Path:
    path = tmp_path / "pretrain.json"
    path.write_text(json.dumps(tiny_pretrain(steps=5)))
    return path


def test_every_runs_command_has_help_with_an_example(cli) -> None:
    for name in EXAMPLES:
        code, out, _ = cli("runs", name, "--help")
        assert code == 0 and "example: flowopd runs" in out and "--json" in out, name


def test_submit_list_show_stop_logs_delete(cli, home: Path, config_file: Path, fake_spawn) -> None:
    code, out, err = cli("runs", "--home", home, "submit", "pretrain", "--config", config_file, "--name", "base")
    run_id = out.strip()
    assert code == 0 and fake_spawn == [run_id], err

    code, out, _ = cli("runs", "list", "--home", home, "--json")
    runs = json.loads(out)
    assert code == 0 and [(r["id"], r["name"], r["status"], r["pid"]) for r in runs] == [
        (run_id, "base", "running", os.getpid())]
    code, out, _ = cli("runs", "list", "--home", home)
    assert code == 0 and run_id in out and "running" in out

    code, out, _ = cli("runs", "show", run_id, "--home", home, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["run"]["config"]["steps"] == 5 and shown["run"]["stage"] == "pretrain"

    code, out, _ = cli("runs", "stop", run_id, "--home", home, "--json")
    assert code == 0 and json.loads(out) == {"id": run_id, "result": "stopping", "status": "running"}
    with Store(home) as store:
        assert store.take_commands(run_id) == ["stop"]

    code, _, err = cli("runs", "delete", run_id, "--home", home)
    assert code == 2 and err.startswith(f"flowopd: error: run {run_id} is running: stop it first")

    log_path = home / "runs" / run_id / "worker.log"
    log_path.write_text("".join(f"line {i}\n" for i in range(100)))
    code, out, _ = cli("runs", "logs", run_id, "--home", home, "--tail", "3", "--json")
    assert code == 0 and json.loads(out)["lines"] == ["line 97", "line 98", "line 99"]
    code, out, _ = cli("runs", "logs", run_id, "--home", home, "--tail", "2")
    assert out == "line 98\nline 99\n"

    with Store(home) as store:
        store.finish(run_id, os.getpid(), "stopped")
    code, _, err = cli("runs", "resume", run_id, "--home", home)
    assert code == 2 and "train_state.pt is missing" in err  # never reached a checkpoint
    code, out, _ = cli("runs", "delete", run_id, "--home", home, "--json")
    assert code == 0 and json.loads(out) == {"id": run_id, "deleted": True}
    assert not (home / "runs" / run_id).exists()
    code, _, err = cli("runs", "show", run_id, "--home", home)
    assert code == 2 and f"no run {run_id}" in err


def test_queue_one_at_a_time_and_stop_queued(cli, home: Path, config_file: Path, fake_spawn) -> None:
    ids = [cli("runs", "--home", home, "submit", "pretrain", "--config", config_file)[1].strip() for _ in range(2)]
    assert fake_spawn == ids[:1]  # the second waits: max_concurrent defaults to 1
    code, out, _ = cli("runs", "stop", ids[1], "--home", home)
    assert code == 0 and "stopped (it had not started)" in out
    code, out, _ = cli("runs", "tick", "--home", home, "--max-concurrent", "2", "--json")
    assert code == 0 and json.loads(out) == {"started": [], "interrupted": []}
    code, out, _ = cli("runs", "list", "--home", home, "--status", "stopped", "--json")
    assert [r["id"] for r in json.loads(out)] == [ids[1]]


def test_home_from_environment(cli, home: Path, config_file: Path, fake_spawn, monkeypatch) -> None:
    monkeypatch.setenv("FLOWOPD_HOME", str(home))
    code, out, _ = cli("runs", "submit", "pretrain", "--config", config_file, "--json")
    assert code == 0 and json.loads(out)["status"] == "running" and (home / "flowopd.db").is_file()


@pytest.mark.parametrize("argv, message", [
    (["submit", "pretrain", "--config", "CONFIG_BAD_KEY"], "unknown pretrain config keys ['stepz']"),
    (["submit", "pretrain", "--config", "/no/such.json"], "config file /no/such.json does not exist"),
    (["submit", "pretrain", "--config", "CONFIG_NOT_JSON"], "is not valid JSON"),
    (["submit", "pretrain", "--config", "CONFIG_LIST"], "must hold a JSON object of pretrain config fields"),
    (["submit", "nosuch", "--config", "CONFIG_BAD_KEY"], "invalid choice: 'nosuch'"),
    (["show", "r0000000000"], "no run r0000000000"),
    (["stop", "r0000000000"], "no run r0000000000"),
])
def test_errors_are_one_clean_line(cli, home: Path, tmp_path: Path, argv: list[str], message: str) -> None:
    files = {"CONFIG_BAD_KEY": '{"stepz": 3}', "CONFIG_NOT_JSON": "{steps: 3", "CONFIG_LIST": "[1, 2]"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [str(tmp_path / a) if a in files else a for a in argv]
    code, out, err = cli("runs", "--home", home, *argv)
    assert code == 2 and message in err and out == "" and "Traceback" not in err, err


def test_a_refused_first_submit_leaves_no_data_folder(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"steps": -1}))
    home = tmp_path / "new-home"
    code, _, err = cli("runs", "--home", home, "submit", "pretrain", "--config", bad)
    assert code == 2 and "steps=-1 is invalid" in err
    assert not home.exists()  # nothing made for a run that was refused
    existing = tmp_path / "old-home"
    Store(existing).close()
    code, _, _ = cli("runs", "--home", existing, "submit", "pretrain", "--config", bad)
    assert code == 2 and (existing / "flowopd.db").is_file()  # an existing store is left as it was
