"""Item endpoints: related items, basket completion, popular, trending, and the catalogue.

Reads go through :class:`recsys.service.RecommendationService` (the live catalogue laid over
the model version); catalogue writes go to the store, and every worker sees them within the
live refresh interval.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from recsys.data.schema import CatalogItem
from recsys.errors import NotFoundError
from serving.deps import State, read_access, require_key
from serving.responses import OrjsonResponse
from serving.routes.common import Category, K, PathId, list_response
from serving.schemas import BasketIn, ItemBatchIn, ItemIn, ItemPatchIn, ListOut

router = APIRouter(prefix="/v1", tags=["items"])


@router.get(
    "/items/{item_id:id}/often-viewed-with",
    response_model=ListOut,
    dependencies=[Depends(read_access)],
)
def often_viewed_with(state: State, item_id: PathId, k: K = 10) -> OrjsonResponse:
    """Items viewed in the same sessions; 404 naming the item if it is unknown."""
    served = state.service.similar(item_id, "often_viewed_with", k)
    return list_response(served, state, "often_viewed_with")


@router.get(
    "/items/{item_id:id}/bought-together",
    response_model=ListOut,
    dependencies=[Depends(read_access)],
)
def bought_together(state: State, item_id: PathId, k: K = 10) -> OrjsonResponse:
    """Items bought in the same orders; 404 naming the item if it is unknown."""
    served = state.service.similar(item_id, "bought_together", k)
    return list_response(served, state, "bought_together")


@router.get(
    "/items/{item_id:id}/similar", response_model=ListOut, dependencies=[Depends(read_access)]
)
def similar(state: State, item_id: PathId, k: K = 10) -> OrjsonResponse:
    """Items alike in title, category and attributes (the ``content`` model): what a new item,
    which nobody has bought or viewed yet, is shown with; 404 naming an unknown item."""
    served = state.service.similar(item_id, "similar", k)
    return list_response(served, state, "similar")


@router.post("/baskets/complete", response_model=ListOut, dependencies=[Depends(read_access)])
def complete_basket(state: State, body: BasketIn) -> OrjsonResponse:
    """Items that complete a basket (unknown basket items are ignored)."""
    served = state.service.complete_basket(body.item_ids, body.k, body.user_id)
    return list_response(served, state, "baskets_complete")


@router.get("/popular", response_model=ListOut, dependencies=[Depends(read_access)])
def popular(state: State, k: K = 10, category: Category = None) -> OrjsonResponse:
    """The most popular items, optionally within one category (path prefix)."""
    return list_response(state.service.popular(k, category), state, "popular")


@router.get("/trending", response_model=ListOut, dependencies=[Depends(read_access)])
def trending(state: State, k: K = 10, category: Category = None) -> OrjsonResponse:
    """Items whose sales are rising, optionally within one category (path prefix)."""
    return list_response(state.service.trending(k, category), state, "trending")


# -- the catalogue -----------------------------------------------------------------------------


def _item_json(item: CatalogItem) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "title": item.title,
        "category": item.category,
        "price": item.price,
        "in_stock": item.in_stock,
        "margin": item.margin,
        "attributes": item.attributes,
    }


def _changed(state: State) -> None:
    # this worker sees its own change at once; the others within the refresh interval
    state.live.refresh()


@router.get("/items/{item_id:id}", dependencies=[Depends(read_access)])
def get_item(state: State, item_id: PathId) -> OrjsonResponse:
    """One catalogue item as stored now (404 when the catalogue has none, or it is retired)."""
    change = state.live.catalog.get(item_id)
    item = state.store.get_item(item_id) if change is None or change.retired else change.item
    if item is None or (change is not None and change.retired):
        raise NotFoundError(f"item {item_id!r} is not in the catalogue")
    return OrjsonResponse(_item_json(item))


@router.put("/items/{item_id:id}", dependencies=[Depends(require_key)])
def put_item(state: State, item_id: PathId, body: ItemIn) -> OrjsonResponse:
    """Create or replace one item (a retired one comes back)."""
    item = body.to_item(item_id)
    state.store.upsert_items([item])
    _changed(state)
    return OrjsonResponse(_item_json(item))


@router.patch("/items/{item_id:id}", dependencies=[Depends(require_key)])
def patch_item(state: State, item_id: PathId, body: ItemPatchIn) -> OrjsonResponse:
    """Change some fields of one item, e.g. ``{"in_stock": false}`` or a new price."""
    # null clears what may be unknown (price, margin); other fields keep their value
    changes = {
        key: value
        for key, value in body.model_dump(exclude_unset=True).items()
        if value is not None or key in ("price", "margin")
    }
    item = state.store.patch_item(item_id, changes)
    _changed(state)
    return OrjsonResponse(_item_json(item))


@router.post("/items", dependencies=[Depends(require_key)])
def post_items(state: State, body: ItemBatchIn) -> OrjsonResponse:
    """Create or replace many items at once."""
    written = state.store.upsert_items([i.to_item(i.item_id) for i in body.items])
    _changed(state)
    return OrjsonResponse({"written": written})


@router.delete("/items/{item_id:id}", dependencies=[Depends(require_key)])
def retire_item(state: State, item_id: PathId) -> OrjsonResponse:
    """Retire an item: it leaves every list on every worker (PUT brings it back)."""
    if not state.store.retire_item(item_id):
        raise NotFoundError(f"item {item_id!r} is not in the catalogue")
    _changed(state)
    return OrjsonResponse({"retired": item_id})
