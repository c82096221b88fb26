"""ASGI middleware: overload shedding, body size cap, per-endpoint metrics (in that order)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.metrics import Metrics


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class GuardMiddleware:
    """Refuse work past ``max_in_flight`` (503 at once) and bodies past ``max_body`` (413),
    and record each request's count and latency under its route template."""

    def __init__(self, app: ASGIApp, *, max_in_flight: int, max_body: int, metrics: Metrics):
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_body = max_body
        self.metrics = metrics
        self.in_flight = 0  # touched only on the event loop's thread

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.metrics.overloaded.inc()
            await _send_json(
                send,
                503,
                {"error": "OverloadedError", "message": "too many requests in flight; retry"},
            )
            return
        self.in_flight += 1
        start = time.perf_counter()
        status = 500
        try:
            bounded = await self._bounded_body(scope, receive, send)
            if bounded is None:
                status = 413
                return

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await self.app(scope, bounded, send_wrapper)
        finally:
            self.in_flight -= 1
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    async def _bounded_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Read the whole body (at most ``max_body`` bytes) and replay it; None after a 413."""
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return receive
        too_big = {
            "error": "PayloadTooLarge",
            "message": f"request body is larger than {self.max_body} bytes",
        }
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                await _send_json(send, 413, too_big)
                return None
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _send_json(send, 413, too_big)
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
