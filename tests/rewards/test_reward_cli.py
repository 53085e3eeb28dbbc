"""``flowopd reward serve`` / ``reward check`` and real-image rewards through ``flowopd score``, in-process."""

from __future__ import annotations

import json
import socket
import threading

import numpy as np
import pytest
from PIL import Image

from flowopd.rewards import get_reward
from flowopd.rewards.remote import RemoteReward


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_a_reward_then_check_it(cli, monkeypatch):
    import flowopd.rewards.serve as serve_module

    made, make = [], serve_module.make_server
    monkeypatch.setattr(serve_module, "make_server", lambda *a, **kw: made.append(make(*a, **kw)) or made[-1])
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    thread = threading.Thread(target=serve_module.serve, args=("quality", "127.0.0.1", port), daemon=True)
    thread.start()
    try:
        remote = RemoteReward(url, retries=5, backoff=0.05)
        images = list(np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
        assert remote(images, ["a", "b", "c"], [{}] * 3) == get_reward("quality")(images, ["a", "b", "c"], [{}] * 3)
        code, out, err = cli("reward", "check", url)
        assert code == 0 and json.loads(out) == {"status": "ok", "reward": "quality"}, err
    finally:
        made[0].shutdown()
        thread.join(5)
    assert not thread.is_alive()  # serve() returns (and closes its socket) once the server is shut down
    code, out, err = cli("reward", "check", url)
    assert code == 2 and out == "" and f"flowopd: error: reward server {url}: it is down" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (("reward", "serve", "--reward", "clipscore"), "unknown reward 'clipscore'"),
    (("reward", "serve", "--reward", "quality", "--port", "70000"), "--port 70000 is invalid"),
    (("reward", "check", "ftp://x"), "reward server address 'ftp://x' is invalid: use http://HOST:PORT"),
])
def test_reward_commands_refuse_bad_input(cli, argv, message):
    code, _, err = cli(*argv)
    assert code == 2 and err.startswith("flowopd: error: ") and message in err, err


def test_score_with_a_real_image_reward(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    image = tmp_path / "sign.png"
    Image.new("RGB", (64, 64), "white").save(image)
    code, _, err = cli("score", "--reward", "pickscore", "--prompt", "a cat", image)
    assert code == 2 and "the pickscore reward needs its weights in" in err and "Traceback" not in err
    code, out, err = cli("score", "--reward", "ocr", "--prompt", 'a sign that says "OPEN"', image)
    assert code == 0 and out.split() == ["0.0000", str(image)], err
