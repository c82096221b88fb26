"""Who may get a promotion today: validity, targeting, consents, caps and frequency caps.

:func:`ineligibility` returns ``None`` when a customer may receive a promotion, or a short
reason why not (the campaign report counts them). Redemption is defined in
:class:`~recsys.offers.triggers.PurchaseHistory`: a purchase line whose ``recommendation_id``
is ``offer:<offer id>``; one order counts as one redemption.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from recsys.offers.catalog import Promotion


@dataclass(frozen=True)
class CustomerFacts:
    """What eligibility needs to know about one customer."""

    user_id: str
    segment: str
    n_orders: int
    birthday_open: bool = False
    personalisation_opt_out: bool = False
    marketing_opt_out: bool = False


@dataclass(frozen=True)
class OfferUsage:
    """How much of a promotion's caps is used, for one customer and in total."""

    customer_redemptions: int = 0
    total_redemptions: int = 0
    spent: float = 0.0
    impressions_in_period: int = 0


def is_new_customer(facts: CustomerFacts) -> bool:
    """No order yet, or one recent order (segment ``new``)."""
    return facts.n_orders == 0 or facts.segment == "new"


def ineligibility(
    promo: Promotion,
    facts: CustomerFacts,
    today: date,
    *,
    channel: str,
    usage: OfferUsage = OfferUsage(),
    campaign: bool = False,
) -> str | None:
    """Why ``facts.user_id`` may not receive ``promo`` today, or ``None`` if they may.

    Parameters
    ----------
    promo
        The promotion.
    facts
        The customer.
    today
        The day (UTC) the offer would be shown or sent.
    channel
        ``email``, ``web`` or ``app``.
    usage
        Redemptions so far and impressions within the frequency cap's period (ending today).
    campaign
        A marketing send (a campaign) rather than a promotion shown on a page.

    A customer who opted out of marketing gets no promotion at all, on any channel, sent or
    shown: a discount offer is marketing wherever it appears.
    """
    if facts.marketing_opt_out:
        return "marketing_opt_out"
    if promo.personal and facts.personalisation_opt_out:
        return "personalisation_opt_out"
    if not promo.valid_on(today):
        return "not_valid_today"
    elig = promo.eligibility
    if channel not in elig.channels:
        return "channel"
    if elig.segments is not None and facts.segment not in elig.segments:
        return "segment"
    if elig.new_customers_only and not is_new_customer(facts):
        return "not_new_customer"
    if elig.birthday_window and not facts.birthday_open:
        return "birthday_window_closed"
    caps = promo.caps
    if caps.per_customer is not None and usage.customer_redemptions >= caps.per_customer:
        return "per_customer_cap"
    if caps.total_redemptions is not None and usage.total_redemptions >= caps.total_redemptions:
        return "total_redemptions_cap"
    if caps.budget is not None and usage.spent >= caps.budget:
        return "budget_spent"
    cap = promo.frequency_cap
    if cap is not None and usage.impressions_in_period >= cap.max_impressions:
        return "frequency_cap"
    return None


def spent_on(promo: Promotion, redemptions: int, redeemed_value: float) -> float:
    """Discount given so far: redemptions × amount, or percent × the redeemed lines' value."""
    if promo.discount.amount is not None:
        return redemptions * promo.discount.amount
    return redeemed_value * float(promo.discount.percent or 0.0) / 100.0
