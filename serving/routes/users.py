"""Per-customer endpoints: recommendations, offers, session merge, erasure.

Each route parses, calls one method of :class:`recsys.service.RecommendationService`, and
responds: consent, erasure, live events, experiments and exposures are decided there.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query
from starlette.concurrency import run_in_threadpool

from recsys.data.schema import MAX_ID_LENGTH
from recsys.ranking.rules import RequestFilters
from recsys.service import ListRequest
from serving.deps import State, StoreDep, has_valid_key, read_access, require_key
from serving.responses import OrjsonResponse
from serving.routes.common import Category, K, PathId, Placement, list_response
from serving.routes.offers import OffersOut
from serving.schemas import EraseOut, ListOut, MergeIn, MergeOut, RegisterOut

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get(
    "/{user_id:id}/recommendations", response_model=ListOut, dependencies=[Depends(read_access)]
)
async def recommendations(
    state: State,
    user_id: PathId,
    k: K = 10,
    placement: Placement = None,
    category: Category = None,
    exclude: Annotated[list[str], Query(max_length=100)] = [],  # noqa: B006 - FastAPI copies
    exclude_purchased: bool | None = None,
    session_id: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH)] = None,
) -> OrjsonResponse:
    """Personal recommendations. A customer the model does not know gets their session's list
    when ``session_id`` names one with events (``fallback: "session"``), else the popular list
    (``fallback: "popular"``)."""
    ids = tuple(i for raw in exclude for i in raw.split(",") if i)
    filters = RequestFilters(exclude=ids, category=category, exclude_purchased=exclude_purchased)
    request = ListRequest(user_id, k, placement, filters, session_id)
    service = state.service
    # the common cases answer on the event loop (a thread hop costs more than the answer)
    served, arm, looked = service.recommend_fast(request)
    if served is None:
        served = await run_in_threadpool(
            partial(service.recommend, request, arm=arm, looked=looked)
        )
    return list_response(served, state, "recommendations")


@router.get("/{user_id:id}/offers", response_model=OffersOut, dependencies=[Depends(read_access)])
def offers(
    state: State,
    user_id: PathId,
    k: K = 10,
    max_offers: Annotated[int, Query(ge=0, le=20, description="Promotions (0-20).")] = 3,
    channel: Annotated[Literal["web", "app", "email"], Query()] = "web",
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> OrjsonResponse:
    """Items to offer this customer (placement ``offers``) and the promotions to show them,
    best expected value first, with reasons. Unknown customers, those who opted out of
    personalisation and held-out ones get non-personal promotions only; those who opted out
    of marketing get none. Only a call with a valid API key counts the promotions as shown
    (frequency caps): an anonymous read spends nothing."""
    served = state.service.offer(
        user_id,
        k,
        max_offers=max_offers,
        channel=channel,
        count_impressions=has_valid_key(state, x_api_key),
    )
    return list_response(served, state, "offers")


@router.post("/{user_id:id}/merge", response_model=MergeOut, dependencies=[Depends(require_key)])
def merge(store: StoreDep, user_id: PathId, body: MergeIn) -> OrjsonResponse:
    """Attach an anonymous session's events to this customer (after they log in)."""
    return OrjsonResponse({"merged": store.merge_session(body.session_id, user_id)})


@router.delete("/{user_id:id}", response_model=EraseOut, dependencies=[Depends(require_key)])
def erase(state: State, user_id: PathId) -> OrjsonResponse:
    """Erase the customer: their events and profile go, and nothing personal is served again,
    by any worker (within the live refresh interval), any model version, or any batch run;
    their events are refused from then on unless they are registered again."""
    return OrjsonResponse({"erased_events": state.service.erase(user_id)})


@router.post(
    "/{user_id:id}/register", response_model=RegisterOut, dependencies=[Depends(require_key)]
)
def register(state: State, user_id: PathId) -> OrjsonResponse:
    """Register an erased customer again (they came back and consented): their new events are
    stored from now on. What was erased stays erased: 409 while a model version knows them
    (train again and prune it first), or while a training run holds the registry's lock."""
    return OrjsonResponse({"registered": state.service.register(user_id, state.registry)})
