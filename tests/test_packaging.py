"""pyproject's package list matches the folders, and ui/ and storage/ install as flowopd_studio's subpackages."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+, as CI

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_under_its_installed_name() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = setuptools["package-dir"]
    assert mapping == {"flowopd_studio.ui": "ui", "flowopd_studio.storage": "storage"}
    folders = {}
    for top, name in (("flowopd", "flowopd"), ("flowopd_studio", "flowopd_studio"), ("ui", "flowopd_studio.ui"),
                      ("storage", "flowopd_studio.storage")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            folders[".".join((name, *rel))] = init.parent
    assert sorted(setuptools["packages"]) == sorted(folders)


def test_the_installed_names_resolve_to_the_top_level_folders() -> None:
    import flowopd_studio.storage.stages as stages
    import flowopd_studio.ui as ui

    assert Path(ui.__file__).parent == ROOT / "ui"
    assert Path(stages.__file__).parent == ROOT / "storage" / "stages"
