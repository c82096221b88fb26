"""Guests: recommendations from a browsing session's events (no customer id needed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from recsys.data.schema import MAX_ID_LENGTH
from recsys.ranking.rules import RequestFilters
from recsys.service import ListRequest
from serving.deps import State, read_access
from serving.responses import OrjsonResponse
from serving.routes.common import K, list_response
from serving.schemas import ListOut

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

SessionId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]


@router.get(
    "/{session_id}/recommendations", response_model=ListOut, dependencies=[Depends(read_access)]
)
async def session_recommendations(
    state: State,
    session_id: SessionId,
    k: K = 10,
    placement: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = None,
    category: Annotated[str | None, Query(max_length=256)] = None,
) -> OrjsonResponse:
    """Items for a browsing session, live from the events posted during it (often viewed with
    its items, the latest weighing most); ``fallback: "session"``, or ``"popular"`` for a
    session with no known item."""
    request = ListRequest(None, k, placement, RequestFilters(category=category))
    served = await run_in_threadpool(state.service.session, session_id, request)
    return list_response(served, state, "sessions")
