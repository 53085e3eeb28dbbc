"""Remote rewards against real HTTP servers on 127.0.0.1: a served reward scores batches exactly as it does
locally; a server that is down, slow or answers garbage gives a RewardServerError naming the URL and the fix."""

from __future__ import annotations

import json
import pickle
import socket
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from flowopd.rewards import get_reward
from flowopd.rewards.remote import RemoteReward, RewardServerError, encode_png
from flowopd.rewards.serve import make_server


def canned_server(status: int, body: bytes, delay: float = 0.0) -> ThreadingHTTPServer:
    """A server answering every request with ``status`` and ``body`` after ``delay`` s; counts requests."""

    class Canned(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.server.requests += 1
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # a client that timed out has gone
                pass

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    server.daemon_threads, server.requests = True, 0
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_a_served_reward_scores_batches_exactly_as_locally(serving):
    seen = []

    def recording(images, prompts, metadata):
        seen.append((len(images), list(prompts), list(metadata)))
        return get_reward("quality")(images, prompts, metadata)

    images, prompts = _images(5), [f"prompt {i}" for i in range(5)]
    metadata = [{"task": "quality", "i": i} for i in range(5)]
    with serving(make_server(recording, name="quality")) as url:
        remote = RemoteReward(url, batch_size=3, timeout=10)
        assert remote.health() == {"status": "ok", "reward": "quality"}
        scores = remote(images, prompts, metadata)
    # PNG is lossless: the server scores the very pixels the local reward sees.
    assert scores == get_reward("quality")(images, prompts, metadata)
    assert [n for n, _, _ in seen] == [3, 2]  # batches of batch_size, in order
    assert [p for _, ps, _ in seen for p in ps] == prompts and [m for _, _, ms in seen for m in ms] == metadata


def test_scale_divides_the_servers_scores(serving):
    with serving(canned_server(200, b'{"scores": [4.0, 2.5]}')) as url:
        assert RemoteReward(url, scale=5.0)(_images(2), ["a", "b"], [{}, {}]) == [0.8, 0.5]


def test_flow_factory_answers_are_read(serving):
    with serving(canned_server(200, b'{"rewards": [0.25]}')) as url:  # Flow-Factory's reward servers
        assert RemoteReward(url)(_images(1), ["a"], [{}]) == [0.25]


def test_a_server_that_is_down():
    url = f"http://127.0.0.1:{free_port()}"
    start = time.perf_counter()
    with pytest.raises(RewardServerError, match=rf"reward server {url}: it is down \(connection refused\), after 2 "
                                                r"attempt\(s\): start it .*flowopd reward serve"):
        RemoteReward(url, retries=2, backoff=0.01)(_images(1), ["a"], [{}])
    assert time.perf_counter() - start < 2
    with pytest.raises(RewardServerError, match="is down"):
        RemoteReward(url, retries=1).health()


def test_a_slow_server_times_out(serving):
    server = canned_server(200, b'{"scores": [1.0]}', delay=1.5)
    with serving(server) as url:
        start = time.perf_counter()
        with pytest.raises(RewardServerError, match=rf"{url}: it did not answer within 0.3 s, after 1 attempt\(s\): "
                                                    r"give it more time"):
            RemoteReward(url, timeout=0.3, retries=1)(_images(1), ["a"], [{}])
        assert time.perf_counter() - start < 1.2


@pytest.mark.parametrize("status, body, message, attempts", [
    (200, b"<html>gateway</html>", r"answered garbage to /compute: its answer is not JSON \(it starts b'<html>", 1),
    (200, pickle.dumps({"scores": [0.5, 0.5]}), r"its answer is not JSON", 1),  # never unpickled
    (200, b'{"scores": [0.5]}', r"it returned 1 scores for 2 images", 1),
    (200, b'{"scores": ["high", 0.1]}', r"score 0 is 'high', not a finite number", 1),
    (200, b'{"scores": [0.1, NaN]}', r"score 1 is nan, not a finite number", 1),
    (200, b'{"scores": [true, 0.1]}', r"score 0 is True", 1),
    (200, b"[0.1, 0.2]", r"its answer is a JSON list", 1),
    (200, b'{"score": [0.1, 0.2]}', r"its answer has no \"scores\" list \(keys: score\)", 1),
    (500, b'{"error": "CUDA out of memory"}', r"it failed \(HTTP 500: CUDA out of memory\), after 2 attempt\(s\): "
                                              r"see the server's log", 2),
    (404, b"no such page", r"refused the request \(HTTP 404: no such page\)", 1),
])
def test_garbage_answers(serving, status, body, message, attempts):
    server = canned_server(status, body)
    with serving(server) as url:
        with pytest.raises(RewardServerError, match=rf"reward server {url}.*{message}"):
            RemoteReward(url, retries=2, backoff=0.01)(_images(2), ["a", "b"], [{}, {}])
    assert server.requests == attempts  # 5xx is retried; an answer that is there but wrong is not


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/compute", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_server_refuses_bad_requests_and_reports_reward_failures(serving):
    def failing(images, prompts, metadata):
        if prompts[0] == "boom":
            raise RuntimeError("the detector crashed")
        return [0.5] * len(images)

    png = encode_png(np.zeros((8, 8, 3), np.uint8))
    with serving(make_server(failing)) as url:
        assert _post(url, json.dumps({"images": [png], "prompts": ["ok"]}).encode()) == (200, {"scores": [0.5]})
        for body, error in [
            (b"not json", "the body is not JSON"),
            (pickle.dumps({"images": [png]}), "the body is not JSON"),
            (b'{"prompts": ["a"]}', '{"images": [base64 PNG, ...]'),
            (json.dumps({"images": ["%%%"], "prompts": ["a"]}).encode(), "images[0] is not a base64 PNG or JPEG"),
            (json.dumps({"images": [png], "prompts": ["a", "b"]}).encode(), '"prompts" must be a list of 1 strings'),
            (json.dumps({"images": [png], "prompts": ["a"], "metadata": [3]}).encode(), '"metadata" must be a list'),
        ]:
            status, answer = _post(url, body)
            assert status == 400 and error in answer["error"], (body[:30], answer)
        status, answer = _post(url, json.dumps({"images": [png], "prompts": ["boom"]}).encode())
        assert (status, answer) == (500, {"error": "RuntimeError: the detector crashed"})
        with pytest.raises(RewardServerError, match=r"HTTP 500: RuntimeError: the detector crashed"):
            RemoteReward(url, retries=1)(_images(1), ["boom"], [{}])
        assert RemoteReward(url)(_images(1), ["fine"], [{}]) == [0.5]  # the server kept serving


def test_remote_rewards_by_name():
    url = f"http://127.0.0.1:{free_port()}"
    reward = get_reward(f"remote:{url}")
    assert isinstance(reward, RemoteReward) and reward.url == url and reward.scale == 1.0
    assert get_reward(f"remote:{url}") is reward  # built once per name
    deqa, geneval = get_reward("deqa"), get_reward("geneval:http://gpu3:18085/")
    assert (deqa.url, deqa.scale) == ("http://127.0.0.1:18086", 5.0)  # DeQA rates 1-5
    assert (geneval.url, geneval.scale) == ("http://gpu3:18085", 1.0)
    with pytest.raises(ValueError, match=r"unknown reward 'remote:ftp://x'.*must start with http://"):
        get_reward("remote:ftp://x")
    with pytest.raises(ValueError, match=r"unknown reward 'remote'.*needs the server's address"):
        get_reward("remote")
