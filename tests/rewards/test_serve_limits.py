"""The reward server's limits, on loopback: too many images or decoded pixels (413), a request without its token
(401), a client that stalls in its body (dropped after the timeout), one connection too many (503), and on the
client's side a server that trickles its answer (a deadline per answer). Each bounded in time."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from flowopd.rewards.remote import RemoteReward, RewardServerError
from flowopd.rewards.serve import Limits, make_server


def _ones(images, prompts, metadata):
    return [1.0] * len(images)


def _server(**kw):
    return make_server(_ones, **kw)


def _png(side: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (200, 10, 10)).save(buf, "PNG")  # flat: a few KB whatever its side
    return base64.b64encode(buf.getvalue()).decode()


def _post(url: str, payload: dict, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url + "/compute", data=json.dumps(payload).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_too_many_images_or_pixels_are_refused_with_413(serving) -> None:
    with serving(_server(limits=Limits(max_images=3, max_pixels=100 * 100))) as url:
        four = {"images": [_png(8)] * 4, "prompts": ["a"] * 4}
        code, body = _post(url, four)
        assert code == 413 and "at most 3 (--max-images)" in body["error"]
        big = {"images": [_png(2000)], "prompts": ["a"]}  # 4 M pixels in a few KB of PNG
        code, body = _post(url, big)
        assert code == 413 and "2000 x 2000" in body["error"] and "--max-pixels" in body["error"]
        assert _post(url, {"images": [_png(8)] * 2, "prompts": ["a", "b"]}) == (200, {"scores": [1.0, 1.0]})


def test_a_token_is_required_when_the_server_has_one(serving, monkeypatch) -> None:
    with serving(_server(token="s3cret")) as url:
        code, body = _post(url, {"images": [_png(8)], "prompts": ["a"]})
        assert code == 401 and "Bearer TOKEN" in body["error"]
        assert _post(url, {"images": [_png(8)], "prompts": ["a"]}, token="s3cret")[0] == 200
        image = np.zeros((8, 8, 3), np.uint8)
        assert RemoteReward(f"{url}?token=s3cret", retries=1)([image], ["a"], [{}]) == [1.0]
        monkeypatch.setenv("FLOWOPD_REWARD_TOKEN", "s3cret")
        assert RemoteReward(url, retries=1)([image], ["a"], [{}]) == [1.0]
        monkeypatch.delenv("FLOWOPD_REWARD_TOKEN")
        with pytest.raises(RewardServerError, match="HTTP 401"):
            RemoteReward(url, retries=1)([image], ["a"], [{}])


def test_a_stalled_body_is_dropped_and_one_connection_too_many_gets_503(serving) -> None:
    with serving(_server(limits=Limits(timeout_s=0.5, max_connections=1))) as url:
        host, port = url.removeprefix("http://").split(":")
        stalled = socket.create_connection((host, int(port)))
        stalled.sendall(b"POST /compute HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{")  # then nothing
        time.sleep(0.1)
        busy = _post(url, {"images": [_png(8)], "prompts": ["a"]})
        assert busy[0] == 503 and "busy" in busy[1]["error"]
        start = time.perf_counter()
        assert stalled.recv(100) == b""  # the server closed it after its timeout
        assert time.perf_counter() - start < 3
        stalled.close()
        time.sleep(0.1)
        assert _post(url, {"images": [_png(8)], "prompts": ["a"]})[0] == 200  # its slot is free again


def test_a_trickling_server_cannot_keep_a_call_past_its_deadline() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def trickle():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        try:
            for _ in range(20):  # a byte every 0.3 s: each read is quick, the whole answer is not
                conn.sendall(b" ")
                time.sleep(0.3)
        except OSError:
            pass
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    start = time.perf_counter()
    with pytest.raises(RewardServerError, match="did not answer within 1 s"):
        RemoteReward(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=1.0, retries=1)(
            [np.zeros((8, 8, 3), np.uint8)], ["a"], [{}])
    assert time.perf_counter() - start < 3
    listener.close()
