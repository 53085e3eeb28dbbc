"""A notification when a run ends: a small JSON POSTed to the data folder's webhook URL (set by ``app.py
--webhook URL`` or ``flowopd runs webhook URL``), from a daemon thread with a timeout and no retries, so that
a slow or dead endpoint never holds a worker.

The JSON: ``{"run_id", "name", "stage", "status", "error", "step", "metrics"}`` (the run's latest value of each
metric).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from urllib.parse import urlparse

log = logging.getLogger(__name__)
WEBHOOK_SETTING = "webhook_url"
TIMEOUT_S = 5.0


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL; ValueError naming the fix otherwise."""
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"webhook {url!r} is not an http(s) URL: give e.g. https://hooks.example.com/flowopd "
                         "(or an empty one to turn notifications off)")
    return url.strip()


def post(url: str, payload: dict, timeout: float = TIMEOUT_S) -> threading.Thread:
    """POST ``payload`` as JSON to ``url`` in a daemon thread (one try, ``timeout`` seconds); returns the thread.
    A failure is logged, never raised: the run is recorded already."""

    def send() -> None:
        request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (the user's own URL)
                log.info("webhook %s answered %s for run %s", url, answer.status, payload.get("run_id"))
        except Exception as err:  # a notification must never fail a worker
            log.warning("webhook %s failed for run %s: %s", url, payload.get("run_id"), err)

    thread = threading.Thread(target=send, name="flowopd-webhook", daemon=True)
    thread.start()
    return thread


def notify_end(store, run_id: str, timeout: float = TIMEOUT_S) -> threading.Thread | None:
    """Post the ended run's summary to the data folder's webhook, if one is set; returns the sending thread."""
    url = store.get_setting(WEBHOOK_SETTING)
    if not url:
        return None
    run = store.get_run(run_id)
    payload = {"run_id": run.id, "name": run.name, "stage": run.stage, "status": run.status, "error": run.error,
               "step": run.step, "metrics": store.latest_metrics(run_id)}
    return post(url, payload, timeout)
