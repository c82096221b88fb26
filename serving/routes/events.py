"""Event intake: one event or a batch, written durably before the answer."""

from __future__ import annotations

import time
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Body, Depends

from recsys.data.ingest import EVENT_FIELDS, parse_event
from recsys.errors import DataError
from serving.deps import State, require_key
from serving.errors import NOT_JSON
from serving.responses import OrjsonResponse
from serving.schemas import EventsOut
from serving.state import ServingState

router = APIRouter(prefix="/v1", tags=["events"], dependencies=[Depends(require_key)])

_EXAMPLE = {
    "event_id": "e-1",
    "user_id": "12347",
    "item_id": "85123A",
    "event_type": "view",
    "timestamp": "2026-11-23T10:00:00Z",
}


@router.post("/events", response_model=EventsOut)
async def post_events(
    state: State,
    body: Annotated[Any, Body(examples=[_EXAMPLE, [_EXAMPLE]])],
) -> OrjsonResponse:
    """Store one event (an object) or a batch (a list of at most 1000).

    Fields: ``item_id``, ``event_type`` (view, cart, purchase, return...), ``user_id`` or
    ``session_id``, ``timestamp`` (ISO 8601 with offset or epoch seconds; default now),
    optional ``event_id`` (idempotency key: one already stored is counted as a duplicate),
    ``quantity`` (at most 1,000,000), ``price`` (at most 10^9), ``order_id``,
    ``recommendation_id``. Any other key is refused by name: a batch is a JSON list, not an
    object wrapping one (``{"events": [...]}``). A bad event refuses the whole batch with 422
    naming its position (``line``, from 1), field and value.
    """
    return await anyio.to_thread.run_sync(
        partial(_store_events, state, body), limiter=state.write_limiter
    )


def _store_events(state: ServingState, body: Any) -> OrjsonResponse:
    """Validate and store the events of one request (see :func:`post_events`)."""
    if isinstance(body, bytes):
        # the framework parses a body as JSON only when its content type says it is JSON
        raise DataError(f"body: {NOT_JSON}")
    events = body if isinstance(body, list) else [body]
    limit = state.settings.max_batch_events
    if not events or len(events) > limit:
        raise DataError(f"body: a batch holds 1 to {limit} events, got {len(events)}")
    now_us = int(time.time() * 1_000_000)
    rows = []
    for line, event in enumerate(events, start=1):
        if not isinstance(event, dict):
            raise DataError(f"request, event {line}: expected a JSON object")
        _refuse_unknown_fields(event, line)
        if event.get("timestamp") is None:
            event = {**event, "timestamp": now_us / 1_000_000}
        rows.append(
            parse_event(event, source="request", line=line, now_us=now_us, timezone_option=None)
        )
    result = state.store.insert_events(rows)
    return OrjsonResponse(
        {"inserted": result.inserted, "duplicates": result.duplicates, "erased": result.erased}
    )


_KNOWN = frozenset(EVENT_FIELDS)


def _refuse_unknown_fields(event: dict[str, Any], line: int) -> None:
    """A misspelt or unexpected key is an error, not an ignored value: ``{"events": [...]}``
    would otherwise read as one event with no ``item_id``."""
    unknown = sorted(str(k) for k in event if k not in _KNOWN)
    if not unknown:
        return
    names = ", ".join(repr(k.encode("utf-8", "backslashreplace").decode()) for k in unknown)
    hint = (
        "; post a batch as a JSON list of events, not wrapped in an object"
        if unknown == ["events"]
        else ""
    )
    raise DataError(
        f"request, event {line}: unknown field(s) {names} (known: {', '.join(EVENT_FIELDS)})" + hint
    )
