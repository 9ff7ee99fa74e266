"""HEAD requests: the GET of the same URL without its body (RFC 9110 §9.3.2; servers must support both).

FastAPI's routes answer only the methods they declare, so a `curl -I` or a link checker got a 405. Rather than
declare HEAD on every GET route (it would double the OpenAPI document), `HeadMiddleware` hands the app a GET and
sends the client its status and headers only: `Content-Length` says what the GET would send, authorization and
validation are the GET's. A response that streams (the live feed) is ended after its headers: the app is told the
client went away, so it stops instead of producing a feed nobody reads.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadMiddleware:
    """Innermost of the middleware, so the access log and metrics still say HEAD."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        answered = False

        async def receive_until_answered() -> Message:
            if answered:
                return {"type": "http.disconnect"}
            return await receive()

        async def send_headers_only(message: Message) -> None:
            nonlocal answered
            if message["type"] != "http.response.body":
                await send(message)
            elif not answered:
                answered = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        # The app gets a copy: the server reads the request's method from the scope it made as it sends the answer
        # (a HEAD answer has no body, whatever Content-Length says; changed in place, uvicorn's httptools server
        # expected the body and reset the connection, and chunked a stream's end into the next answer). The route
        # the router matched is copied back for the access log and metrics.
        child = {**scope, "method": "GET"}
        try:
            await self.app(child, receive_until_answered, send_headers_only)
        finally:
            if "route" in child:
                scope["route"] = child["route"]
