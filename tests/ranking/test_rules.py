"""Business rules: one test per rule, and the laws as hypothesis properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.vocab import Vocabulary
from recsys.errors import ConfigError
from recsys.ranking.rules import (
    FALLBACK_REASON,
    CatalogArrays,
    RequestFilters,
    RuleSet,
    apply_rules,
    compile_rules,
    load_rules,
    parse_rules,
)

IDS = ["A", "B", "C", "D", "E", "F"]
CATS = ["Home > Kitchen", "Home > Kitchen", "Food", "Home > Light", "Paper", "Paper"]
PRICES = [3.0, 2.0, 4.0, 20.0, 1.0, None]
STOCK = [True, True, True, True, False, True]
CATALOG = CatalogArrays.from_records(
    Vocabulary(IDS),
    [
        {"item_id": i, "category": c, "price": p, "in_stock": s}
        for i, c, p, s in zip(IDS, CATS, PRICES, STOCK, strict=True)
    ],
)
SCORES = np.array([6, 5, 4, 3, 2, 1], dtype=np.float32)


def ids(rules: RuleSet, k: int = 6, scores=SCORES, **kw) -> list[str]:
    ranked = apply_rules(scores, k, compiled=compile_rules(rules, CATALOG), catalog=CATALOG, **kw)
    return [IDS[r.index] for r in ranked]


def test_out_of_stock_is_excluded_unless_the_rule_is_off() -> None:
    assert "E" not in ids(RuleSet())
    assert "E" in ids(RuleSet(exclude_out_of_stock=False))


def test_purchased_items_are_excluded_except_repeatable_categories() -> None:
    bought = np.array([0, 2])  # A (kitchen) and C (food)
    on = RuleSet(exclude_purchased=True)
    assert ids(on, 3, purchased=bought) == ["B", "D", "F"]
    got = ids(on.model_copy(update={"repeatable_categories": ["Food"]}), 3, purchased=bought)
    assert got == ["B", "C", "D"]
    # per request: off, and on when the rules leave it off (the default)
    got = ids(on, 2, purchased=bought, request=RequestFilters(exclude_purchased=False))
    assert got == ["A", "B"]
    assert ids(RuleSet(), 2, purchased=bought) == ["A", "B"]
    got = ids(RuleSet(), 2, purchased=bought, request=RequestFilters(exclude_purchased=True))
    assert got == ["B", "D"]


def test_request_excludes_category_and_price_filters() -> None:
    assert ids(RuleSet(), 2, request=RequestFilters(exclude=("A", "nope"))) == ["B", "C"]
    assert ids(RuleSet(), 6, request=RequestFilters(category="Home")) == ["A", "B", "D"]
    # "Home > K" is not a whole level: matches nothing
    assert ids(RuleSet(), 6, request=RequestFilters(category="Home > K")) == []
    got = ids(RuleSet(), 6, request=RequestFilters(min_price=2.5, max_price=10))
    assert got == ["A", "C"]


def test_allow_and_deny_lists() -> None:
    assert ids(RuleSet(allow=["C", "D"])) == ["C", "D"]
    assert ids(RuleSet(deny=["A"], deny_categories=["Paper"])) == ["B", "C", "D"]


def test_boost_and_bury_reorder() -> None:
    got = apply_rules(
        SCORES,
        2,
        compiled=compile_rules(
            RuleSet.model_validate(
                {"boost": [{"name": "light", "categories": ["Home > Light"], "factor": 3}]}
            ),
            CATALOG,
        ),
        catalog=CATALOG,
    )
    assert [IDS[r.index] for r in got] == ["D", "A"]
    assert "rule:boost:light" in got[0].reasons
    buried = RuleSet.model_validate({"bury": [{"name": "b", "items": ["A", "B"]}]})
    assert ids(buried, 5) == ["C", "D", "F", "A", "B"]


def test_pin_takes_its_position_and_bypasses_score() -> None:
    rules = RuleSet.model_validate({"pin": [{"name": "hero", "item": "F", "position": 1}]})
    got = apply_rules(SCORES, 3, compiled=compile_rules(rules, CATALOG), catalog=CATALOG)
    assert [IDS[r.index] for r in got] == ["F", "A", "B"]
    assert got[0].reasons == ("rule:pin:hero",)
    # an ineligible pin (out of stock) is not shown
    rules = RuleSet.model_validate({"pin": [{"name": "x", "item": "E", "position": 1}]})
    assert ids(rules, 2) == ["A", "B"]


def test_max_per_category_by_level() -> None:
    assert ids(RuleSet(max_per_category=1)) == ["A", "C", "F"]
    assert ids(RuleSet(max_per_category=1, category_level=2)) == ["A", "C", "D", "F"]


def test_a_pin_counts_toward_its_category_cap() -> None:
    # B (Home) pinned first under a cap of one per top-level category: A (Home) must not follow
    rules = RuleSet.model_validate(
        {"max_per_category": 1, "pin": [{"name": "hero", "item": "B", "position": 1}]}
    )
    assert ids(rules) == ["B", "C", "F"]
    # pins alone over the cap: both shown, no other item of that category
    two = RuleSet.model_validate(
        {
            "max_per_category": 1,
            "pin": [
                {"name": "a", "item": "A", "position": 1},
                {"name": "b", "item": "B", "position": 2},
            ],
        }
    )
    assert ids(two) == ["A", "B", "C", "F"]


def test_a_placement_overrides_the_defaults_key_by_key() -> None:
    rules = parse_rules(
        {
            "deny": ["C"],
            "max_per_category": 2,
            "pin": [{"name": "hero", "item": "F", "position": 1}],
            "placements": {"checkout": {"max_per_category": 1}, "home": {"deny": []}},
        }
    )
    checkout = rules.for_placement("checkout")
    assert checkout.max_per_category == 1
    assert checkout.deny == ["C"] and [p.item for p in checkout.pin] == ["F"]
    assert (
        rules.for_placement("home").deny == [] and rules.for_placement("home").max_per_category == 2
    )
    assert rules.for_placement("checkout") is checkout, "merged once"
    assert rules.for_placement("other") is rules


def test_backfill_from_popular_when_model_scores_few() -> None:
    scores = np.full(6, np.nan, dtype=np.float32)
    scores[3] = 1.0
    got = apply_rules(
        scores,
        3,
        compiled=compile_rules(RuleSet(), CATALOG),
        catalog=CATALOG,
        fallback_order=np.array([5, 2, 0]),
        fallback_scores=np.linspace(1, 0, 6),
    )
    assert [IDS[r.index] for r in got] == ["D", "F", "C"]
    assert got[1].reasons == (FALLBACK_REASON,)
    assert ids(RuleSet(backfill=False), 3, scores=scores) == ["D"]


def test_rules_file_errors_name_the_rule_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text('[[boost]]\nname = "summer"\nitems = ["A"]\nfactor = -1\n')
    with pytest.raises(ConfigError, match=r"boost\.0\.factor"):
        load_rules(bad)
    with pytest.raises(ConfigError, match="unknown key 'max_per_categroy'"):
        parse_rules({"max_per_categroy": 2})
    with pytest.raises(ConfigError, match="both use position 1"):
        parse_rules(
            {
                "pin": [
                    {"name": "a", "item": "A", "position": 1},
                    {"name": "hero", "item": "B", "position": 1},
                ]
            }
        )
    good = tmp_path / "ok.toml"
    good.write_text("max_per_category = 2\n[placements.checkout]\nmax_per_category = 1\n")
    rules = load_rules(good)
    assert rules.for_placement("checkout").max_per_category == 1
    assert rules.for_placement("home").max_per_category == 2


@st.composite
def cases(draw: st.DrawFn):
    n = len(IDS)
    scores = draw(st.lists(st.one_of(st.none(), st.floats(-10, 10)), min_size=n, max_size=n))
    arr = np.array([np.nan if s is None else s for s in scores], dtype=np.float32)
    k = draw(st.integers(0, 10))
    exclude = tuple(draw(st.lists(st.sampled_from(IDS), max_size=3)))
    bought = np.array(draw(st.lists(st.integers(0, n - 1), max_size=3)), dtype=np.intp)
    pin = draw(st.one_of(st.none(), st.tuples(st.sampled_from(IDS), st.integers(1, 4))))
    return arr, k, exclude, bought, pin


@settings(max_examples=150, deadline=None)
@given(cases())
def test_laws(case) -> None:
    scores, k, exclude, bought, pin = case
    data: dict = {"exclude_purchased": True}
    if pin:
        data["pin"] = [{"name": "p", "item": pin[0], "position": pin[1]}]
    rules = RuleSet.model_validate(data)
    compiled = compile_rules(rules, CATALOG)
    request = RequestFilters(exclude=exclude)
    got = apply_rules(
        scores,
        k,
        compiled=compiled,
        catalog=CATALOG,
        request=request,
        purchased=bought,
        fallback_order=np.arange(6),
    )
    got_ids = [IDS[r.index] for r in got]
    excluded = set(exclude) | {IDS[i] for i in bought} | {"E"}
    eligible = [i for i in IDS if i not in excluded]
    assert len(got_ids) == len(set(got_ids)), "no duplicates"
    assert not set(got_ids) & excluded, "never an excluded item"
    assert len(got_ids) == min(k, len(eligible))
    if pin and pin[0] in eligible and pin[1] <= len(got_ids):
        assert got_ids[pin[1] - 1] == pin[0]
    assert all(np.isfinite(r.score) for r in got)
