"""Per-customer endpoints: recommendations, offers, session merge, erasure."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from recsys.data.schema import MAX_ID_LENGTH
from recsys.engine import RecommendationList
from recsys.ranking.rules import RequestFilters
from serving.deps import EngineDep, State, StoreDep, read_access, require_key
from serving.responses import OrjsonResponse
from serving.routes.common import K
from serving.routes.experiments import choose_arm, holdout_list, respond
from serving.routes.offers import OffersOut, offer_service
from serving.schemas import EraseOut, ListOut, MergeIn, MergeOut

router = APIRouter(prefix="/v1/users", tags=["users"])

UserId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]


def _recommend(
    state: State,
    engine: EngineDep,
    user_id: str,
    k: int,
    placement: str | None = None,
    filters: RequestFilters = RequestFilters(),
) -> RecommendationList:
    customer = state.store.get_customer(user_id)
    if customer is not None and customer.personalisation_opt_out:
        return engine.recommend(user_id, k, placement=placement, filters=filters, personalise=False)
    limit = state.settings.live_events
    # only what the version did not train on: the rest is already in its history
    events = state.store.user_events(user_id, limit=limit, since=engine.as_of) if limit else None
    return engine.recommend(user_id, k, events=events, placement=placement, filters=filters)


def _recommend_inline(
    state: State,
    engine: EngineDep,
    user_id: str,
    k: int,
    placement: str | None,
    filters: RequestFilters,
) -> RecommendationList | None:
    """The common case without leaving the event loop: a customer with nothing new since
    training, served from the precomputed lists. ``None`` when it does not apply.

    Only with the SQLite store, whose two indexed reads take microseconds: a thread hop per
    request, and GIL hand-offs between many request threads, cost more than this whole answer
    (throughput at 16 connections fell below that of one). A networked store's reads would
    block the loop, so it keeps the thread pool.
    """
    if engine.precomputed is None or state.store.backend != "sqlite":
        return None
    customer = state.store.get_customer(user_id)
    if customer is not None and customer.personalisation_opt_out:
        return None
    if state.settings.live_events and len(
        state.store.user_events(user_id, limit=1, since=engine.as_of)
    ):
        return None
    return engine.recommend_precomputed(user_id, k, placement=placement, filters=filters)


@router.get(
    "/{user_id}/recommendations", response_model=ListOut, dependencies=[Depends(read_access)]
)
async def recommendations(
    state: State,
    engine: EngineDep,
    user_id: UserId,
    k: K = 10,
    placement: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = None,
    category: Annotated[str | None, Query(max_length=256)] = None,
    exclude: Annotated[list[str], Query(max_length=100)] = [],  # noqa: B006 - FastAPI copies
    exclude_purchased: bool | None = None,
) -> OrjsonResponse:
    """Personal recommendations; an unknown customer gets the popular list (``fallback``)."""
    ids = tuple(i for raw in exclude for i in raw.split(",") if i)
    filters = RequestFilters(exclude=ids, category=category, exclude_purchased=exclude_purchased)
    arm = choose_arm(state, engine, user_id)
    if arm.holdout:
        return respond(holdout_list(arm, k), arm, state, "recommendations", user_id=user_id)
    result = _recommend_inline(state, arm.engine, user_id, k, placement, filters)
    if result is None:
        result = await run_in_threadpool(
            _recommend, state, arm.engine, user_id, k, placement, filters
        )
    return respond(result, arm, state, "recommendations", user_id=user_id, placement=placement)


@router.get("/{user_id}/offers", response_model=OffersOut, dependencies=[Depends(read_access)])
def offers(
    state: State,
    engine: EngineDep,
    user_id: UserId,
    k: K = 10,
    max_offers: Annotated[int, Query(ge=0, le=20, description="Promotions (0-20).")] = 3,
    channel: Annotated[Literal["web", "app", "email"], Query()] = "web",
) -> OrjsonResponse:
    """Items to offer this customer (placement ``offers``) and the promotions to show them,
    best expected value first, with reasons. Unknown customers, those who opted out of
    personalisation and held-out ones get non-personal promotions only."""
    service = offer_service(state)
    arm = choose_arm(state, engine, user_id)
    customer = state.store.get_customer(user_id)
    if arm.holdout:
        result = holdout_list(arm, k)
    else:
        result = _recommend(state, arm.engine, user_id, k, "offers")
    chosen = service.rank(
        user_id,
        engine=engine,
        customer=customer,
        personalise=not arm.holdout,
        channel=channel,
        k=max_offers,
    )
    service.record(user_id, chosen)  # frequency caps count what was shown
    extra = {"offers": [c.as_dict() for c in chosen]}
    placement = None if arm.holdout else "offers"
    return respond(result, arm, state, "offers", user_id=user_id, placement=placement, extra=extra)


@router.post("/{user_id}/merge", response_model=MergeOut, dependencies=[Depends(require_key)])
def merge(store: StoreDep, user_id: UserId, body: MergeIn) -> OrjsonResponse:
    """Attach an anonymous session's events to this customer (after they log in)."""
    return OrjsonResponse({"merged": store.merge_session(body.session_id, user_id)})


@router.delete("/{user_id}", response_model=EraseOut, dependencies=[Depends(require_key)])
def erase(state: State, user_id: UserId) -> OrjsonResponse:
    """Erase the customer: their events and profile go, and nothing personal is served again."""
    if state.offers is not None:
        state.offers.forget_user(user_id)  # first: no impression of theirs is written after
    removed = state.store.erase_user(user_id)
    if state.engine is not None:
        state.engine.forget_user(user_id)
    return OrjsonResponse({"erased_events": removed})
