"""Rules on a request's candidates: the same list as on a dense score vector, for any rules."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.vocab import Vocabulary
from recsys.ranking.rules import (
    Candidates,
    CatalogArrays,
    RequestFilters,
    RuleSet,
    apply_rules,
    compile_rules,
    eligible_mask,
)

CATEGORIES = ["Home > Kitchen", "Home > Light", "Food", "Paper", ""]


def _catalog(n: int, seed: int) -> CatalogArrays:
    rng = np.random.default_rng(seed)
    ids = [f"i{j}" for j in range(n)]
    return CatalogArrays.from_records(
        Vocabulary(ids),
        [
            {
                "item_id": i,
                "category": CATEGORIES[int(rng.integers(len(CATEGORIES)))],
                "price": None if rng.random() < 0.2 else float(rng.integers(1, 50)),
                "in_stock": bool(rng.random() < 0.85),
            }
            for i in ids
        ],
    )


rule_sets = st.builds(
    RuleSet,
    exclude_purchased=st.booleans(),
    repeatable_categories=st.lists(st.sampled_from(["Food", "Paper"]), max_size=1),
    exclude_out_of_stock=st.booleans(),
    max_per_category=st.none() | st.integers(1, 3),
    deny=st.lists(st.sampled_from([f"i{j}" for j in range(10)]), max_size=3),
    deny_categories=st.lists(st.sampled_from(["Paper", "Home > Light"]), max_size=1),
    boost=st.lists(
        st.builds(
            dict,
            name=st.just("b"),
            categories=st.just(["Home"]),
            factor=st.sampled_from([0.5, 2.0]),
        ),
        max_size=1,
    ),
    bury=st.lists(st.builds(dict, name=st.just("z"), categories=st.just(["Food"])), max_size=1),
    pin=st.lists(
        st.builds(dict, name=st.just("p"), item=st.just("i3"), position=st.integers(1, 4)),
        max_size=1,
    ),
    backfill=st.booleans(),
)

filters = st.builds(
    RequestFilters,
    exclude=st.lists(st.sampled_from([f"i{j}" for j in range(12)]), max_size=3).map(tuple),
    category=st.none() | st.sampled_from(["Home", "Food", "Home > Kitchen"]),
    min_price=st.none() | st.sampled_from([5.0, 20.0]),
    max_price=st.none() | st.sampled_from([30.0]),
    exclude_purchased=st.none() | st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 60),
    seed=st.integers(0, 10_000),
    scored=st.floats(0.0, 1.0),
    k=st.integers(1, 15),
    rules=rule_sets,
    request=filters,
)
def test_candidates_give_the_dense_list(
    n: int, seed: int, scored: float, k: int, rules: RuleSet, request: RequestFilters
) -> None:
    """Candidates.from_dense(v) and v rank alike; so do the candidates in any order."""
    catalog = _catalog(n, seed)
    compiled = compile_rules(rules, catalog)
    rng = np.random.default_rng(seed + 1)
    # ties on purpose (rounded scores), negatives, and NaN for the unscored items
    dense = np.round(rng.normal(size=n), 1).astype(np.float32)
    dense[rng.random(n) >= scored] = np.nan
    purchased = np.flatnonzero(rng.random(n) < 0.2)
    popular = rng.permutation(n)[: max(0, n - 3)]  # a partial popularity order
    pop_scores = rng.random(n).astype(np.float32)
    kw = dict(
        compiled=compiled,
        catalog=catalog,
        request=request,
        purchased=purchased,
        fallback_order=popular,
        fallback_scores=pop_scores,
    )
    want = apply_rules(dense, k, **kw)  # type: ignore[arg-type]
    cand = Candidates.from_dense(dense)
    assert apply_rules(cand, k, **kw) == want  # type: ignore[arg-type]
    shuffled = rng.permutation(len(cand))
    moved = Candidates(cand.index[shuffled], cand.score[shuffled])
    assert apply_rules(moved, k, **kw) == want  # type: ignore[arg-type]
    # the list holds eligible items only, each once
    mask = eligible_mask(compiled, catalog, request, purchased)
    chosen = [r.index for r in want if not r.reasons[0].startswith("rule:pin")]
    assert all(mask[i] for i in chosen)
    assert len(set(chosen)) == len(chosen)


@given(
    seed=st.integers(0, 1000),
    prefix=st.sampled_from(["Home", "Home > Kitchen", "Food", "Hom", "Home >"]),
)
def test_category_mask_matches_whole_levels(seed: int, prefix: str) -> None:
    catalog = _catalog(40, seed)
    want = [c == prefix or c.startswith(prefix + " > ") for c in catalog.category.tolist()]
    assert catalog.category_mask([prefix]).tolist() == want
    assert catalog.category_mask([prefix]).tolist() == want  # kept, and the same
