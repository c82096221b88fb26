"""ASGI middleware: overload shedding, the API key of write endpoints, body size cap and
read timeout, per-endpoint metrics (in that order).

The key is checked *before* the body is read. Reading first let anyone without a key hold a
slot of the in-flight limit for as long as they kept a socket open: 70 sockets that sent the
headers of a 100 kB ``POST /v1/events`` and one byte of body made ``/healthz``, ``/readyz`` and
every read answer 503 (issue 15). A client with a key still cannot hold a slot for long: the
whole body must arrive within ``body_timeout_s`` (408 otherwise). Health probes are never
counted against the limit nor shed: an orchestrator must see a busy process as alive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from fastapi.dependencies.models import Dependant
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.errors import AuthError
from serving.deps import check_key, read_access, require_key
from serving.errors import error_body, status_of
from serving.metrics import Metrics

#: Paths answered whatever the load: liveness, readiness, metrics.
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
#: Seconds a client has to send a whole request body.
BODY_TIMEOUT_S = 10.0
#: Methods that carry no body worth guarding (their key, if any, is checked by the route).
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _send_json(send: Send, status: int, body: dict[str, Any], *, close: bool = False) -> None:
    payload = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    if status == 401:
        headers.append((b"www-authenticate", b"X-API-Key"))
    if close:
        # the rest of the body may still be on its way: the connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class GuardMiddleware:
    """Refuse work past ``max_in_flight`` (503 at once), a write without a valid key before its
    body is read (401/403), bodies past ``max_body`` (413) or slower than ``body_timeout_s``
    (408), and record each request's count and latency under its route template.

    Parameters
    ----------
    app
        The application.
    max_in_flight
        Requests handled at once (health probes, :data:`PROBES`, are not counted).
    max_body
        Largest request body, in bytes.
    metrics
        Where counts and latencies go.
    body_timeout_s
        Seconds a client has to send the whole body of a request.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        max_body: int,
        metrics: Metrics,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ):
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_body = max_body
        self.metrics = metrics
        self.body_timeout_s = body_timeout_s
        self.in_flight = 0  # touched only on the event loop's thread
        # (route, needs require_key, needs read_access), built on the first request with a body
        self._routes: list[tuple[Any, bool, bool]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = scope.get("path") not in PROBES
        if counted and self.in_flight >= self.max_in_flight:
            self.metrics.overloaded.inc()
            await _send_json(
                send,
                503,
                {"error": "OverloadedError", "message": "too many requests in flight; retry"},
            )
            return
        if counted:
            self.in_flight += 1
        start = time.perf_counter()
        status = 500
        try:
            refused = await self._refuse_without_key(scope, send)
            if refused:
                status = refused
                return
            bounded = await self._bounded_body(scope, receive, send)
            if isinstance(bounded, int):
                status = bounded
                return

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await self.app(scope, bounded, send_wrapper)
        finally:
            if counted:
                self.in_flight -= 1
            route = scope.get("route")
            # the template without converters ("{user_id}", not "{user_id:path}"): stable labels
            endpoint = getattr(route, "path_format", None) or "unmatched"
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    async def _refuse_without_key(self, scope: Scope, send: Send) -> int | None:
        """Answer 401/403 (and return it) for a request with a body whose route needs a key
        that it lacks; ``None`` to go on. The route's own dependency checks again: this one
        only makes sure nothing is read or held for a caller without a key."""
        if scope["method"] in _BODILESS:
            return None
        state = getattr(getattr(scope.get("app"), "state", None), "recsys", None)
        keys = self._route_keys(scope) if state is not None else None
        if state is None or keys is None:
            return None  # not started, or no route: the app answers as it would
        needs_key, needs_read_key = keys
        if not (needs_key or (needs_read_key and state.settings.require_key_for_reads)):
            return None
        given = next((v for n, v in scope.get("headers", ()) if n == b"x-api-key"), None)
        try:
            check_key(state, given.decode("latin-1") if given is not None else None)
        except AuthError as exc:
            status = status_of(exc)
            await _send_json(send, status, error_body(exc), close=True)
            return status
        return None

    def _route_keys(self, scope: Scope) -> tuple[bool, bool] | None:
        """For the route ``scope`` goes to: whether it depends on :func:`require_key`, and on
        :func:`read_access` (``None`` when no route matches). Read from the routes' declared
        dependencies, so the routes stay the one place that says which need a key."""
        if self._routes is None:
            app_routes = getattr(getattr(scope.get("app"), "router", None), "routes", ())
            self._routes = [(r, *_key_dependencies(r)) for r in _flat_routes(app_routes)]
        for route, needs_key, needs_read_key in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return needs_key, needs_read_key
        return None

    async def _bounded_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | int:
        """Read the whole body (at most ``max_body`` bytes, within ``body_timeout_s``) and
        replay it; the status sent instead (413, 408) when it is too large or too slow."""
        if scope["method"] in _BODILESS:
            return receive
        too_big = {
            "error": "PayloadTooLarge",
            "message": f"request body is larger than {self.max_body} bytes",
        }
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                await _send_json(send, 413, too_big, close=True)
                return 413
        chunks: list[bytes] = []
        size = 0
        more = True
        # one deadline for the whole body: a client dripping a byte a second gains nothing
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        while more:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(remaining, 0.0))
            except TimeoutError:
                slow = {
                    "error": "RequestTimeout",
                    "message": f"the request body did not arrive within {self.body_timeout_s:g} s",
                }
                await _send_json(send, 408, slow, close=True)
                return 408
            if message["type"] == "http.disconnect":
                return receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _send_json(send, 413, too_big, close=True)
                return 413
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


def _flat_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route an application dispatches to, through included routers: recent FastAPI
    keeps an included router as one entry that yields its effective routes."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            yield from _flat_routes(contexts())
        else:
            yield route


def _key_dependencies(route: Any) -> tuple[bool, bool]:
    """Whether ``route`` depends on :func:`require_key`, and on :func:`read_access`."""
    calls: set[Any] = set()
    dependant = getattr(route, "dependant", None)
    stack: list[Dependant] = [dependant] if dependant is not None else []
    while stack:
        node = stack.pop()
        calls.add(node.call)
        stack.extend(node.dependencies)
    return require_key in calls, read_access in calls
