"""The doctests of ui/ and storage/ (top-level folders that install as flowopd_studio.ui and .storage), run under
their installed names: pytest's own doctest collection would import them by their folder names."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("flowopd_studio.ui", "flowopd_studio.storage")


def modules() -> list[str]:
    names = []
    for package in PACKAGES:
        pkg = importlib.import_module(package)
        names += [package, *(m.name for m in pkgutil.walk_packages(pkg.__path__, f"{package}."))]
    return names


def test_the_walk_finds_the_modules_with_doctests() -> None:
    found = set(modules())
    assert {"flowopd_studio.ui.launch", "flowopd_studio.storage.paths", "flowopd_studio.storage.worker"} <= found


@pytest.mark.parametrize("name", modules())
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples of {name} failed"
