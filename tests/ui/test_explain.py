"""Reasons in words (recsys/explain.py)."""

from __future__ import annotations

import pytest

from recsys.explain import PurchaseRecord, purchase_records, reason_text, reasons_text

DAY = 86_400 * 1_000_000


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("model:hybrid", "chosen by the hybrid model (learned re-ranking)"),
        ("model:newthing", "chosen by the newthing model"),
        ("source:als", "suggested by customers with similar tastes (ALS)"),
        ("bought_before", "they bought it before"),
        ("source:bought_before", "they bought it before"),
        ("due_for_repurchase", "due to buy again"),
        ("often_bought_with", "often bought with what they bought"),
        ("rule:pin:hero", "pinned by the rule 'hero'"),
        ("rule:boost:summer", "boosted by the rule 'summer'"),
        ("fallback:popular", "filled in from best sellers (not enough personal picks)"),
        ("segment:at_risk", "offered to the at risk segment"),
        ("winback", "has not ordered for longer than usual: win them back"),
        ("something:new", "something:new"),
    ],
)
def test_each_code_in_words(code: str, words: str) -> None:
    assert reason_text(code) == words


def test_often_bought_with_names_the_item() -> None:
    titles = {"85123A": "WHITE HANGING HEART T-LIGHT HOLDER"}
    assert (
        reason_text("often_bought_with:85123A", titles=titles)
        == "often bought with WHITE HANGING HEART T-LIGHT HOLDER (85123A)"
    )
    assert reason_text("often_bought_with:X1", titles=titles) == "often bought with item X1"


def test_due_says_how_often_and_when() -> None:
    history = {"A": PurchaseRecord(times=5, usual_gap_days=30.0, days_since=31.0)}
    assert (
        reason_text("due_for_repurchase", history=history, item_id="A")
        == "bought 5 times, usually every 30 days, last 31 days ago: due now"
    )
    early = {"A": PurchaseRecord(times=2, usual_gap_days=30.0, days_since=24.0)}
    assert reason_text("due_for_repurchase", history=early, item_id="A").endswith(
        "twice, usually every 30 days, last 24 days ago: due in 6 days"
    )
    # another item's record says nothing about this one
    assert reason_text("due_for_repurchase", history=history, item_id="B") == "due to buy again"


def test_purchase_records_count_days_not_lines() -> None:
    now = 100 * DAY
    items = ["A", "A", "A", "A", "B"]
    ts = [10 * DAY, 10 * DAY + 5, 40 * DAY, 70 * DAY, 90 * DAY]
    rec = purchase_records(items, ts, now)
    assert rec["A"] == PurchaseRecord(times=3, usual_gap_days=30.0, days_since=30.0)
    assert rec["B"] == PurchaseRecord(times=1, usual_gap_days=None, days_since=10.0)


def test_reasons_text_says_each_thing_once() -> None:
    history = {"A": PurchaseRecord(times=3, usual_gap_days=None, days_since=1.0)}
    words = reasons_text(
        ["model:hybrid", "source:bought_before", "bought_before"], history=history, item_id="A"
    )
    assert words == [
        "chosen by the hybrid model (learned re-ranking)",
        "they bought it 3 times before",
    ]


def test_sources_become_one_phrase() -> None:
    words = reasons_text(["model:hybrid", "source:als", "source:ease", "source:popular"])
    assert words == [
        "chosen by the hybrid model (learned re-ranking)",
        "suggested by customers with similar tastes (ALS), items that go with their history "
        "(EASE) and best sellers",
    ]
    assert reasons_text(["source:als"]) == ["suggested by customers with similar tastes (ALS)"]


def test_related_and_new_item_reasons_in_words() -> None:
    from recsys.explain import reason_text

    assert reason_text("similar:often_viewed_with") == "often viewed with this item"
    assert reason_text("similar:content") == "alike in name and category to this item"
    assert (
        reason_text("session:often_viewed_with") == "often viewed with what this visitor looked at"
    )
    assert reason_text("new_item") == "new in the shop"


def test_a_models_explained_item_becomes_codes_with_item_ids() -> None:
    """The codes a served and a stored list both carry: the model, each generator, the flags
    with the partner item's id (an index the vocabulary does not hold keeps the flag alone),
    and they read back in words."""
    from recsys.data.vocab import Vocabulary
    from recsys.explain import reason_codes
    from recsys.models.explained import ItemReason

    items = Vocabulary.from_values(["85123A", "22423", "84879"])

    def explained(partner: int | None) -> ItemReason:
        return ItemReason(1, 0.5, 0.2, ("als", "ease"), True, False, partner)

    codes = reason_codes("hybrid", explained(2), items)
    assert codes == (
        "model:hybrid",
        "source:als",
        "source:ease",
        "bought_before",
        f"often_bought_with:{items.id(2)}",
    )
    assert reason_codes("hybrid", explained(7), items)[-1] == "often_bought_with"
    assert reason_codes("hybrid", explained(None), items)[-1] == "bought_before"
    words = reasons_text(codes, titles={items.id(2): "Mug"})
    assert words[-1] == f"often bought with Mug ({items.id(2)})"
