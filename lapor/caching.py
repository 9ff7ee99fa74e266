"""Answers of the API are not kept by caches: `Cache-Control: no-store` on every answer under /api/.

What `GET /api/complaints/{id}` answers depends on who asks (the reporter with `X-Reporter-Token` reads a confidential
report the public gets a 404 for; the national admin reads the reporter's name, NIK and phone number), and the
other API answers are figures, queues and histories for one role. Without a word on caching a browser kept them in
its disk cache (on a shared computer, for the next person), and a shared cache may keep an answer and give it to
the next request of the same URL: only requests with `Authorization` are kept from shared caches by HTTP itself
(RFC 9111, section 3.5), not those with `X-Reporter-Token`. A route that sets its own `Cache-Control` keeps it (the
live stream's `no-store`; a public figure could allow caching). The citizen pages say `no-cache` themselves
(`services.intake.web`).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_PREFIX = "/api/"
NO_STORE = "no-store"


class NoStoreMiddleware:
    """`Cache-Control: no-store` on every answer to a path under /api/ that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return

        async def send_not_stored(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "cache-control" not in headers:
                    headers["Cache-Control"] = NO_STORE
            await send(message)

        await self.app(scope, receive, send_not_stored)
