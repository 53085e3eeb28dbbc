"""A reward server for any reward (the protocol of :mod:`flowopd.rewards.remote`), on the standard library only.

Use it to score on another machine or in another environment (a GPU box with the detector's weights), or as the
template of a server for a scorer of your own: :func:`make_server` takes any ``(images, prompts, metadata) ->
scores`` callable. Requests are JSON; images are decoded as PNG or JPEG only, and nothing is unpickled.

Example::

    flowopd reward serve --reward ocr --port 18087        # then train with {"remote:http://HOST:18087": 1.0}

    server = make_server(get_reward("quality"), port=0)    # in Python: port 0 picks a free port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from . import RewardFn

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 512 * 2**20  # 64 SD3.5 images as PNG are far below this


class BadRequest(ValueError):
    """A ``/compute`` request that is not ``{"images": [...], "prompts": [...], "metadata": [...]}``."""


def decode_image(text: object, index: int) -> Image.Image:
    """One base64 PNG/JPEG string -> an RGB PIL image, or BadRequest naming the image."""
    if not isinstance(text, str):
        raise BadRequest(f"images[{index}] is a {type(text).__name__}, not a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
        with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as image:
            return image.convert("RGB")
    except (binascii.Error, OSError, ValueError, Image.DecompressionBombError) as err:  # the bomb: a huge image
        raise BadRequest(f"images[{index}] is not a base64 PNG or JPEG ({err})") from None


def parse_request(body: bytes) -> tuple[list[Image.Image], list[str], list[dict]]:
    """The images, prompts and metadata of a ``/compute`` body; metadata defaults to ``{}`` per image."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"the body is not JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise BadRequest('send a JSON object {"images": [base64 PNG, ...], "prompts": [...], "metadata": [...]}')
    n = len(data["images"])
    prompts = data.get("prompts")
    metadata = data.get("metadata") or [{} for _ in range(n)]
    if not isinstance(prompts, list) or len(prompts) != n or not all(isinstance(p, str) for p in prompts):
        raise BadRequest(f'"prompts" must be a list of {n} strings, one per image')
    if not isinstance(metadata, list) or len(metadata) != n or not all(isinstance(m, dict) for m in metadata):
        raise BadRequest(f'"metadata" must be a list of {n} objects, one per image (or left out)')
    return [decode_image(t, i) for i, t in enumerate(data["images"])], prompts, metadata


class RewardHandler(BaseHTTPRequestHandler):
    """``GET /health`` and ``POST /compute`` for the server's reward (``self.server.reward``)."""

    server_version = "flowopd-reward/1"

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        if self.path.rstrip("/") != "/health":
            return self._send(404, {"error": f"no {self.path}: use GET /health or POST /compute"})
        self._send(200, {"status": "ok", "reward": self.server.reward_name})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.rstrip("/") != "/compute":
            return self._send(404, {"error": f"no {self.path}: use GET /health or POST /compute"})
        try:
            size = int(self.headers.get("Content-Length", "0"))
            if not 0 < size <= MAX_REQUEST_BYTES:
                raise BadRequest(f"Content-Length {size} is not in 1..{MAX_REQUEST_BYTES}")
            images, prompts, metadata = parse_request(self.rfile.read(size))
        except ValueError as err:  # BadRequest, or a Content-Length that is not a number
            return self._send(400, {"error": str(err)})
        try:
            with self.server.lock:  # one batch at a time: model-backed rewards are not thread-safe
                scores = [float(s) for s in self.server.reward(images, prompts, metadata)]
        except Exception as err:  # the reward's failure is the client's answer; the server keeps serving
            log.exception("reward %s failed", self.server.reward_name)
            return self._send(500, {"error": f"{type(err).__name__}: {err}"})
        if len(scores) != len(images) or not all(math.isfinite(s) for s in scores):
            return self._send(500, {"error": f"the reward gave {len(scores)} scores (not all finite) for "
                                             f"{len(images)} images"})
        self._send(200, {"scores": scores})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (its timeout)
            log.warning("%s went away before its answer (%d)", self.address_string(), status)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the http.server signature)
        log.debug("%s %s", self.address_string(), format % args)


def make_server(reward: RewardFn, host: str = "127.0.0.1", port: int = 0, name: str = "reward") -> ThreadingHTTPServer:
    """A (not yet serving) HTTP server of ``reward``; ``port=0`` picks a free port (``server.server_address``)."""
    server = ThreadingHTTPServer((host, port), RewardHandler)
    server.daemon_threads = True
    server.reward, server.reward_name, server.lock = reward, name, threading.Lock()
    return server


def serve(name: str, host: str = "127.0.0.1", port: int = 18087) -> None:
    """Serve the reward ``name`` (any name :func:`flowopd.rewards.get_reward` takes) until interrupted."""
    from . import get_reward

    server = make_server(get_reward(name), host, port, name)
    log.info("reward %s served at http://%s:%d (POST /compute, GET /health)", name, host, server.server_address[1])
    try:
        server.serve_forever()
    finally:
        server.server_close()
