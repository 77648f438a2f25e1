"""Runs the FastAPI part of the gateway (order look-ups, health, docs) for a request the
connection has read whole: the body is handed over at once, the answer collected whole (these
answers are small) and framed by the connection like every other."""

import asyncio
import logging
from typing import Any

from crud_common.observe import ASGIApp, Message

from .http1 import Request, Response

log = logging.getLogger(__name__)

# Framing and hop-by-hop fields are the connection's to write.
_DROPPED = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})


async def call(app: ASGIApp, request: Request, server: tuple[str, int]) -> tuple[Response, Any]:
    """(the app's answer, the route it matched or None)."""
    raw_path = request.target.partition(b"?")[0]
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1" if request.http11 else "1.0",
        "server": server,
        "client": (request.client, 0),
        "scheme": "http",
        "root_path": "",
        "headers": request.headers,
        "state": {},
        "method": request.method,
        "path": request.path,
        "raw_path": raw_path,
        "query_string": request.query,
    }
    pending = [{"type": "http.request", "body": request.body, "more_body": False}]
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    body: list[bytes] = []

    async def receive() -> Message:
        if pending:
            return pending.pop()
        await asyncio.get_running_loop().create_future()  # no more: until the app stops
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            pairs = ((name.lower(), value) for name, value in message.get("headers", ()))
            headers = [(name, value) for name, value in pairs if name not in _DROPPED]
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    except Exception:
        if not body:
            raise
        # Starlette answers an unexpected error (500, crud_common.handlers) and then raises it
        # again for the server to log: the answer stands, the connection stays usable.
        log.exception("unhandled error")
    return Response(status, headers, b"".join(body)), scope.get("route")
