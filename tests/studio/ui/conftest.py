"""Fixtures of the tab tests: the app on the small model, launched, with workers replaced (``spawned``)."""

from __future__ import annotations

import warnings

import pytest


@pytest.fixture
def app(small_model, tmp_path, spawned):
    from gradio_client import Client

    from flowopd_studio.ui import build_app
    from flowopd_studio.ui.state import AppState

    home = tmp_path / "home"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        demo = build_app(AppState(small_model, "small random", home=home))
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield Client(demo.local_url, verbose=False), home
    demo.close()
