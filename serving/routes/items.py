"""Item and catalogue endpoints: related items, basket completion, popular."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from recsys.data.schema import MAX_ID_LENGTH
from serving.deps import EngineDep, State, read_access
from serving.responses import OrjsonResponse
from serving.routes.common import K, list_response
from serving.routes.experiments import choose_arm, holdout_list, respond
from serving.schemas import BasketIn, ListOut

router = APIRouter(prefix="/v1", tags=["items"], dependencies=[Depends(read_access)])

ItemId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]


@router.get("/items/{item_id}/often-viewed-with", response_model=ListOut)
def often_viewed_with(
    state: State, engine: EngineDep, item_id: ItemId, k: K = 10
) -> OrjsonResponse:
    """Items viewed in the same sessions; 404 naming the item if it is unknown."""
    return list_response(
        engine.similar(item_id, "often_viewed_with", k), state, "often_viewed_with"
    )


@router.get("/items/{item_id}/bought-together", response_model=ListOut)
def bought_together(state: State, engine: EngineDep, item_id: ItemId, k: K = 10) -> OrjsonResponse:
    """Items bought in the same orders; 404 naming the item if it is unknown."""
    return list_response(engine.similar(item_id, "bought_together", k), state, "bought_together")


@router.post("/baskets/complete", response_model=ListOut)
def complete_basket(state: State, engine: EngineDep, body: BasketIn) -> OrjsonResponse:
    """Items that complete a basket (unknown basket items are ignored)."""
    arm = choose_arm(state, engine, body.user_id)
    if arm.holdout:
        result = holdout_list(arm, body.k)
    else:
        result = arm.engine.complete_basket(body.item_ids, body.k, user_id=body.user_id)
    return respond(result, arm, state, "baskets_complete", user_id=body.user_id)


@router.get("/popular", response_model=ListOut)
def popular(
    state: State,
    engine: EngineDep,
    k: K = 10,
    category: Annotated[str | None, Query(max_length=256)] = None,
) -> OrjsonResponse:
    """The most popular items, optionally within one category (path prefix)."""
    return list_response(engine.popular(k, category=category), state, "popular")
