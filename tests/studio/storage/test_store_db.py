"""The store on a real SQLite file: schema, migrations, lifecycle updates, commands, delete, write failures."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

from flowopd_studio.storage.db import MIGRATIONS, connect, schema_version
from flowopd_studio.storage.errors import InvalidRunState, RunNotFound, StoreError, StoreWriteError
from flowopd_studio.storage.queue import tick
from flowopd_studio.storage.store import Store


def _run(store: Store, name: str = "x") -> str:
    return store.create_run("pretrain", {"steps": 3}, name).id


def test_wal_busy_timeout_foreign_keys_and_version(store: Store) -> None:
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert schema_version(store.db) == len(MIGRATIONS)
    assert {"runs", "metrics", "samples", "artifacts", "commands", "base_models", "teachers",
            "settings"} <= set(store.db.table_names())
    assert store.integrity_check() == "ok"


def test_migrations_apply_once(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="flowopd_studio"):
        Store(home).close()
    # routine, so the first `flowopd runs ...` command prints nothing about it (the CLI logs INFO and above)
    assert [r.levelno for r in caplog.records if "migration" in r.getMessage()] == [logging.DEBUG] * len(MIGRATIONS)
    db = connect(home / "flowopd.db")  # a second open must not re-run the first migration
    assert schema_version(db) == len(MIGRATIONS)
    db.execute("UPDATE schema_version SET version = 99")
    db.close()
    with pytest.raises(StoreError, match="schema version 99.*upgrade flowopd"):
        Store(home)


def test_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "flowopd.db").write_text("this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open the run store"):
        Store(tmp_path)


def test_create_get_list(store: Store) -> None:
    a, b = _run(store, "a"), _run(store, "b")
    run = store.get_run(a)
    assert (run.status, run.name, run.config, run.step) == ("queued", "a", {"steps": 3}, 0)
    assert (store.run_dir(a) / "config.json").is_file()
    assert [r.id for r in store.list_runs()] == [b, a]
    with pytest.raises(RunNotFound, match="no run r0000000000"):
        store.get_run("r0000000000")


def test_claim_respects_the_limit_and_ownership(store: Store) -> None:
    a, b = _run(store), _run(store)
    assert store.claim_next(1).id == a
    assert store.claim_next(1) is None  # one running already
    assert store.set_pid(a, 111) and not store.set_pid(a, 222)
    assert not store.finish(a, 222, "finished")  # not this worker's run
    assert store.finish(a, 111, "finished") and store.get_run(a).status == "finished"
    assert store.claim_next(1).id == b


def test_a_resumed_run_keeps_its_first_start(store: Store) -> None:
    a = _run(store)
    store.claim_next(1)
    store.db.execute("UPDATE runs SET started_at = 1000.0 WHERE id = ?", [a])  # started long ago
    assert store.set_pid(a, 111) and store.finish(a, 111, "stopped")
    store.requeue(a, 0)
    run = store.claim_next(1)
    assert (run.id, run.status, run.attempts, run.started_at) == (a, "running", 2, 1000.0)
    assert run.heartbeat > 1000.0  # this attempt's liveness is the heartbeat's


def test_commands_reach_a_running_run_once(store: Store) -> None:
    a = _run(store)
    with pytest.raises(InvalidRunState, match="queued, not running"):
        store.send_command(a, "stop")
    store.claim_next(1)
    store.send_command(a, "checkpoint")
    store.send_command(a, "stop")
    assert store.take_commands(a) == ["checkpoint", "stop"]
    assert store.take_commands(a) == []
    with pytest.raises(ValueError, match="unknown"):
        store.send_command(a, "explode")


def test_dead_worker_rules(store: Store) -> None:
    alive, silent, never = _run(store), _run(store), _run(store)
    for _ in range(3):
        store.claim_next(3)
    store.set_pid(alive, os.getpid())
    store.set_pid(silent, os.getpid())
    old = time.time() - 1000
    store.db.execute("UPDATE runs SET heartbeat = ? WHERE id IN (?, ?)", [old, silent, never])
    assert sorted(tick(store, stale_after=60).interrupted) == sorted([silent, never])
    assert store.get_run(alive).status == "running"
    assert "no heartbeat for 1000 s" in store.get_run(silent).error
    assert "never started" in store.get_run(never).error


def test_delete_removes_that_run_only(store: Store) -> None:
    keep, gone = _run(store, "keep"), _run(store, "gone")
    for run_id in (keep, gone):
        store.add_metrics(run_id, [(1, "loss", 1.0, time.time()), (2, "loss", 0.5, time.time())])
        (store.run_dir(run_id) / "checkpoint").mkdir()
        store.add_artifact(run_id, "checkpoint", store.run_dir(run_id) / "checkpoint", 2)
    store.add_sample(gone, 1, "a prompt", 0, store.run_dir(gone) / "s.png")
    store.delete_run(gone)
    with pytest.raises(RunNotFound):
        store.get_run(gone)
    assert not store.run_dir(gone).exists() and store.run_dir(keep).is_dir()
    for table in ("metrics", "samples", "artifacts", "commands"):
        assert store.db.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", [gone]).fetchone()[0] == 0
    assert len(store.metrics(keep)) == 2 and len(store.artifacts(keep)) == 1
    assert sorted(os.listdir(store.home / "runs")) == [keep]
    assert store.integrity_check() == "ok"


def test_delete_refuses_running_and_teacher_runs(store: Store) -> None:
    a = _run(store)
    store.claim_next(1)
    with pytest.raises(InvalidRunState, match="running: stop it first"):
        store.delete_run(a)
    store.finish(a, None, "finished")
    store.add_teacher("ocr", "text", "text", "runs/x/adapter", source_run=a)
    with pytest.raises(InvalidRunState, match="teacher"):
        store.delete_run(a)
    assert store.get_run(a).status == "finished" and store.run_dir(a).is_dir()


def test_write_failure_is_clear_and_leaves_db_sound(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _run(store)
    store.add_metrics(a, [(1, "loss", 1.0, time.time())])

    def disk_full(self, *args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("sqlite_utils.db.Table.insert_all", disk_full)
    with pytest.raises(StoreWriteError, match="could not write 2 metric rows.*disk is full.*free disk space"):
        store.add_metrics(a, [(2, "loss", 0.9, time.time()), (3, "loss", 0.8, time.time())])
    monkeypatch.undo()
    assert [r["step"] for r in store.metrics(a)] == [1]
    assert store.integrity_check() == "ok"
    store.add_metrics(a, [(2, "loss", 0.9, time.time())])  # the store still works afterwards
    with pytest.raises(StoreError, match="broke a rule"):
        store.add_metrics(a, [(2, "loss", 0.9, time.time())])  # a duplicate step can never be stored


def test_registry_and_settings(store: Store) -> None:
    store.add_base_model("tiny-base", "/models/tiny", "tiny")
    store.add_teacher("ocr", "text", "text", "runs/x/adapter", base_model="tiny-base")
    assert store.base_models()[0]["backend"] == "tiny" and store.teachers()[0]["task"] == "text"
    assert store.get_setting("max_concurrent") is None
    store.set_setting("max_concurrent", 2)
    assert store.get_setting("max_concurrent") == "2"
