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
import hmac
import io
import json
import logging
import math
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from . import RewardFn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (``flowopd reward serve`` flags raise them); over a limit: HTTP 413.

    Attributes:
        max_request_bytes: the body (64 SD3.5 images of 512 px as PNG are about 30 MiB).
        max_images: images per request.
        max_pixels: decoded pixels per request, summed over its images (a flat 6000 x 6000 PNG is 36 M pixels in
            a few KB: the body's size says nothing of the memory its decode takes).
        timeout_s: a connection silent this long is dropped (a client that sends part of its body holds nothing).
        max_connections: requests served at once; one more is answered 503.
    """

    max_request_bytes: int = 64 * 2**20
    max_images: int = 256
    max_pixels: int = 64 * 2**20
    timeout_s: float = 30.0
    max_connections: int = 8


class BadRequest(ValueError):
    """A ``/compute`` request that is not ``{"images": [...], "prompts": [...], "metadata": [...]}``."""


class TooLarge(BadRequest):
    """A request over one of the server's :class:`Limits` (HTTP 413)."""


def decode_image(text: object, index: int, pixels_left: int | None = None) -> Image.Image:
    """One base64 PNG/JPEG string -> an RGB PIL image, or BadRequest naming the image; TooLarge when its size
    (read from its header, before decoding) passes ``pixels_left``."""
    if not isinstance(text, str):
        raise BadRequest(f"images[{index}] is a {type(text).__name__}, not a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
        with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as image:
            width, height = image.size
            if pixels_left is not None and width * height > pixels_left:
                raise TooLarge(f"images[{index}] is {width} x {height}: the request's images pass the server's "
                               "limit of decoded pixels (--max-pixels); send fewer or smaller images")
            return image.convert("RGB")
    except TooLarge:
        raise
    except (binascii.Error, OSError, ValueError, Image.DecompressionBombError) as err:  # the bomb: a huge image
        raise BadRequest(f"images[{index}] is not a base64 PNG or JPEG ({err})") from None


def parse_request(body: bytes, limits: Limits = Limits()) -> tuple[list[Image.Image], list[str], list[dict]]:
    """The images, prompts and metadata of a ``/compute`` body; metadata defaults to ``{}`` per image.

    Raises:
        BadRequest: the body is not the protocol's JSON. TooLarge: it passes ``limits``.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"the body is not JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise BadRequest('send a JSON object {"images": [base64 PNG, ...], "prompts": [...], "metadata": [...]}')
    n = len(data["images"])
    if n > limits.max_images:
        raise TooLarge(f"{n} images in one request: the server takes at most {limits.max_images} (--max-images); "
                       "send smaller batches")
    prompts = data.get("prompts")
    metadata = data.get("metadata") or [{} for _ in range(n)]
    if not isinstance(prompts, list) or len(prompts) != n or not all(isinstance(p, str) for p in prompts):
        raise BadRequest(f'"prompts" must be a list of {n} strings, one per image')
    if not isinstance(metadata, list) or len(metadata) != n or not all(isinstance(m, dict) for m in metadata):
        raise BadRequest(f'"metadata" must be a list of {n} objects, one per image (or left out)')
    images, left = [], limits.max_pixels
    for i, text in enumerate(data["images"]):
        images.append(decode_image(text, i, left))
        left -= images[-1].width * images[-1].height
    return images, prompts, metadata


class RewardHandler(BaseHTTPRequestHandler):
    """``GET /health`` and ``POST /compute`` for the server's reward (``self.server.reward``)."""

    server_version = "flowopd-reward/1"

    def setup(self) -> None:
        self.timeout = self.server.limits.timeout_s  # the socket's: a stalled request is dropped
        super().setup()

    def authorized(self) -> bool:
        """Whether the request carries the server's token (``Authorization: Bearer TOKEN``), when it has one."""
        token = self.server.token
        given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return not token or hmac.compare_digest(given.encode(), token.encode())

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        if self.path.rstrip("/") != "/health":
            return self._send(404, {"error": f"no {self.path}: use GET /health or POST /compute"})
        self._send(200, {"status": "ok", "reward": self.server.reward_name})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.rstrip("/") != "/compute":
            return self._send(404, {"error": f"no {self.path}: use GET /health or POST /compute"})
        if not self.authorized():
            return self._send(401, {"error": "this server needs its token: send Authorization: Bearer TOKEN "
                                             "(remote:URL?token=TOKEN, or $FLOWOPD_REWARD_TOKEN)"})
        limits = self.server.limits
        try:
            size = int(self.headers.get("Content-Length", "0"))
            if size > limits.max_request_bytes:
                raise TooLarge(f"Content-Length {size} passes the server's limit of {limits.max_request_bytes} "
                               "bytes (--max-request-mb); send smaller batches")
            if size <= 0:
                raise BadRequest(f"Content-Length {size} is not a positive number of bytes")
            images, prompts, metadata = parse_request(self.rfile.read(size), limits)
        except TooLarge as err:
            return self._send(413, {"error": str(err)})
        except ValueError as err:  # BadRequest, or a Content-Length that is not a number
            return self._send(400, {"error": str(err)})
        except TimeoutError:  # the client stopped sending: nothing to answer
            log.warning("%s stalled in its request body: dropped", self.address_string())
            self.close_connection = True
            return
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


class BoundedServer(ThreadingHTTPServer):
    """A threading server that serves at most ``limits.max_connections`` requests at once and answers one more
    with 503 at once, instead of starting threads without bound."""

    daemon_threads = True

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            self.refuse_busy(request)
            return
        super().process_request(request, client_address)

    def refuse_busy(self, request, drain_s: float = 0.5, drain_bytes: int = 1 << 20) -> None:
        """Answer 503 and close. The answer goes out first, then what the client is still sending is read and
        dropped (at most ``drain_bytes`` for ``drain_s``, in the accepting thread), so that closing does not
        reset a connection whose client is still writing its body and make it lose the answer."""
        body = b'{"error": "the server is busy (--max-connections): try again"}'
        deadline, drained = time.monotonic() + drain_s, 0
        try:
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            request.shutdown(socket.SHUT_WR)
            while drained < drain_bytes and (left := deadline - time.monotonic()) > 0:
                request.settimeout(left)
                chunk = request.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:  # the client went away or went quiet: nothing more to do for it
            pass
        self.shutdown_request(request)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def make_server(reward: RewardFn, host: str = "127.0.0.1", port: int = 0, name: str = "reward", *,
                limits: Limits = Limits(), token: str | None = None) -> ThreadingHTTPServer:
    """A (not yet serving) HTTP server of ``reward``; ``port=0`` picks a free port (``server.server_address``);
    ``token``: ``/compute`` answers 401 without ``Authorization: Bearer TOKEN``."""
    server = BoundedServer((host, port), RewardHandler)
    server.reward, server.reward_name, server.lock = reward, name, threading.Lock()
    server.limits, server.token, server.slots = limits, token, threading.BoundedSemaphore(limits.max_connections)
    return server


def serve(name: str, host: str = "127.0.0.1", port: int = 18087, *, limits: Limits = Limits(),
          token: str | None = None) -> None:
    """Serve the reward ``name`` (any name :func:`flowopd.rewards.get_reward` takes) until interrupted."""
    from . import get_reward

    server = make_server(get_reward(name), host, port, name, limits=limits, token=token)
    log.info("reward %s served at http://%s:%d (POST /compute, GET /health)", name, host, server.server_address[1])
    try:
        server.serve_forever()
    finally:
        server.server_close()
