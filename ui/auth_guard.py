"""Nothing of the app for a visitor who has not logged in.

Gradio 6.31 serves its login page (``GET /``, and any page path) with the app's whole API description embedded
(``window.gradio_api_info``: every endpoint, its parameters and their choices), logged in or not
(``gradio/routes.py``, ``main``). :class:`HideApiInfoWhenLoggedOut` blanks that object in HTML responses until
the visitor holds a valid login cookie; every API route already refuses them (401).
"""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)
BLANK = b"window.gradio_api_info = {};</script>"


def logged_in(app, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request carries a login cookie of ``app`` (a gradio ``App``) that it issued; True when the
    app has no auth."""
    if getattr(app, "auth", None) is None and getattr(app, "auth_dependency", None) is None:
        return True
    cookie = SimpleCookie()
    for name, value in headers:
        if name == b"cookie":
            cookie.load(value.decode("latin-1"))
    suffix = getattr(app, "cookie_id", "")
    for name in (f"access-token-{suffix}", f"access-token-unsecure-{suffix}"):
        if name in cookie and cookie[name].value in getattr(app, "tokens", {}):
            return True
    return False


class HideApiInfoWhenLoggedOut:
    """ASGI middleware (pass it in ``launch(app_kwargs={"middleware": [Middleware(...)]})``)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET" or logged_in(scope.get("app"),
                                                                                 scope.get("headers", [])):
            await self.app(scope, receive, send)
            return
        start: dict = {}
        body: list[bytes] = []

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
                html = any(k == b"content-type" and v.startswith(b"text/html") for k, v in message["headers"])
                if not html:  # not a page: pass everything through untouched
                    start["pass"] = True
                    await send(message)
                return
            if start.get("pass"):
                await send(message)
                return
            body.append(message.get("body", b""))
            if not message.get("more_body"):
                data = API_INFO.sub(BLANK, b"".join(body))
                headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
                headers.append((b"content-length", str(len(data)).encode()))
                await send({"type": "http.response.start", "status": start["status"], "headers": headers})
                await send({"type": "http.response.body", "body": data})

        await self.app(scope, receive, capture)
