"""Promotions administration: list, read, create or replace, and delete offers.

Changes are validated with the catalogue's model (422 names the offer and the field) and written
to the promotions file at once, atomically (see :mod:`recsys.offers.service`); the next
``GET /v1/users/{user_id}/offers`` serves them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, Field

from recsys.errors import NotFoundError
from recsys.offers.service import OfferService, promotion_json
from serving.deps import State, require_key
from serving.responses import OrjsonResponse
from serving.schemas import ListOut
from serving.state import ServingState

router = APIRouter(prefix="/v1/admin/offers", tags=["admin"], dependencies=[Depends(require_key)])

OfferId = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
]


class OfferOut(BaseModel):
    """One promotion offered to a customer (see :class:`recsys.offers.ranking.OfferCandidate`)."""

    offer_id: str
    title: str
    item_id: str | None = Field(description="null for a basket promotion.")
    trigger: str
    reasons: list[str] = Field(description="birthday, due_for_repurchase, winback, ...")
    probability: float = Field(description="P(purchase) within the horizon.")
    value: float
    discount_cost: float
    expected_value: float = Field(description="P x value - P x discount cost.")
    priority: int
    personal: bool


class OffersOut(ListOut):
    """``GET /v1/users/{user_id}/offers``: the list of items, and the promotions."""

    offers: list[OfferOut]


def offer_service(state: ServingState) -> OfferService:
    """The offers of this process; 404 when the app runs without them."""
    if state.offers is None:
        raise NotFoundError("offers are not set up on this server")
    return state.offers


def get_offers(state: State) -> OfferService:
    """Dependency: the offer service."""
    return offer_service(state)


Offers = Annotated[OfferService, Depends(get_offers)]


@router.get("")
def list_offers(service: Offers) -> OrjsonResponse:
    """Every promotion, and the file they are read from (and written to)."""
    return OrjsonResponse(
        {
            "file": str(service.path),
            "source": str(service.source) if service.source else None,
            "promotions": [promotion_json(p) for p in service.catalog],
        }
    )


@router.get("/{offer_id}")
def get_offer(service: Offers, offer_id: OfferId) -> OrjsonResponse:
    """One promotion."""
    return OrjsonResponse(promotion_json(service.get(offer_id)))


@router.put("/{offer_id}")
def put_offer(
    service: Offers, offer_id: OfferId, body: Annotated[dict[str, Any], Body()]
) -> OrjsonResponse:
    """Create or replace a promotion (the body is its definition as JSON; ``id`` may be left
    out). 422 names the offer and the field. Every worker serves it within the live refresh
    interval."""
    promo = service.put(body, offer_id)
    service.store.notify_change()
    return OrjsonResponse(promotion_json(promo))


@router.delete("/{offer_id}")
def delete_offer(service: Offers, offer_id: OfferId) -> OrjsonResponse:
    """Remove a promotion from the file (impressions and redemptions already recorded stay)."""
    removed = service.delete(offer_id)
    service.store.notify_change()
    return OrjsonResponse({"deleted": removed.id})
