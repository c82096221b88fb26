"""Guests: recommendations from a browsing session's events (no customer id needed)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from recsys.ranking.rules import RequestFilters
from recsys.service import ListRequest
from serving.deps import State, read_access
from serving.responses import OrjsonResponse
from serving.routes.common import Category, K, PathId, Placement, list_response
from serving.schemas import ListOut

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


@router.get(
    "/{session_id:id}/recommendations",
    response_model=ListOut,
    dependencies=[Depends(read_access)],
)
async def session_recommendations(
    state: State,
    session_id: PathId,
    k: K = 10,
    placement: Placement = None,
    category: Category = None,
) -> OrjsonResponse:
    """Items for a browsing session, live from the events posted during it (often viewed with
    its items, the latest weighing most); ``fallback: "session"``, or ``"popular"`` for a
    session with no known item."""
    request = ListRequest(None, k, placement, RequestFilters(category=category))
    served = await run_in_threadpool(state.service.session, session_id, request)
    return list_response(served, state, "sessions")
