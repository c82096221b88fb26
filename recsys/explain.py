"""Reason codes: made from what a model explains, and read in words by a merchandiser.

The engine and the offers explain each item with short codes (``"model:hybrid"``,
``"source:als"``, ``"due_for_repurchase"``, ``"often_bought_with:85123A"``,
``"rule:pin:hero"``, ``"fallback:popular"``...), which the API returns as they are. People
read them on the merchandiser's page; this module is the one place that makes the codes of a
model's explained item (:func:`reason_codes`, for a served list as for a stored one) and the one
place that turns a code into words, so every page (and any later report) says the same thing
for the same code.

A code this module does not know is shown as it is: a new reason is never hidden.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.data.schema import MICROS_PER_DAY
from recsys.data.vocab import Vocabulary

#: The candidate generators of the hybrid and the other models, as people call them.
MODEL_WORDS = {
    "hybrid": "the hybrid model (learned re-ranking)",
    "als": "customers with similar tastes (ALS)",
    "bpr": "customers with similar tastes (BPR)",
    "ease": "items that go with their history (EASE)",
    "cooccurrence": "items often bought with theirs",
    "popular": "best sellers",
    "trending": "rising sales",
    "buy_again": "their repeat purchases",
    "bought_before": "their own purchases",
    "history": "what they viewed or put in their cart",
    "repeat": "their repeat purchases",
}

#: Offer triggers and campaign reasons.
TRIGGER_WORDS = {
    "birthday": "birthday coming up",
    "winback": "has not ordered for longer than usual: win them back",
    "replenishment": "due to buy again",
    "cross_sell": "goes with their last order",
    "always": "open to everyone",
    "non_personal": "not personalised (no consent, unknown, erased or held out)",
    "holdout": "held out of the experiment: best sellers",
}


@dataclass(frozen=True, slots=True)
class PurchaseRecord:
    """How a customer has bought one item: what makes "due now" concrete.

    Attributes
    ----------
    times
        Orders (distinct days) with the item.
    usual_gap_days
        Median days between those orders (``None`` with fewer than two).
    days_since
        Days from the last of them to the reference time.
    """

    times: int
    usual_gap_days: float | None
    days_since: float


def purchase_records(
    item_ids: Sequence[str], timestamps: Sequence[int] | np.ndarray, now: int
) -> dict[str, PurchaseRecord]:
    """Summarise purchase events per item.

    Parameters
    ----------
    item_ids, timestamps
        One entry per purchase event (timestamps in microseconds UTC, any order).
    now
        The reference time (microseconds UTC): "days since" is measured to it.

    Returns
    -------
    dict
        A :class:`PurchaseRecord` per item; purchases on the same day count once (an order of
        three lines of one item is one purchase, not three).
    """
    days: dict[str, set[int]] = {}
    for item, ts in zip(item_ids, timestamps, strict=True):
        days.setdefault(item, set()).add(int(ts) // MICROS_PER_DAY)
    today = now / MICROS_PER_DAY
    out: dict[str, PurchaseRecord] = {}
    for item, found in days.items():
        ordered = sorted(found)
        gap = float(np.median(np.diff(ordered))) if len(ordered) > 1 else None
        out[item] = PurchaseRecord(len(ordered), gap, max(0.0, today - ordered[-1]))
    return out


def _times(n: int) -> str:
    return "once" if n == 1 else "twice" if n == 2 else f"{n} times"


def _due_words(record: PurchaseRecord | None) -> str:
    if record is None:
        return "due to buy again"
    if record.usual_gap_days is None:
        return f"bought {_times(record.times)}: due to buy again"
    gap = round(record.usual_gap_days)
    since = round(record.days_since)
    when = "due now" if since >= gap else f"due in {gap - since} days"
    return f"bought {_times(record.times)}, usually every {gap} days, last {since} days ago: {when}"


def reason_text(
    reason: str,
    *,
    titles: Mapping[str, str] | None = None,
    history: Mapping[str, PurchaseRecord] | None = None,
    item_id: str | None = None,
) -> str:
    """One reason code in words.

    Parameters
    ----------
    reason
        The code as the engine gives it (``"model:hybrid"``, ``"rule:pin:hero"``...).
    titles
        Item titles by id, to name the item of ``often_bought_with:<item>``.
    history
        The customer's :class:`PurchaseRecord` per item (see :func:`purchase_records`), to
        say how often and how regularly they bought ``item_id``.
    item_id
        The item the reason is about.

    Returns
    -------
    str
        A short phrase; the code itself when it is not one this module knows.
    """
    kind, _, rest = reason.partition(":")
    record = (history or {}).get(item_id) if item_id is not None else None
    if kind == "model":
        return f"chosen by {MODEL_WORDS.get(rest, f'the {rest} model')}"
    if kind == "source" and rest != "bought_before":
        return f"suggested by {MODEL_WORDS.get(rest, rest)}"
    if reason in ("bought_before", "source:bought_before"):
        if record is not None:
            return f"they bought it {_times(record.times)} before"
        return "they bought it before"
    if reason in ("due_for_repurchase", "replenishment"):
        return _due_words(record)
    if kind == "often_bought_with" and rest:
        name = (titles or {}).get(rest)
        return f"often bought with {name} ({rest})" if name else f"often bought with item {rest}"
    if kind == "often_bought_with":
        return "often bought with what they bought"
    if kind == "rule":
        rule, _, name = rest.partition(":")
        named = f" '{name}'" if name else ""
        words = {
            "pin": f"pinned by the rule{named}",
            "boost": f"boosted by the rule{named}",
            "bury": f"moved down by the rule{named}",
        }
        return words.get(rule, f"business rule {rest}")
    if kind == "fallback":
        what = {"popular": "best sellers", "bought_together": "bought together"}.get(rest, rest)
        return f"filled in from {what} (not enough personal picks)"
    if kind == "segment":
        return f"offered to the {rest.replace('_', ' ')} segment"
    if kind in ("similar", "session"):
        related = {
            "often_viewed_with": "often viewed with",
            "bought_together": "bought together",
            "content": "alike in name and category",
        }.get(rest, rest.replace("_", " "))
        where = "this item" if kind == "similar" else "what this visitor looked at"
        return f"{related} {where}" if rest != "content" else f"{related} to {where}"
    if reason == "new_item":
        return "new in the shop"
    if reason in TRIGGER_WORDS:
        return TRIGGER_WORDS[reason]
    return reason


def reasons_text(
    reasons: Iterable[str],
    *,
    titles: Mapping[str, str] | None = None,
    history: Mapping[str, PurchaseRecord] | None = None,
    item_id: str | None = None,
) -> list[str]:
    """Every reason of one item in words, in order, each phrase once.

    The candidate sources (``source:als``, ``source:ease``...) become one phrase, "suggested
    by A, B and C", where the first of them stood; ``source:bought_before`` and
    ``bought_before`` say the same thing and are said once.
    """
    codes = list(reasons)
    sources = [
        MODEL_WORDS.get(c.partition(":")[2], c.partition(":")[2])
        for c in codes
        if c.startswith("source:") and c != "source:bought_before"
    ]
    words: list[str] = []
    for code in codes:
        if code.startswith("source:") and code != "source:bought_before":
            if len(sources) > 1:
                code_words = "suggested by " + ", ".join(sources[:-1]) + " and " + sources[-1]
            else:
                code_words = f"suggested by {sources[0]}"
        else:
            code_words = reason_text(code, titles=titles, history=history, item_id=item_id)
        words.append(code_words)
    return list(dict.fromkeys(words))


def reason_codes(model_name: str, explained: Any, items: Vocabulary) -> tuple[str, ...]:
    """The API's reason codes of one item a model explained: ``model:<name>``, a
    ``source:<generator>`` per candidate generator that found it, and its flags, with any
    item index they carry (``often_bought_with:17``) as the item's id."""
    return (
        f"model:{model_name}",
        *(f"source:{g}" for g in explained.sources),
        *(_flag_ids(f, items) for f in explained.reasons),
    )


def _flag_ids(flag: str, items: Vocabulary) -> str:
    # reason flags may carry an item index ("often_bought_with:17"): ids leave, never indices
    name, sep, value = flag.partition(":")
    if sep and value.lstrip("-").isdigit():
        i = int(value)
        return f"{name}:{items.id(i)}" if 0 <= i < len(items) else name
    return flag
