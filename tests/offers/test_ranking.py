from __future__ import annotations

from datetime import date, timedelta

import pytest

from recsys.data.schema import CatalogItem, Customer
from recsys.offers.ranking import (
    build_context,
    candidate_offers,
    rank_offers_for_user,
    select_offers,
)
from recsys.offers.triggers import PurchaseHistory, day_start_micros
from tests.offers.helpers import TODAY, catalog, frame, promo, purchase

D = timedelta


def _history(extra: list | None = None) -> PurchaseHistory:
    rows = [purchase("u", "mug", TODAY - D(days=40 + 10 * k), price=8.0) for k in range(3)]
    rows += [purchase("u", "mug", TODAY - D(days=9), price=8.0)]
    rows += [purchase("w", "pen", TODAY - D(days=5), price=2.0)]
    return PurchaseHistory.from_events(frame(rows + (extra or [])), TODAY)


def test_expected_value_formula_and_reasons() -> None:
    cat = catalog(promo(id="bday", trigger="birthday", discount={"amount": 3}))
    ctx = build_context(
        cat,
        TODAY,
        _history(),
        customers=[Customer("u", birthday=date(1990, 6, 20))],
        catalog=[CatalogItem("mug", price=8.0, margin=4.0)],
    )
    (offer,) = rank_offers_for_user(ctx, "u")
    assert offer.item_id == "mug" and offer.reasons == ("birthday",)
    assert offer.value == 4.0 and offer.discount_cost == 3.0
    assert offer.expected_value == pytest.approx(offer.probability * (4.0 - 3.0))
    assert 0 < offer.probability < 1
    assert ctx.probability_source() == "history_fallback"


def test_a_promotion_whose_best_item_another_takes_offers_its_next() -> None:
    """The birthday offer (any item) would be on the mug, which the more valuable restock
    offer takes: it is then made on the next item, not dropped (one offer per item, one per
    promotion)."""
    cat = catalog(
        promo(id="restock", trigger="replenishment", discount={"percent": 5}),
        promo(id="bday", trigger="birthday", discount={"percent": 10}),
    )
    ctx = build_context(
        cat,
        TODAY,
        _history(),
        customers=[Customer("u", birthday=date(1990, 6, 20))],
        catalog=[CatalogItem("mug", price=8.0), CatalogItem("pen", price=2.0)],
    )
    candidates, _ = candidate_offers(ctx, "u", channel="web")
    bday = [c.item_id for c in candidates if c.offer_id == "bday"]
    assert bday[0] == "mug" and "pen" in bday  # its best, and the next standing in
    offers = {o.offer_id: o.item_id for o in rank_offers_for_user(ctx, "u", k=3)}
    assert offers == {"restock": "mug", "bday": "pen"}
    # one offer per promotion, however many of its items are worth offering
    assert [o.offer_id for o in select_offers(candidates, 3)].count("bday") == 1


def test_frequency_cap() -> None:
    cat = catalog(promo(frequency_cap={"max_impressions": 2, "period_days": 7}))
    shown_at = [day_start_micros(TODAY - D(days=6)), day_start_micros(TODAY)]
    ctx = build_context(cat, TODAY, _history(), impressions={("u", "p1"): shown_at})
    assert rank_offers_for_user(ctx, "u") == []
    # the oldest impression leaves the 7-day window the next day
    ctx = build_context(cat, TODAY + D(days=1), _history(), impressions={("u", "p1"): shown_at})
    assert [o.offer_id for o in rank_offers_for_user(ctx, "u")] == ["p1"]


def test_redemption_caps() -> None:
    redeemed = [
        purchase("u", "mug", TODAY - D(days=3), price=8.0, rec="offer:p1", order="o1"),
        purchase("w", "pen", TODAY - D(days=2), price=2.0, rec="offer:p2", order="o2"),
    ]
    cat = catalog(
        promo(id="p1", caps={"per_customer": 1}),
        promo(id="p2", caps={"total_redemptions": 1}),
        promo(id="p3", caps={"budget": 0.2}, discount={"percent": 10}),
        promo(id="p4", caps={"per_customer": 2}, applies_to={"basket": True}),
    )
    hist = _history(redeemed)
    assert hist.redemptions[("u", "p1")] == 1
    ctx = build_context(cat, TODAY, hist)
    got = {o.offer_id for o in rank_offers_for_user(ctx, "u", k=10)}
    assert got == {"p3", "p4"}  # p1: u's cap reached; p2: total reached
    spent = [purchase("w", "pen", TODAY - D(days=1), price=2.0, rec="offer:p3", order="o3")]
    ctx = build_context(cat, TODAY, _history(redeemed + spent))
    assert {o.offer_id for o in rank_offers_for_user(ctx, "u", k=10)} == {"p4"}  # p3: 0.2 spent


def test_personalisation_opt_out_gets_non_personal_only() -> None:
    cat = catalog(
        promo(id="everyone"),
        promo(id="bday", trigger="birthday"),
        promo(id="champs", eligibility={"segments": ["champions"]}),
    )
    customers = [Customer("u", birthday=date(1990, 6, 20), personalisation_opt_out=True)]
    ctx = build_context(cat, TODAY, _history(), customers=customers, segments={"u": "champions"})
    offers = rank_offers_for_user(ctx, "u", k=10)
    assert [o.offer_id for o in offers] == ["everyone"]
    assert offers[0].reasons == ("non_personal",) and not offers[0].personal
    # the item is the popular one, with the non-personal probability
    assert offers[0].probability == pytest.approx(ctx.fallback.item(None, offers[0].item_id or ""))
    unknown = rank_offers_for_user(ctx, "nobody", k=10)
    assert [o.offer_id for o in unknown] == ["everyone"]


@pytest.mark.parametrize("channel", ["web", "app", "email"])
def test_marketing_opt_out_gets_no_promotion_on_any_channel(channel: str) -> None:
    cat = catalog(promo(id="everyone", eligibility={"channels": ["web", "app", "email"]}))
    customers = [Customer("u", marketing_opt_out=True), Customer("v")]
    ctx = build_context(cat, TODAY, _history(), customers=customers)
    assert rank_offers_for_user(ctx, "u", channel=channel, k=10) == []
    assert [o.offer_id for o in rank_offers_for_user(ctx, "v", channel=channel, k=10)] == [
        "everyone"
    ]


def test_one_offer_per_item_across_triggers() -> None:
    cat = catalog(
        promo(id="restock", trigger="replenishment", discount={"percent": 5}),
        promo(id="any", discount={"percent": 50}),
    )
    ctx = build_context(cat, TODAY, _history())
    offers = rank_offers_for_user(ctx, "u", k=5)
    assert [o.item_id for o in offers].count("mug") == 1
    assert offers[0].offer_id == "restock" and offers[0].reasons == ("due_for_repurchase",)
