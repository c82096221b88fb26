"""The promotions catalogue: promotions as data, validated on load.

A promotions file is TOML (``[[promotions]]`` tables) or JSON (``{"promotions": [...]}``)::

    [[promotions]]
    id = "birthday-10"
    title = "10% off for your birthday"
    trigger = "birthday"              # birthday | replenishment | winback | cross_sell | always
    applies_to = { any_item = true }  # or items = [...], categories = [...], basket = true
    discount = { percent = 10 }       # or amount = 5.0 (exactly one)
    valid_from = 2011-01-01T00:00:00Z # timezone-aware
    valid_until = 2012-01-01T00:00:00Z
    priority = 1
    eligibility = { birthday_window = true, channels = ["email", "web"] }
    caps = { per_customer = 1, total_redemptions = 1000, budget = 5000.0 }
    frequency_cap = { max_impressions = 3, period_days = 7 }

Every promotion is validated on its own, so an error names the offer and the field:
``promotions.toml: offer 'birthday-10': 'discount.percent': Input should be less than or equal
to 100 (got 150)``. ``applies_to.any_item`` (any product of the catalogue) is an addition to
the three documented targets: a replenishment or cross-sell offer usually applies to whatever
item the trigger found.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from recsys.config import StrictModel, read_config_file, validate
from recsys.errors import ConfigError

#: The moments a promotion can serve (see :mod:`recsys.offers.triggers`).
TRIGGER_KINDS: tuple[str, ...] = ("birthday", "replenishment", "winback", "cross_sell", "always")
TriggerKind = Literal["birthday", "replenishment", "winback", "cross_sell", "always"]
Channel = Literal["email", "web", "app"]
CHANNELS: tuple[str, ...] = ("email", "web", "app")

#: Prefix of ``recommendation_id`` on a purchase line bought with an offer: ``offer:<id>``.
REDEMPTION_PREFIX = "offer:"


class AppliesTo(StrictModel):
    """What a promotion discounts: exactly one of the four targets."""

    items: list[str] | None = Field(default=None, min_length=1)
    categories: list[str] | None = Field(default=None, min_length=1)
    basket: bool = False
    any_item: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        chosen = [
            name
            for name, on in (
                ("items", self.items is not None),
                ("categories", self.categories is not None),
                ("basket", self.basket),
                ("any_item", self.any_item),
            )
            if on
        ]
        if len(chosen) != 1:
            raise ValueError(
                "give exactly one of items, categories, basket = true, any_item = true "
                f"(got {', '.join(chosen) or 'none'})"
            )
        return self

    def matches(self, item_id: str, category: str) -> bool:
        """Whether the promotion applies to this item (never true for a basket promotion).

        A category matches itself and every sub-category (``"Home"`` covers
        ``"Home > Kitchen"``).
        """
        if self.any_item:
            return True
        if self.items is not None:
            return item_id in self.items
        if self.categories is not None:
            return any(category == c or category.startswith(c + " > ") for c in self.categories)
        return False


class Discount(StrictModel):
    """A percentage off (0 < percent <= 100) or an amount off (> 0): exactly one."""

    percent: float | None = Field(default=None, gt=0, le=100)
    amount: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.percent is None) == (self.amount is None):
            raise ValueError("give exactly one of percent or amount")
        return self

    def cost(self, price: float) -> float:
        """What the discount costs the shop on something priced ``price`` (never above it)."""
        if self.percent is not None:
            return price * self.percent / 100.0
        return min(float(self.amount or 0.0), price)


def _all_channels() -> list[Channel]:
    return ["email", "web", "app"]


class Eligibility(StrictModel):
    """Who may receive a promotion, and where."""

    segments: list[str] | None = Field(default=None, min_length=1)
    new_customers_only: bool = False
    birthday_window: bool = False
    min_basket: float | None = Field(default=None, gt=0)
    channels: list[Channel] = Field(default_factory=_all_channels, min_length=1)


class Caps(StrictModel):
    """Redemption limits: per customer, in total, and a discount budget (currency)."""

    per_customer: int | None = Field(default=None, ge=1)
    total_redemptions: int | None = Field(default=None, ge=1)
    budget: float | None = Field(default=None, gt=0)


class FrequencyCap(StrictModel):
    """At most ``max_impressions`` impressions per customer in any ``period_days`` days."""

    max_impressions: int = Field(ge=1)
    period_days: int = Field(ge=1)


class Promotion(StrictModel):
    """One promotion (offer)."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
    title: str = Field(min_length=1)
    trigger: TriggerKind = "always"
    applies_to: AppliesTo
    discount: Discount
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    eligibility: Eligibility = Field(default_factory=Eligibility)
    caps: Caps = Field(default_factory=Caps)
    frequency_cap: FrequencyCap | None = None
    priority: int = 0

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.valid_until <= self.valid_from:
            raise ValueError(
                f"valid_until ({self.valid_until.isoformat()}) must be after valid_from "
                f"({self.valid_from.isoformat()})"
            )
        return self

    @property
    def personal(self) -> bool:
        """Whether serving it uses what the engine knows about the customer.

        Customers who opted out of personalisation only get non-personal promotions: those
        served to everyone (``trigger = "always"``) without segment or birthday targeting.
        """
        return (
            self.trigger != "always"
            or self.eligibility.segments is not None
            or self.eligibility.birthday_window
        )

    def valid_on(self, day: date) -> bool:
        """Whether the promotion is valid at some moment of ``day`` (UTC)."""
        start = datetime.combine(day, time(0), tzinfo=UTC)
        return self.valid_from < start + timedelta(days=1) and self.valid_until > start


class PromotionCatalog:
    """The promotions of one file, in file order, looked up by id."""

    def __init__(self, promotions: Sequence[Promotion]) -> None:
        self.promotions = list(promotions)
        self._by_id = {p.id: p for p in self.promotions}

    def __len__(self) -> int:
        return len(self.promotions)

    def __iter__(self) -> Any:
        return iter(self.promotions)

    def get(self, offer_id: str) -> Promotion | None:
        """The promotion with this id, or ``None``."""
        return self._by_id.get(offer_id)

    def valid_on(self, day: date) -> list[Promotion]:
        """The promotions valid on ``day``."""
        return [p for p in self.promotions if p.valid_on(day)]


def parse_promotions(data: Any, source: str) -> PromotionCatalog:
    """Validate a ``{"promotions": [...]}`` document.

    Raises
    ------
    ConfigError
        Naming ``source``, the offer (by id, or by position when it has none) and the field.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table with a 'promotions' list")
    unknown = sorted(set(data) - {"promotions"})
    if unknown:
        raise ConfigError(f"{source}: unknown key '{unknown[0]}' (expected only 'promotions')")
    raw = data.get("promotions")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source}: 'promotions' must be a non-empty list of tables")
    out: list[Promotion] = []
    seen: set[str] = set()
    for position, entry in enumerate(raw, start=1):
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: promotion #{position} is not a table")
        name = entry.get("id")
        label = f"offer {name!r}" if isinstance(name, str) else f"promotion #{position}"
        promo = validate(Promotion, entry, f"{source}: {label}")
        if promo.id in seen:
            raise ConfigError(f"{source}: offer {promo.id!r}: 'id' is used by another promotion")
        seen.add(promo.id)
        out.append(promo)
    return PromotionCatalog(out)


def load_promotions(path: str | Path) -> PromotionCatalog:
    """Read and validate a promotions file (TOML or JSON)."""
    return parse_promotions(read_config_file(path), str(path))
