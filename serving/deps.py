"""Dependencies: the checks every route shares, each written once.

They are ``async def`` although they never wait: FastAPI runs a plain ``def`` dependency in its
thread pool, one thread hop per dependency per request, which cost more than the whole
recommendation on the hot path. None of them blocks, so running them on the event loop is safe.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from recsys.errors import AuthError
from recsys.store.base import EventStore
from serving.state import ServingState


async def get_state(request: Request) -> ServingState:
    """The app's state."""
    state: ServingState = request.app.state.recsys
    return state


State = Annotated[ServingState, Depends(get_state)]


async def get_store(state: State) -> EventStore:
    """The event store."""
    return state.store


def check_key(state: ServingState, key: str | None) -> None:
    """Raise :class:`~recsys.errors.AuthError` unless ``key`` is one of the API keys."""
    if not key:
        raise AuthError("this endpoint needs an X-API-Key header", missing=True)
    given = key.encode()
    # compare with every key, without stopping early, so timing says nothing about which
    ok = False
    for valid in state.settings.key_list():
        ok |= hmac.compare_digest(given, valid)
    if not ok:
        raise AuthError("the X-API-Key is not valid", missing=False)


def has_valid_key(state: ServingState, key: str | None) -> bool:
    """Whether ``key`` is one of the API keys (no error either way)."""
    if not key:
        return False
    try:
        check_key(state, key)
    except AuthError:
        return False
    return True


async def require_key(
    state: State, x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None
) -> None:
    """Write and admin endpoints: a valid ``X-API-Key`` (401 when absent, 403 when wrong)."""
    check_key(state, x_api_key)


async def read_access(
    state: State, x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None
) -> None:
    """Read endpoints: a key only when ``RECSYS_REQUIRE_KEY_FOR_READS`` is set."""
    if state.settings.require_key_for_reads:
        check_key(state, x_api_key)


StoreDep = Annotated[EventStore, Depends(get_store)]
