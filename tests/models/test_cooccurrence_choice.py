"""``choose=True``: the test that picks a shop's co-occurrence normalisation on its own baskets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.interactions import TrainingData
from recsys.data.vocab import Vocabulary
from recsys.models.cooccurrence import (
    CHOICE_FILE,
    CHOICE_HELD_OUT,
    CooccurrenceModel,
    NormalisationChoice,
    choose_normalisation,
    completion_hits,
)

N_ITEMS = 7


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.sets(st.integers(0, N_ITEMS - 1), min_size=1, max_size=4), min_size=1, max_size=8),
    st.lists(st.integers(0, 3), min_size=N_ITEMS * N_ITEMS, max_size=N_ITEMS * N_ITEMS),
    st.lists(st.integers(0, 3), min_size=N_ITEMS, max_size=N_ITEMS),
    st.integers(1, 4),
    st.data(),
)
def test_completion_hits_equal_a_brute_force_rank(
    baskets: list[set[int]], sim: list[int], popularity: list[int], k: int, data: st.DataObject
) -> None:
    """Hidden item ranked among the items a row reaches (score > 0), not the basket's own,
    by score then popularity; a miss when nothing reaches it. Small integer values make ties."""
    similarity = np.array(sim, dtype=np.float64).reshape(N_ITEMS, N_ITEMS)
    pop = np.array(popularity, dtype=np.float64)
    hidden = np.array([data.draw(st.sampled_from(sorted(b))) for b in baskets], dtype=np.intp)
    rest = np.zeros((len(baskets), N_ITEMS))
    for r, basket in enumerate(baskets):
        rest[r, sorted(basket - {int(hidden[r])})] = 1.0
    got = completion_hits(sp.csr_matrix(rest), hidden, sp.csr_matrix(similarity), pop, k)
    for r in range(len(baskets)):
        scores = rest[r] @ similarity
        h = int(hidden[r])
        listed = [j for j in range(N_ITEMS) if scores[j] > 0 and rest[r, j] == 0]
        ahead = [
            j
            for j in listed
            if scores[j] > scores[h] or (scores[j] == scores[h] and pop[j] > pop[h])
        ]
        assert got[r] == (h in listed and 1 + len(ahead) <= k), (r, scores, h)


def planted_shop(n_baskets: int = 4000, seed: int = 0) -> sp.csr_matrix:
    """Baskets where raw counts list best-sellers first and miss the real complements.

    Items 0-14 are best-sellers, each in a basket at random with probability 0.5; items
    15-74 come in 30 complementary pairs (15 + 2p, 16 + 2p). A basket holds one pair's first
    item, with its complement only 30 % of the time: a best-seller is in more baskets with
    the first item than its complement is, so raw counts rank the complement behind them,
    while jaccard and cosine weigh the best-sellers down."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for r in range(n_baskets):
        items = set(np.flatnonzero(rng.random(15) < 0.5).tolist())
        p = int(rng.integers(30))
        items.add(15 + 2 * p)
        if rng.random() < 0.3:
            items.add(16 + 2 * p)
        rows += [r] * len(items)
        cols += sorted(items)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_baskets, 75))


def choose(baskets: sp.csr_matrix, normalisation: str, **kw: float) -> object:
    return choose_normalisation(
        baskets,
        normalisation=normalisation,
        alpha=kw.get("alpha", 0.5),
        min_support=2,
        neighbours=50,
    )


def test_a_significantly_better_normalisation_replaces_the_configured() -> None:
    choice = choose(planted_shop(), "count")
    assert choice.reason == "better"
    assert choice.normalisation in ("cosine", "jaccard")
    rates = choice.hit_rates
    assert choice.baskets > 700 and set(rates) == {"count", "cosine", "jaccard"}
    assert rates[choice.normalisation] == max(rates.values()) > rates["count"]
    assert choice.p_values[choice.normalisation] < 0.01


def test_the_configured_normalisation_stays_when_nothing_beats_it() -> None:
    choice = choose(planted_shop(n_baskets=20_000), "jaccard")
    assert (choice.normalisation, choice.reason) == ("jaccard", "configured")
    assert choice.baskets == 3000  # a sample of the held-out baskets
    assert choice.p_values["cosine"] >= 0.01
    assert set(choice.hit_rates) == {"jaccard", "cosine"}  # tried once, not twice


def test_too_few_baskets_run_no_test() -> None:
    choice = choose(planted_shop(n_baskets=500), "asymmetric", alpha=0.65)
    assert (choice.normalisation, choice.alpha) == ("asymmetric", 0.65)
    assert choice.reason.startswith("no test:") and choice.baskets == 0


def with_last_one_offs(baskets: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """``baskets``, each with one more item of its own (that nothing co-occurs with), and that
    item as the one to hide."""
    n, m = baskets.shape
    own = sp.csr_matrix((np.ones(n), (np.arange(n), m + np.arange(n))), shape=(n, m + n))
    wider = sp.csr_matrix((baskets.data, baskets.indices, baskets.indptr), shape=(n, m + n))
    return sp.csr_matrix(wider + own), m + np.arange(n)


def test_hide_picks_the_item_each_basket_hides() -> None:
    """A basket's hidden item is ``hide``'s: here one no list can reach, so every normalisation
    misses every basket, where hiding a random item finds some; ``-1``: not tested."""
    baskets, last = with_last_one_offs(planted_shop())

    def test(hide: np.ndarray | None) -> NormalisationChoice:
        return choose_normalisation(
            baskets, normalisation="cosine", alpha=0.5, min_support=1, neighbours=50, hide=hide
        )

    at_random = test(None)
    assert min(at_random.hit_rates.values()) > 0.2 and at_random.hidden == "random"
    newest = test(last)
    assert set(newest.hit_rates.values()) == {0.0} and newest.reason == "configured"
    assert newest.hidden == "newest"
    some = np.where(np.arange(len(last)) % 2 == 0, last, -1)
    partly = test(some)
    held_out = np.random.default_rng(0).random(len(last)) < CHOICE_HELD_OUT
    assert partly.baskets == np.count_nonzero(held_out & (some >= 0)) < newest.baskets
    assert set(partly.hit_rates.values()) == {0.0}


def test_a_session_model_hides_each_sessions_newest_item(tiny_data: TrainingData) -> None:
    sessions, last = with_last_one_offs(planted_shop())
    items = Vocabulary.from_values(f"i{k:05d}" for k in range(sessions.shape[1]))
    shop = dataclasses.replace(tiny_data, sessions=sessions, items=items, session_newest=last)
    viewed = CooccurrenceModel(source="session", min_support=1, choose=True).fit(shop)
    assert viewed.choice_ is not None and set(viewed.choice_.hit_rates.values()) == {0.0}
    assert viewed.choice_.hidden == "newest"
    assert viewed.fit_report() == {"choice": viewed.choice_.as_dict()}  # the manifest says so
    # orders have no newest item: the same baskets as orders hide random items
    bought = CooccurrenceModel(min_support=1, choose=True).fit(
        dataclasses.replace(shop, orders=sessions)
    )
    assert bought.choice_ is not None and min(bought.choice_.hit_rates.values()) > 0.2
    assert bought.choice_.hidden == "random"


def with_orders(data: TrainingData, orders: sp.csr_matrix) -> TrainingData:
    """``data`` with ``orders`` for baskets, over as many items as they have."""
    items = Vocabulary.from_values(f"i{k:03d}" for k in range(orders.shape[1]))
    return dataclasses.replace(data, orders=orders, items=items)


def test_the_model_serves_what_it_chose_and_keeps_it(
    tiny_data: TrainingData, tmp_path: Path
) -> None:
    shop = with_orders(tiny_data, planted_shop())
    model = CooccurrenceModel(normalisation="count", choose=True).fit(shop)
    assert model.choice_ is not None and model.choice_.reason == "better"
    chosen = model.normalisation_
    plain = CooccurrenceModel(normalisation=chosen).fit(shop)
    assert (model.similarity_ != plain.similarity_).nnz == 0
    assert model.fit_report() == {"choice": model.choice_.as_dict()}

    model.save(tmp_path / "m")
    assert (tmp_path / "m" / CHOICE_FILE).exists()
    loaded = CooccurrenceModel.load(tmp_path / "m")
    assert loaded.normalisation == "count" and loaded.normalisation_ == chosen
    assert loaded.choice_ == model.choice_

    # a choice saved before the test said which item it hid: its test hid random ones
    saved = json.loads((tmp_path / "m" / CHOICE_FILE).read_text())
    del saved["hidden"]
    (tmp_path / "m" / CHOICE_FILE).write_text(json.dumps(saved))
    older = CooccurrenceModel.load(tmp_path / "m").choice_
    assert older == dataclasses.replace(model.choice_, hidden="random")


def test_without_choose_nothing_is_tested(tiny_data: TrainingData, tmp_path: Path) -> None:
    model = CooccurrenceModel(normalisation="conditional").fit(
        with_orders(tiny_data, planted_shop())
    )
    assert model.choice_ is None and model.fit_report() is None
    assert model.normalisation_ == "conditional"
    model.save(tmp_path / "m")
    assert not (tmp_path / "m" / CHOICE_FILE).exists()
    assert CooccurrenceModel.load(tmp_path / "m").normalisation_ == "conditional"


def warm_started(
    data: TrainingData, before: str, after: str
) -> tuple[CooccurrenceModel, CooccurrenceModel]:
    """A model fitted with ``choose`` on the planted shop's first 3,500 baskets, configured
    ``before``, and one configured ``after`` warm-started from it with the other 500."""
    shop = planted_shop()
    old = CooccurrenceModel(normalisation=before, choose=True)
    old.fit(with_orders(data, shop[:3500]))
    new = CooccurrenceModel(normalisation=after, choose=True)
    new.warm_start(old, np.arange(75), shop[3500:])
    return old, new.fit(with_orders(data, shop))


def test_a_warm_start_keeps_the_previous_choice(tiny_data: TrainingData) -> None:
    old, new = warm_started(tiny_data, "count", "count")
    assert new.choice_ is old.choice_
    shop = with_orders(tiny_data, planted_shop())
    full = CooccurrenceModel(normalisation=old.normalisation_).fit(shop)
    assert (new.similarity_ != full.similarity_).nnz == 0


def test_a_warm_start_from_another_configured_normalisation_tests_again(
    tiny_data: TrainingData,
) -> None:
    old, new = warm_started(tiny_data, "count", "jaccard")
    assert new.choice_ is not old.choice_ and new.choice_ is not None
    assert "jaccard" in new.choice_.hit_rates and "count" not in new.choice_.hit_rates
