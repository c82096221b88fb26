"""Tiny shops with a fixed clock for the offer tests."""

from __future__ import annotations

from datetime import UTC, date, datetime

from recsys.data.schema import EventFrame, EventRow, to_micros
from recsys.offers.catalog import PromotionCatalog, parse_promotions

TODAY = date(2024, 6, 15)


def ts(day: date, hour: int = 12) -> int:
    return to_micros(datetime(day.year, day.month, day.day, hour, tzinfo=UTC))


def purchase(
    user: str,
    item: str,
    day: date,
    *,
    order: str | None = None,
    price: float = 10.0,
    rec: str | None = None,
    n: int = 0,
) -> EventRow:
    order = order or f"{user}-{day.isoformat()}"
    return EventRow(
        f"{order}-{item}-{n}", user, None, item, "purchase", ts(day), 1.0, price, order, rec
    )


def frame(rows: list[EventRow]) -> EventFrame:
    return EventFrame.from_rows(rows)


def promo(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "p1",
        "title": "Ten off",
        "trigger": "always",
        "applies_to": {"any_item": True},
        "discount": {"percent": 10},
        "valid_from": "2024-01-01T00:00:00Z",
        "valid_until": "2025-01-01T00:00:00Z",
    }
    base.update(overrides)
    return base


def catalog(*promos: dict[str, object]) -> PromotionCatalog:
    return parse_promotions({"promotions": list(promos)}, "test.toml")
