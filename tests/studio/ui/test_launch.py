"""Launching the app: options, auth on every page and endpoint, demo mode without training endpoints, and a
share link that cannot be made (offline) leaving the app serving locally."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from flowopd_studio.ui.launch import LaunchOptions, launch, options, parse_auth

# Words no endpoint of the read-only demo may carry: what trains, steers runs, exports or shows configs.
TRAINING_WORDS = ("start", "stop", "resume", "delete", "submit", "import", "export", "checkpoint", "sample_now",
                  "pipeline", "teacher", "distill", "config", "logs", "run")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _opts(**kw) -> LaunchOptions:
    base = dict(host="127.0.0.1", port=_free_port(), home=None, model=None, share=False, auth=[], demo=False)
    return LaunchOptions(**{**base, **kw})


@pytest.fixture
def serve(small_model, tmp_path: Path):
    """``serve(opts, demo=False)`` builds and launches the app on the small model; closes it afterwards."""
    from flowopd_studio.ui import build_app
    from flowopd_studio.ui.state import AppState

    apps = []

    def start(opts: LaunchOptions):
        app = build_app(AppState(small_model, "small random", home=tmp_path / "home", demo=opts.demo))
        launch(app, opts, block=False, quiet=True)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.close()


def test_share_without_auth_starts_read_only_and_auth_parses() -> None:
    opts = options(["--share"])
    assert opts.demo and opts.demo_reason == "--share without --auth"
    opts = options(["--share", "--auth", "alice:s3:cret", "--auth", "bob:pw"])
    assert not opts.demo and opts.auth == [("alice", "s3:cret"), ("bob", "pw")]
    with pytest.raises(ValueError, match="is not USER:PASS"):
        parse_auth(["alice"], "--auth")


def test_bad_auth_options_exit_with_a_message(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        options(["--auth", "alice:"])
    assert "--auth 'alice'... is not USER:PASS" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        options(["--auth-file", str(tmp_path / "none.txt")])
    assert "does not exist" in capsys.readouterr().err
    file = tmp_path / "users.txt"
    file.write_text("# who may log in\nalice:one\n\nbob:two\n")
    assert options(["--auth-file", str(file)]).auth == [("alice", "one"), ("bob", "two")]


def test_with_auth_every_page_and_endpoint_refuses_an_unauthenticated_request(serve) -> None:
    from gradio_client import Client

    app = serve(_opts(auth=[("alice", "s3cret")]))
    url = app.local_url
    config = httpx.get(f"{url}config", timeout=10)
    assert config.status_code == 401
    call = httpx.post(f"{url}gradio_api/call/generate", json={"data": ["x", 0, 2, 3.0, 1]}, timeout=10)
    assert call.status_code == 401
    info = httpx.get(f"{url}gradio_api/info", timeout=10)
    assert info.status_code == 401
    page = httpx.get(url, timeout=10)
    assert page.status_code == 200 and "small random" not in page.text  # the shell only: no component, no model
    assert "window.gradio_api_info = {};" in page.text and "/generate" not in page.text  # no endpoint described
    assert "Models &amp; teachers" not in page.text and "Models & teachers" not in page.text
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises its own error types across versions
        Client(url, verbose=False)
    client = Client(url, auth=("alice", "s3cret"), verbose=False)
    gallery, _ = client.predict('a sign that says "HAT"', 1, 2, 3.0, 1, api_name="/generate")
    assert len(gallery) == 1
    logged = httpx.Client()
    assert logged.post(f"{url}login", data={"username": "alice", "password": "s3cret"}).status_code == 200
    assert "/generate" in logged.get(url).text  # once logged in, the page describes the app as usual


def test_demo_mode_exposes_no_training_endpoint_and_no_training_tab(serve) -> None:
    from gradio_client import Client

    app = serve(_opts(demo=True, demo_reason="--demo"))
    endpoints = Client(app.local_url, verbose=False).view_api(print_info=False, return_format="dict")
    names = [n.lstrip("/").lower() for n in endpoints["named_endpoints"]]
    assert "generate" in names
    assert not [n for n in names if any(w in n for w in TRAINING_WORDS)], names
    config = httpx.get(f"{app.local_url}config", timeout=10).json()
    labels = {c.get("props", {}).get("label") for c in config["components"]}
    assert not labels & {"Models & teachers", "Distill", "Runs", "Export", "Results"}


def test_a_share_link_that_cannot_be_made_leaves_the_app_serving_locally(serve, monkeypatch, capsys) -> None:
    def offline(*args, **kwargs):
        raise OSError("could not reach api.gradio.app")

    monkeypatch.setattr("gradio.networking.setup_tunnel", offline)
    app = serve(_opts(share=True, auth=[("alice", "s3cret")]))
    out = capsys.readouterr().out
    assert "No share link could be made" in out and "keeps serving locally" in out
    assert httpx.get(f"{app.local_url}config", timeout=10).status_code == 401  # up, and still behind auth


def test_the_readmes_python_example_runs_against_an_app_with_auth(serve) -> None:
    """The README's "Use from Python" block, run as written against a served app (its URL swapped in)."""
    import re

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme[readme.index("## Use from Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    app = serve(_opts(auth=[("alice", "s3cret")]))
    namespace: dict = {}
    exec(code.replace("http://127.0.0.1:7860/", app.local_url), namespace)  # noqa: S102 (our own README)
    assert len(namespace["gallery"]) == 2 and namespace["grid"].endswith(".png")
    assert namespace["means"]["data"][0][0] == "base"


def test_the_webhook_option_is_checked_before_anything_loads(capsys) -> None:
    with pytest.raises(SystemExit):
        options(["--webhook", "ftp://hooks.example.com/x"])
    assert "is not an http(s) URL" in capsys.readouterr().err
    assert options(["--webhook", "http://127.0.0.1:9/hook"]).webhook == "http://127.0.0.1:9/hook"
    assert options([]).webhook is None
