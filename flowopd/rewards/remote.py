"""A reward computed by a server (GenEval's detector, DeQA, a VLM judge): HTTP + JSON, images as base64 PNG.

The protocol (:mod:`flowopd.rewards.serve` implements the server side for any registered reward)::

    GET  {url}/health   -> 200 {"status": "ok", ...}
    POST {url}/compute  <- {"images": ["<base64 PNG>", ...], "prompts": ["...", ...], "metadata": [{...}, ...]}
                        -> 200 {"scores": [0.73, ...]}          one finite number per image, in order
                        -> 4xx/5xx {"error": "what went wrong"}

It follows Flow-Factory's remote reward servers (``/compute``, ``/health``, base64 images, "prompts" and
"images" keys), so their answer ``{"rewards": [...]}`` and error ``{"detail": ...}`` are read too. Answers are
parsed as JSON only: a server's bytes are never unpickled (Flow-GRPO's reward servers exchange pickles).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from PIL import Image

from ..reward_names import TOKEN_ENV
from .images import as_uint8_list

log = logging.getLogger(__name__)
MAX_ANSWER_BYTES = 16 * 2**20  # scores are a few bytes each; anything larger is not an answer
# Reward servers sit on the cluster's own network: an environment proxy would only intercept (or refuse) them.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RewardServerError(ConnectionError):
    """A reward server is down, too slow, or answered something that is not ``{"scores": [...]}``; the message
    names the URL, what went wrong and the fix. The run's last checkpoint is kept (scoring precedes the step)."""


def encode_png(image) -> str:
    """A uint8 [H, W, 3] array or PIL image -> base64 of its PNG (lossless, so a server sees the exact pixels)."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    pil.convert("RGB").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def parse_scores(data: bytes, n: int) -> list[float]:
    """The scores of a ``/compute`` answer, or ValueError saying what is wrong with it."""
    try:
        answer = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"its answer is not JSON (it starts {data[:60]!r})") from None
    if not isinstance(answer, dict):
        raise ValueError(f"its answer is a JSON {type(answer).__name__}, not an object with \"scores\"")
    scores = answer.get("scores", answer.get("rewards"))  # "rewards": Flow-Factory's servers
    if not isinstance(scores, list):
        raise ValueError(f"its answer has no \"scores\" list (keys: {', '.join(map(str, answer)) or 'none'})")
    if len(scores) != n:
        raise ValueError(f"it returned {len(scores)} scores for {n} images")
    for i, s in enumerate(scores):
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            raise ValueError(f"score {i} is {s!r}, not a finite number")
    return [float(s) for s in scores]


def _error_text(data: bytes) -> str:
    try:
        answer = json.loads(data)
        if isinstance(answer, dict) and (answer.get("error") or answer.get("detail")):
            return str(answer.get("error") or answer.get("detail"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    return data[:200].decode("utf-8", "replace").strip() or "no message"


class RemoteReward:
    """A reward callable ``(images, prompts, metadata) -> scores`` that asks a reward server.

    Args:
        url: the server's base address, e.g. ``http://127.0.0.1:18085`` (``/compute`` and ``/health`` are added).
        timeout: seconds to wait for one answer (a batch's scores).
        retries: attempts per batch when the server is down, times out or answers 5xx (1 = no retry).
        backoff: seconds before the second attempt, doubled before each next one.
        batch_size: images per request.
        scale: the server's scores are divided by this (5 for DeQA's 1-5), so rewards are about in [0, 1].

    Example (a running server, e.g. ``flowopd reward serve --reward quality --port 8000``)::

        reward = RemoteReward("http://127.0.0.1:8000", timeout=30)
        reward.health()                          # {"status": "ok", "reward": "quality"}
        reward(images, prompts, metadata)        # [0.82, 0.41, ...]
    """

    def __init__(self, url: str, *, timeout: float = 120.0, retries: int = 3, backoff: float = 1.0,
                 batch_size: int = 16, scale: float = 1.0, token: str | None = None):
        url, _, query = url.partition("?")  # remote:URL?token=TOKEN
        params = urllib.parse.parse_qs(query)
        token = token or (params.get("token") or [None])[0] or os.environ.get(TOKEN_ENV) or None
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"reward server address {url!r} is invalid: use http://HOST:PORT")
        if timeout <= 0 or retries < 1 or backoff < 0 or batch_size < 1 or not scale > 0:
            raise ValueError(f"invalid settings for reward server {url}: timeout={timeout} (> 0), retries={retries} "
                             f"(>= 1), backoff={backoff} (>= 0), batch_size={batch_size} (>= 1), scale={scale} (> 0)")
        self.url, self.timeout, self.retries, self.token = url.rstrip("/"), timeout, retries, token
        self.backoff, self.batch_size, self.scale = backoff, batch_size, scale

    def __repr__(self) -> str:
        return f"RemoteReward({self.url!r})"

    def __call__(self, images, prompts: list[str], metadata: list[dict]) -> list[float]:
        arrays = as_uint8_list(images)
        if not len(arrays) == len(prompts) == len(metadata):
            raise ValueError(f"{len(arrays)} images, {len(prompts)} prompts and {len(metadata)} metadata records: "
                             "give one of each per image")
        scores: list[float] = []
        for start in range(0, len(arrays), self.batch_size):
            end = start + self.batch_size
            scores += self.compute(arrays[start:end], prompts[start:end], metadata[start:end])
        return [s / self.scale for s in scores]

    def compute(self, images: Sequence, prompts: Sequence[str], metadata: Sequence[dict]) -> list[float]:
        """One ``/compute`` request for a batch (uint8 arrays or PIL images): the server's raw scores."""
        try:
            body = json.dumps({"images": [encode_png(im) for im in images], "prompts": list(prompts),
                               "metadata": list(metadata)}).encode()
        except (TypeError, ValueError) as err:
            raise ValueError(f"the prompts' metadata cannot be sent to reward server {self.url} as JSON ({err}): "
                             "keep records to strings, numbers, lists and objects") from None
        data = self._request("/compute", body)
        try:
            return parse_scores(data, len(images))
        except ValueError as err:
            raise RewardServerError(f"reward server {self.url} answered garbage to /compute: {err}. A reward server "
                                    'must answer {"scores": [one finite number per image]}; check that the URL is '
                                    "a reward server's (flowopd reward serve)") from None

    def health(self) -> dict:
        """``GET /health``: the server's JSON status, or :class:`RewardServerError` when it is down."""
        data = self._request("/health", None)
        try:
            answer = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RewardServerError(f"reward server {self.url} answered /health with something that is not JSON "
                                    f"(it starts {data[:60]!r}): is this URL a reward server's?") from None
        return answer if isinstance(answer, dict) else {"status": answer}

    def _request(self, path: str, body: bytes | None) -> bytes:
        """The answer's bytes after up to ``retries`` attempts; RewardServerError naming the URL and the fix."""
        url, problem = self.url + path, ""
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                             headers=headers)
            try:
                deadline = time.monotonic() + self.timeout  # for the whole answer, not for each read
                with _OPENER.open(request, timeout=self.timeout) as answer:
                    return read_by(answer, deadline, MAX_ANSWER_BYTES)
            except urllib.error.HTTPError as err:
                text = _error_text(err.read(4096))
                if err.code < 500:  # the request itself is wrong: asking again gives the same answer
                    raise RewardServerError(f"reward server {url} refused the request (HTTP {err.code}: {text}); "
                                            "check that the URL is a reward server's and the server's log") from None
                problem = f"it failed (HTTP {err.code}: {text})"
            except TimeoutError:  # socket.timeout is TimeoutError since Python 3.10
                problem = f"it did not answer within {self.timeout:g} s"
            except urllib.error.URLError as err:
                reason = err.reason
                if isinstance(reason, TimeoutError):
                    problem = f"it did not answer within {self.timeout:g} s"
                elif isinstance(reason, ConnectionRefusedError):
                    problem = "it is down (connection refused)"
                else:
                    problem = f"it cannot be reached ({reason})"
            except (ConnectionError, http.client.HTTPException) as err:  # closed mid-answer, or not HTTP
                problem = f"the connection broke ({type(err).__name__}: {err})"
            log.warning("reward server %s, attempt %d of %d: %s", url, attempt + 1, self.retries, problem)
        raise RewardServerError(f"reward server {self.url}: {problem}, after {self.retries} attempt(s): "
                                f"{_fix(problem)} (a training run keeps its last checkpoint: run the same command "
                                "again to resume)")


def read_by(answer, deadline: float, limit: int) -> bytes:
    """The answer's body (at most ``limit`` bytes), read before ``deadline`` (``time.monotonic()``): a server that
    trickles a byte at a time cannot keep a call alive past its timeout.

    Raises:
        TimeoutError: the deadline passed before the body ended.
    """
    sock = getattr(getattr(getattr(answer, "fp", None), "raw", None), "_sock", None)
    chunks, size = [], 0
    while size < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the answer did not end in time")
        if sock is not None:
            sock.settimeout(left)
        chunk = answer.read1(min(65536, limit - size)) if hasattr(answer, "read1") else answer.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit]


def _fix(problem: str) -> str:
    if "answer within" in problem:
        return "give it more time (RemoteReward timeout), send smaller batches (batch_size) or check its load"
    if "HTTP" in problem or "broke" in problem:
        return "see the server's log"
    return "start it (e.g. flowopd reward serve --reward NAME --port PORT) or fix the URL in the rewards"
