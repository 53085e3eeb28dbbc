"""The webhook when a run ends: the JSON a local server receives, a URL checked before it is stored, and a slow
endpoint that holds nothing past its timeout."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from flowopd_studio.storage.notify import WEBHOOK_SETTING, check_url, notify_end, post
from flowopd_studio.storage.store import Store


@pytest.fixture
def server():
    """A loopback server recording the JSON bodies POSTed to it: yields (url, bodies)."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/hook", bodies
    httpd.shutdown()


def test_an_ended_run_is_posted_with_its_status_and_metrics(server, tmp_path: Path) -> None:
    url, bodies = server
    with Store(tmp_path / "home") as store:
        assert notify_end(store, "r0123456789") is None  # no webhook set: nothing sent (nothing even read)
        store.set_setting(WEBHOOK_SETTING, url)
        run = store.start_foreground("eval", {}, pid=os.getpid(), name="ends")
        store.add_metrics(run.id, [(1, "eval/text", 0.5, 0.0), (2, "eval/text", 0.75, 0.0)])
        store.finish(run.id, os.getpid(), "finished", None)
        notify_end(store, run.id).join(5)
    assert bodies == [{"run_id": run.id, "name": "ends", "stage": "eval", "status": "finished", "error": None,
                       "step": bodies[0]["step"], "metrics": {"eval/text": 0.75}}]


def test_a_silent_endpoint_holds_nothing_past_the_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    start = time.perf_counter()
    post(f"http://127.0.0.1:{listener.getsockname()[1]}/", {"run_id": "r0"}, timeout=0.5).join(5)
    assert time.perf_counter() - start < 3
    listener.close()


def test_the_url_is_checked_and_set_from_the_command_line(cli, tmp_path: Path) -> None:
    assert check_url(" https://hooks.example.com/x ") == "https://hooks.example.com/x"
    with pytest.raises(ValueError, match="is not an http\\(s\\) URL"):
        check_url("ftp://x")
    home = tmp_path / "home"
    code, out, _ = cli("runs", "--home", home, "webhook", "https://hooks.example.com/x")
    assert code == 0 and "webhook: https://hooks.example.com/x" in out
    code, _, err = cli("runs", "--home", home, "webhook", "not a url")
    assert code == 2 and "not an http(s) URL" in err
    code, out, _ = cli("runs", "--home", home, "webhook", "")
    assert code == 0 and "webhook: off" in out
