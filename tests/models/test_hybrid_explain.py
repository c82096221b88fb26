"""The vectorised :meth:`HybridModel.explain` against the per-item loop it replaced.

:func:`reference_explain` is the previous implementation, kept verbatim in logic (one
calibrator call and one Python membership test per listed item); the fast path must give
the same items, scores, probabilities, sources and flags for every user of a synthetic shop,
for users the model does not know, with live history rows, with exclusions and after the
fixed-blend fallback.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import recsys.models.explained as explained_module
from recsys import concurrency
from recsys.data.interactions import InteractionConfig, TrainingData, build_training_data
from recsys.data.schema import EventFrame
from recsys.models.base import top_k
from recsys.models.explained import ItemReason
from recsys.models.features import FEATURE_COLUMN, GENERATORS
from recsys.models.hybrid import HybridModel
from tests.models.conftest import AS_OF
from tests.models.test_hybrid import synthetic_rows


def reference_explain(
    model: HybridModel,
    users: np.ndarray,
    history: sp.csr_matrix,
    k: int,
    *,
    exclude: sp.csr_matrix | None = None,
) -> list[list[ItemReason]]:
    """The per-item explain loop as it was before vectorising (the oracle)."""
    rows, items, x, src = model._pairs(users, history, None)
    n, m = len(users), model.state_.n_items
    raw = model._raw(x)
    scores = np.full((n, m), np.nan, dtype=np.float32)
    scores[rows, items] = raw
    top, _ = top_k(scores, k, exclude=exclude)
    pair_pos = np.full((n, m), -1, dtype=np.int64)
    pair_pos[rows, items] = np.arange(len(rows))
    cooc_t = model.state_.cooc.T.tocsr()
    hist = sp.csr_matrix(history)
    users = np.asarray(users, dtype=np.intp)
    out: list[list[ItemReason]] = []
    for r in range(n):
        u = users[r]
        owned = set(hist.indices[hist.indptr[r] : hist.indptr[r + 1]].tolist())
        if 0 <= u < model.state_.n_users:
            st = model.state_.stats
            owned.update(st.indices[st.indptr[u] : st.indptr[u + 1]].tolist())
        reasons = []
        for item in top[r]:
            if item < 0:
                continue
            p = pair_pos[r, item]
            f = x[p]
            bits = int(src[p])
            sources = tuple(g for b, g in enumerate(GENERATORS) if bits >> b & 1)
            if bits & 1 and not f[FEATURE_COLUMN["bought_before"]] > 0:
                # their own item, not bought: a live view or cart, which is "history"
                sources = ("history", *sources[1:])
            due = bool(f[FEATURE_COLUMN["n_orders"]] >= 2 and f[FEATURE_COLUMN["due_ratio"]] >= 1.0)
            partner = None
            lo, hi = cooc_t.indptr[item], cooc_t.indptr[item + 1]
            cand = cooc_t.indices[lo:hi]
            weights = cooc_t.data[lo:hi]
            sel = np.array([c in owned and c != item for c in cand.tolist()], dtype=bool)
            if sel.any():
                partner = int(cand[sel][np.argmax(weights[sel])])
            reasons.append(
                ItemReason(
                    item=int(item),
                    score=float(raw[p]),
                    probability=float(model._proba(raw[p : p + 1])[0]),
                    sources=sources,
                    bought_before=bool(f[FEATURE_COLUMN["bought_before"]] > 0),
                    due_for_repurchase=due,
                    often_bought_with=partner,
                )
            )
        out.append(reasons)
    return out


@pytest.fixture(scope="module")
def shop() -> TrainingData:
    return build_training_data(
        EventFrame.from_rows(synthetic_rows(seed=11)), InteractionConfig(), as_of=AS_OF
    )


@pytest.fixture(scope="module")
def model(shop: TrainingData) -> HybridModel:
    return HybridModel(factors=8, max_iter=30).fit(shop)


def assert_same(fast: list[list[ItemReason]], slow: list[list[ItemReason]]) -> None:
    assert len(fast) == len(slow)
    for r, (a, b) in enumerate(zip(fast, slow, strict=True)):
        assert a == b, f"row {r} differs"


def test_every_user_gets_the_reference_explanation(model: HybridModel, shop: TrainingData) -> None:
    assert model.ranker_kind_ == "gradient_boosting"  # the calibrated path is the one compared
    users = np.arange(shop.n_users, dtype=np.intp)
    hist = sp.csr_matrix(shop.interactions)
    fast = model.explain(users, hist, 25)
    assert_same(fast, reference_explain(model, users, hist, 25))
    # the comparison is not vacuous: partners, due items and several sources all occur
    flat = [e for row in fast for e in row]
    assert sum(e.often_bought_with is not None for e in flat) > 100
    assert any(e.due_for_repurchase for e in flat)
    assert len({e.sources for e in flat}) > 3


def test_unknown_users_live_history_and_exclusions(
    model: HybridModel, shop: TrainingData, rng: np.random.Generator
) -> None:
    n = 30
    users = rng.integers(0, shop.n_users, size=n).astype(np.intp)
    users[:5] = -1  # unknown to the model: folded in from the history row
    users[5] = shop.n_users + 3  # beyond the state's users: unknown as well
    hist = sp.csr_matrix(shop.interactions[np.maximum(users, 0) % shop.n_users])
    live = sp.random(n, shop.n_items, density=0.05, format="csr", random_state=3)
    keep = np.ones(n, dtype=np.float32)
    users[7], keep[7] = -1, 0.0  # unknown and no history: no list at all
    hist = sp.csr_matrix(sp.diags(keep) @ (hist + live), dtype=np.float32)
    hist.eliminate_zeros()
    exclude = sp.csr_matrix(rng.random((n, shop.n_items)) < 0.1)
    fast = model.explain(users, hist, 40, exclude=exclude)
    assert_same(fast, reference_explain(model, users, hist, 40, exclude=exclude))
    assert fast[7] == []
    assert any(row for row in fast[:5])


def test_fixed_blend_fallback_matches_too(shop: TrainingData) -> None:
    blend = HybridModel(factors=8, min_positives=10**9).fit(shop)
    assert blend.ranker_kind_ == "fixed_blend"
    users = np.arange(0, shop.n_users, 3, dtype=np.intp)
    hist = sp.csr_matrix(shop.interactions[users])
    assert_same(blend.explain(users, hist, 15), reference_explain(blend, users, hist, 15))


def test_ties_go_to_the_lowest_partner_index(model: HybridModel, shop: TrainingData) -> None:
    # a state whose co-occurrence weights are all equal: every owned neighbour ties
    state = model.state_
    flat_cooc = state.cooc.copy()
    flat_cooc.data[:] = 1.0
    tied = HybridModel(factors=8, max_iter=30)
    tied.__dict__.update(model.__dict__)
    tied.state_ = dataclasses.replace(state, cooc=flat_cooc)
    users = np.arange(0, shop.n_users, 2, dtype=np.intp)
    hist = sp.csr_matrix(shop.interactions[users])
    fast = tied.explain(users, hist, 20)
    assert_same(fast, reference_explain(tied, users, hist, 20))
    # the cache follows the state: the tied model did not reuse the original's transpose
    assert_same(model.explain(users, hist, 20), reference_explain(model, users, hist, 20))


class _ObjectsOnly:
    """The hybrid seen only through :meth:`HybridModel.explain` (no ``explain_arrays``): the
    per-item loop :func:`recsys.precompute.precompute` runs for such a model is the oracle."""

    def __init__(self, model: HybridModel) -> None:
        self.model = model

    def explain(self, *args: Any, **kwargs: Any) -> list[list[ItemReason]]:
        return self.model.explain(*args, **kwargs)


@pytest.mark.parametrize("depth", [1, 7, 100])
def test_stored_lists_from_arrays_equal_the_per_item_loop(
    model: HybridModel, shop: TrainingData, depth: int
) -> None:
    from recsys.models.base import Explains, ExplainsArrays
    from recsys.precompute import precompute

    assert isinstance(model, ExplainsArrays)
    oracle = _ObjectsOnly(model)
    assert isinstance(oracle, Explains) and not isinstance(oracle, ExplainsArrays)
    hist = sp.csr_matrix(shop.interactions)
    users = np.arange(0, shop.n_users, 2, dtype=np.intp)
    # small batches: codes and the reason vocabulary carry over from batch to batch
    fast = precompute(model, "hybrid", hist, shop.items, depth=depth, batch=7, users=users)
    slow = precompute(oracle, "hybrid", hist, shop.items, depth=depth, batch=7, users=users)  # type: ignore[arg-type]
    np.testing.assert_array_equal(fast.items, slow.items)
    np.testing.assert_array_equal(fast.scores, slow.scores)
    np.testing.assert_array_equal(fast.reason_codes, slow.reason_codes)
    assert fast.reasons == slow.reasons
    # not vacuous: listed rows, and past the first items many distinct reasons, with partners
    assert (fast.items[users] >= 0).any(axis=1).all()
    if depth > 1:
        assert len(fast.reasons) > 20
        assert any(f.startswith("often_bought_with:") for r in fast.reasons for f in r)


def test_stored_lists_in_big_batches_on_threads_equal_small_batches_on_one(
    model: HybridModel, shop: TrainingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hybrid's default batch (PRECOMPUTE_PAIRS_BATCH: several chunks of pairs, here
    chunks of 5 customers) built on a training run's 2 threads: the lists of batches of 7
    customers on one thread."""
    from recsys import precompute as stored_lists
    from recsys.models import hybrid

    monkeypatch.setattr(hybrid, "CHUNK", 5)
    hist = sp.csr_matrix(shop.interactions)
    assert stored_lists.PRECOMPUTE_PAIRS_BATCH > hybrid.CHUNK < shop.n_users
    small = stored_lists.precompute(model, "hybrid", hist, shop.items, depth=10, batch=7)
    with concurrency.prediction_threads(2):
        big = stored_lists.precompute(model, "hybrid", hist, shop.items, depth=10)
    np.testing.assert_array_equal(big.items, small.items)
    np.testing.assert_array_equal(big.scores, small.scores)
    np.testing.assert_array_equal(big.reason_codes, small.reason_codes)
    assert big.reasons == small.reasons and (big.items >= 0).any()


def test_stored_lists_stored_behind_the_ranking_equal_stored_in_turn(
    model: HybridModel, shop: TrainingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``threads=2``: each batch's lists stored on a thread of their own while the next
    batch ranks; the same lists, codes and reason vocabulary as one thread (batches of 7:
    codes carry over from batch to batch, so an out-of-order store would renumber them)."""
    import threading

    from recsys import precompute as stored_lists

    hist = sp.csr_matrix(shop.interactions)
    users = np.arange(0, shop.n_users, 2, dtype=np.intp)
    in_turn = stored_lists.precompute(model, "hybrid", hist, shop.items, batch=7, users=users)
    store, where = stored_lists._store_explained, []

    def spy(*args: Any) -> None:
        where.append(threading.current_thread().name)
        store(*args)

    monkeypatch.setattr(stored_lists, "_store_explained", spy)
    behind = stored_lists.precompute(
        model, "hybrid", hist, shop.items, batch=7, users=users, threads=2
    )
    np.testing.assert_array_equal(behind.items, in_turn.items)
    np.testing.assert_array_equal(behind.scores, in_turn.scores)
    np.testing.assert_array_equal(behind.reason_codes, in_turn.reason_codes)
    assert behind.reasons == in_turn.reasons and len(behind.reasons) > 20
    assert len(where) == -(-len(users) // 7) > 2
    assert all(name.startswith("recsys-store") for name in where)


def test_an_error_storing_behind_the_ranking_is_raised(
    model: HybridModel, shop: TrainingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recsys import precompute as stored_lists

    calls = []

    def fails(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("the second batch")

    monkeypatch.setattr(stored_lists, "_store_explained", fails)
    hist = sp.csr_matrix(shop.interactions)
    with pytest.raises(MemoryError, match="the second batch"):
        stored_lists.precompute(model, "hybrid", hist, shop.items, batch=7, threads=2)
    # the batches after the failed one were not all ranked and stored regardless
    assert len(calls) < -(-shop.n_users // 7)


def test_explained_arrays_are_the_explanation(model: HybridModel, shop: TrainingData) -> None:
    users = np.arange(0, shop.n_users, 3, dtype=np.intp)
    hist = sp.csr_matrix(shop.interactions[users])
    lists = model.explain_arrays(users, hist, 12)
    explained = model.explain(users, hist, 12)
    flat = [e for row in explained for e in row]
    assert [lists.reason(e) for e in range(len(lists.rows))] == flat
    assert lists.reasons() == flat


def test_kept_stats_keys_follow_the_state_s_stats(model: HybridModel, shop: TrainingData) -> None:
    """The state keeps its purchase stats' keys between batches (``_stats_keys``): the
    features of a batch equal a fresh state's, and a state given other stats keys those."""
    from recsys.models.pair_keys import stats_keys

    state = model.state_
    users = np.arange(0, shop.n_users, 2, dtype=np.intp)
    hist = sp.csr_matrix(shop.interactions[users])
    day = model.as_of_day_
    settings_ = model._settings()
    first = state.pairs(users, hist, day, settings_)
    again = state.pairs(users, hist, day, settings_)  # from the kept keys
    fresh = dataclasses.replace(state).pairs(users, hist, day, settings_)  # keys built anew
    for a, b, c in zip(first, again, fresh, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    # other stats (each customer's first purchased pair dropped): other keys, other features
    stats = state.stats.copy()
    stats.data[stats.indptr[:-1][np.diff(stats.indptr) > 0]] = 0
    stats.eliminate_zeros()
    other = dataclasses.replace(state, stats=stats)
    other._stats_keys_cache = state._stats_keys_cache  # type: ignore[attr-defined]
    np.testing.assert_array_equal(other._stats_keys(), stats_keys(stats, state.n_items))
    original = state.stats
    state.stats = stats  # the same state given other stats
    try:
        np.testing.assert_array_equal(state._stats_keys(), stats_keys(stats, state.n_items))
    finally:
        state.stats = original
    np.testing.assert_array_equal(state._stats_keys(), stats_keys(original, state.n_items))


def test_partners_found_for_a_few_entries_are_those_of_every_entry(
    model: HybridModel, shop: TrainingData, rng: np.random.Generator
) -> None:
    """:meth:`ExplainedLists.prefetch` (a request's few shown items) finds the same partners
    as the whole lists' ``often_bought_with``, and :meth:`reason` reads them."""
    users = np.arange(0, shop.n_users, 2, dtype=np.intp)
    hist = sp.csr_matrix(shop.interactions[users])
    whole = model.explain_arrays(users, hist, 20)
    partners = whole.often_bought_with
    assert (partners >= 0).sum() > 50  # not vacuous
    for _ in range(5):
        few = model.explain_arrays(users, hist, 20)
        entries = rng.choice(len(few.rows), size=int(rng.integers(1, 40)), replace=False)
        few.prefetch(entries.tolist())
        assert "often_bought_with" not in few.__dict__  # only those entries were searched
        assert [few.reason(int(e)) for e in entries] == [whole.reason(int(e)) for e in entries]
        # an entry not prefetched is found on its own
        other = int(np.setdiff1d(np.arange(len(few.rows)), entries)[0])
        assert few.reason(other) == whole.reason(other)
        np.testing.assert_array_equal(few.often_bought_with, partners)


def test_partners_without_a_dense_mask_are_the_same(
    model: HybridModel, shop: TrainingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch too large for a dense users × items mask (a batch of stored lists over a large
    catalogue) finds every partner by looking its users' sorted items up, the same ones."""
    users = np.arange(shop.n_users, dtype=np.intp)
    hist = sp.csr_matrix(shop.interactions[users])
    dense = model.explain_arrays(users, hist, 20).often_bought_with
    assert (dense >= 0).sum() > 50  # not vacuous
    monkeypatch.setattr(explained_module, "_DENSE_OWNED", 0)
    keyed = model.explain_arrays(users, hist, 20).often_bought_with
    np.testing.assert_array_equal(keyed, dense)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 200),
    scale=st.floats(0.01, 100.0),
    rounding=st.sampled_from([None, 0, 1, 3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_isotonic_predict_is_scikit_learns(
    n: int, scale: float, rounding: int | None, seed: int
) -> None:
    """The calibration without scikit-learn's input checks gives its very bits: on random
    points, on every threshold and beyond both ends, with ties and with one threshold."""
    from sklearn.isotonic import IsotonicRegression

    from recsys.models.hybrid import isotonic_predict

    rng = np.random.default_rng(seed)
    x = rng.normal(size=n) * scale
    if rounding is not None:
        x = np.round(x, rounding)
    y = (rng.random(n) < 1 / (1 + np.exp(-x / scale))).astype(float)
    cal = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
    t = np.concatenate(
        [rng.normal(size=64) * scale * 2, cal.X_thresholds_, [cal.X_min_ - 1, cal.X_max_ + 1]]
    )
    expected = cal.predict(t)
    got = isotonic_predict(cal, t)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)


def test_a_request_s_partners_are_searched_a_block_at_a_time(
    model: HybridModel, shop: TrainingData
) -> None:
    """The rules read the best items first: reading a row's top ``k`` searches the partners
    of ``k + 2`` entries at once; a read further down searches the next ``k`` with it."""
    from dataclasses import replace

    from recsys.engine import _explained_candidates

    users = np.array([1], dtype=np.intp)
    lists = model.explain_arrays(users, sp.csr_matrix(shop.interactions[users]), 60)
    searched: list[int] = []

    def counted(entries: np.ndarray) -> np.ndarray:
        searched.append(len(entries))
        return lists.partners_of(entries)

    spied = replace(lists, partners_of=counted)
    _, reasons = _explained_candidates(spied, 1, 5, "hybrid", shop.items)
    lazy = reasons[0]
    assert lazy is not None and len(lazy) > 20
    items = list(lazy)  # rank order
    for item in items[:5]:
        lazy[item]
    assert searched == [5 + 2]  # one search: the first block (the entries read are in it)
    lazy[items[6]]  # within the first block: no search
    assert len(searched) == 1
    lazy[items[15]]  # past it: the next five and that one
    assert searched == [7, 6]
    # each reason is the one the full search gives
    full = _explained_candidates(lists, 1, 5, "hybrid", shop.items)[1][0]
    assert full is not None
    assert all(lazy[i] == full[i] for i in items)


def test_a_request_s_reasons_from_arrays_are_the_per_item_lists(
    model: HybridModel, shop: TrainingData
) -> None:
    """The engine's candidates and reasons from the explained arrays (reasons built when the
    rules read them) equal those from the per-item lists."""
    from recsys.engine import _explained_candidates
    from recsys.explain import reason_codes

    users = np.arange(0, shop.n_users, 3, dtype=np.intp)
    hist = sp.csr_matrix(shop.interactions[users])
    scores, reasons = _explained_candidates(
        model.explain_arrays(users, hist, 60), len(users), 10, "hybrid", shop.items
    )
    for r, explained in enumerate(model.explain(users, hist, 60)):
        best = {e.item: e.score for e in explained}
        why = {e.item: reason_codes("hybrid", e, shop.items) for e in explained}
        np.testing.assert_array_equal(scores[r].index, np.fromiter(best, dtype=np.intp))
        np.testing.assert_array_equal(scores[r].score, np.fromiter(best.values(), dtype=np.float32))
        lazy = reasons[r]
        assert lazy is not None and len(lazy) == len(why)
        # read in an order of its own: the best items, one far down, then every one
        items = list(why)
        for item in items[:3] + items[-1:] + items:
            assert lazy[item] == why[item]
        assert dict(lazy) == why
    assert any(f.startswith("often_bought_with:") for m in reasons for r in m.values() for f in r)  # type: ignore[union-attr]
