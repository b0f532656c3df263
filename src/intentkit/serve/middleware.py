"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): bearer auth and the body-size limit.

Both answer with the error table's JSON body before the app runs, so an unauthenticated or
oversized request never costs a JSON parse.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi.responses import JSONResponse

from intentkit.serve.http_errors import ServeError

#: Routes open without the bearer token: load balancers and SageMaker probe them unauthenticated.
OPEN_PATHS = frozenset({"/ping", "/health"})


async def _send_error(send: Any, scope: dict, receive: Any, exc: ServeError) -> None:
    resp = JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)
    await resp(scope, receive, send)


class AuthMiddleware:
    """Bearer-token check for every route but the open paths (constant-time comparison)."""

    def __init__(self, app: Any, api_key: str, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        """Wrap ``app``; ``open_paths`` (exact paths) answer without the token."""
        self.app = app
        self.expected = f"Bearer {api_key}".encode()
        self.open_paths = open_paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Answer 401 unless the Authorization header carries the token."""
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            got = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(got, self.expected):
                exc = ServeError(
                    "unauthorized",
                    "missing or wrong bearer token: send 'Authorization: Bearer <api key>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await _send_error(send, scope, receive, exc)
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for big bodies: by Content-Length up front, or while a chunked body streams."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Pass the request on with a byte-counting ``receive``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = ServeError(
            "payload_too_large", f"request body over the {self.max_bytes}-byte limit"
        )
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_error(send, scope, receive, too_large)
            return
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large  # surfaces from request.body() into the 413 handler
            return message

        await self.app(scope, limited_receive, send)


class DrainMiddleware:
    """While ``state.draining`` (set by SIGUSR1 when ``intentkit promote`` switches a local
    endpoint away from this server), every response says ``Connection: close``, so keep-alive
    clients reconnect, and so reach the successor, between requests. Closing idle keep-alive
    connections at shutdown instead races a client that sends at that instant (a reset)."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Pass through; while draining, answer with ``Connection: close``."""
        if scope["type"] != "http" or not getattr(self.state, "draining", False):
            await self.app(scope, receive, send)
            return

        async def closing_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing_send)
