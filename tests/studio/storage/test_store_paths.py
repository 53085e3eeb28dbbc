"""Run ids and file names from outside never reach a path outside the data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowopd_studio.storage.errors import InvalidRunId, UnsafePath
from flowopd_studio.storage.paths import CODE_ROOT, check_run_id, inside, new_run_id, resolve_home

BAD_IDS = ["../x", "/etc/passwd", "r0123456789/../../x", "..", "", "r01234", "R0123456789", "r0123456789\n",
           "r012345678g", "runs/r0123456789"]


def test_generated_ids_validate() -> None:
    ids = {new_run_id() for _ in range(100)}
    assert len(ids) == 100 and all(check_run_id(i) == i for i in ids)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_run_ids_are_rejected(store, bad: str) -> None:
    with pytest.raises(InvalidRunId, match="is not a run id"):
        store.get_run(bad)
    with pytest.raises(InvalidRunId):
        store.run_dir(bad)
    with pytest.raises(InvalidRunId):
        store.delete_run(bad)


@pytest.mark.parametrize("name", ["../x", "../../etc/passwd", "/etc/passwd", "runs/../../x", "a/../../b"])
def test_paths_leaving_home_are_rejected(store, name: str) -> None:
    with pytest.raises(UnsafePath):
        store.path(name)
    with pytest.raises(UnsafePath):
        store.relative(Path("/tmp") / name)


def test_symlink_out_of_home_is_rejected(store, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.home / "runs").mkdir(exist_ok=True)
    os.symlink(outside, store.home / "runs" / "link")
    with pytest.raises(UnsafePath, match="leaves the data folder"):
        store.path("runs/link/file.png")
    assert inside(store.home, "runs", "plain.txt") == store.home / "runs" / "plain.txt"


def test_home_in_code_tree_is_refused() -> None:
    with pytest.raises(UnsafePath, match="inside the code tree"):
        resolve_home(CODE_ROOT / "data", create=False)


def test_home_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLOWOPD_HOME", str(tmp_path / "envhome"))
    assert resolve_home() == (tmp_path / "envhome").resolve() and (tmp_path / "envhome").is_dir()
    assert resolve_home(tmp_path / "flag") == (tmp_path / "flag").resolve()  # --home wins


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd"])
def test_cli_rejects_traversal(cli, home: Path, bad: str) -> None:
    for command in ("show", "logs", "delete", "stop", "resume"):
        code, out, err = cli("runs", "--home", home, command, bad)
        assert code == 2 and "is not a run id" in err and out == "", (command, err)
