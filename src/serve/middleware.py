"""The one ASGI middleware around every route: body limit, body read timeout, metrics, shutdown draining,
and a last line of defence that answers an unexpected error with a 500 that says nothing about the
request (and logs nothing of its values).

It is a pure ASGI middleware (no ``BaseHTTPMiddleware``): it adds a few microseconds per request and
never buffers a body.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback

import orjson
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadscore.serve.metrics import ServeMetrics

log = logging.getLogger("leadscore.serve")

#: Set when the process received SIGTERM (``serve.main``): ``/ready`` answers 503 so load balancers stop
#: sending, and every response asks the client to close its connection, while requests already
#: received are still answered.
DRAINING = threading.Event()

JSON = b"application/json"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes (LEADSCORE_MAX_BODY_BYTES)")


class BodyTimeout(Exception):
    """The client stopped sending its body (``LEADSCORE_READ_TIMEOUT_SECONDS``)."""


class Guard:
    """Refuse bodies over the limit (declared or streamed) with 413 and bodies that stall with 408,
    record request count and latency per route template, and close connections while draining."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, max_body_bytes: int, read_timeout: float) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        limit = self.max_body
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = limit + 1
                if declared > limit:
                    self.metrics.body_too_large.inc()
                    await self._answer(send, 413, BodyTooLarge(limit).detail)
                    self._record(scope, 413, start)
                    return
                break
        received = 0
        timeout = self.read_timeout

        async def guarded_receive() -> Message:
            nonlocal received
            try:
                async with asyncio.timeout(timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    self.metrics.body_too_large.inc()
                    raise BodyTooLarge(limit)  # a 413 through the app's HTTPException handler
            return message

        started = False

        async def send_status(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                if DRAINING.is_set():
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        try:
            await self.app(scope, guarded_receive, send_status)
        except BodyTooLarge as exc:
            status = 413
            if not started:
                await self._answer(send, 413, exc.detail)
        except BodyTimeout:
            status = 408
            if not started:
                await self._answer(send, 408, f"request body not received within {timeout:g} s")
        except Exception as exc:
            # Type and code location only: an exception's message may quote request values.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("internal error on %s: %s\n%s", _route(scope), type(exc).__name__, frames)
            status = 500
            if not started:
                await self._answer(send, 500, "internal error")
        finally:
            self._record(scope, status, start)

    @staticmethod
    async def _answer(send: Send, status: int, detail: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", JSON), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps({"detail": detail})})

    def _record(self, scope: Scope, status: int, start: float) -> None:
        route = _route(scope)
        method = scope["method"] if scope["method"] in _METHODS else "other"
        self.metrics.requests.labels(route, method, str(status)).inc()
        self.metrics.latency.labels(route).observe(time.perf_counter() - start)


def _route(scope: Scope) -> str:
    """The route template (bounded label values), ``other`` for anything unrouted."""
    return getattr(scope.get("route"), "path", None) or "other"
