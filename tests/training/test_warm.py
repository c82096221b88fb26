"""Warm starts: carried co-occurrence counts equal a recount; factors follow their ids; the
pipeline's ``--warm-start`` publishes a version that says how each model started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.cli import main
from recsys.data.interactions import InteractionConfig, build_training_data
from recsys.data.schema import MICROS_PER_DAY, EventRow
from recsys.data.vocab import Vocabulary
from recsys.errors import ModelError
from recsys.models.als import ALSModel
from recsys.models.cooccurrence import CooccurrenceModel, cooccurrence_counts
from recsys.models.features import FEATURES
from recsys.models.hybrid import HybridModel
from recsys.registry import Registry
from recsys.settings import Settings, load_settings
from recsys.store import open_store

START = 1_700_000_000 * 1_000_000


def _baskets(draw: Any, n_items: int, n: int) -> sp.csr_matrix:
    rows = [draw(st.lists(st.integers(0, n_items - 1), min_size=1, max_size=5)) for _ in range(n)]
    r = np.repeat(np.arange(n), [len(x) for x in rows])
    c = np.concatenate([np.asarray(x, dtype=np.intp) for x in rows]) if rows else np.empty(0)
    m = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, n_items))
    m.data[:] = 1.0
    return m


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_carried_counts_plus_new_baskets_equal_a_recount(data: st.DataObject) -> None:
    n_old = data.draw(st.integers(2, 8))
    n_added = data.draw(st.integers(0, 3))
    old_baskets = _baskets(data.draw, n_old, data.draw(st.integers(1, 12)))
    # the new vocabulary: the old items in a shuffled order, plus some new ones
    order = np.asarray(data.draw(st.permutations(range(n_old))), dtype=np.intp)
    items = np.r_[order, np.full(n_added, -1)]  # new index -> old index
    n_new = len(items)
    new_baskets = _baskets(data.draw, n_new, data.draw(st.integers(0, 6)))

    previous = CooccurrenceModel(min_support=1, neighbours=n_old)
    previous.fit(_data_with_orders(old_baskets))
    warm = CooccurrenceModel(min_support=1, neighbours=n_new)
    old_in_new = sp.csr_matrix(old_baskets[:, items.clip(0)].multiply(items >= 0))
    warm.warm_start(previous, items, new_baskets).fit(_data_with_orders(old_in_new))
    cold = CooccurrenceModel(min_support=1, neighbours=n_new)
    cold.fit(_data_with_orders(sp.vstack([old_in_new, new_baskets]).tocsr()))

    expected = cooccurrence_counts(sp.vstack([old_in_new, new_baskets]).tocsr())
    assert warm.counts_ is not None
    assert (warm.counts_ != expected).nnz == 0
    assert warm.n_baskets_ == cold.n_baskets_
    np.testing.assert_allclose(warm.similarity_.toarray(), cold.similarity_.toarray(), rtol=1e-6)


def _data_with_orders(orders: sp.csr_matrix) -> Any:
    """The smallest stand-in for TrainingData that a basket co-occurrence fit reads."""

    class _Data:
        n_items = orders.shape[1]

    d = _Data()
    d.orders = orders  # type: ignore[attr-defined]
    return d


def test_a_model_that_kept_no_counts_cannot_be_warm_started() -> None:
    baskets = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32))
    previous = CooccurrenceModel(min_support=1, keep_counts=False).fit(_data_with_orders(baskets))
    with pytest.raises(ModelError, match="kept no pair counts"):
        CooccurrenceModel().warm_start(previous, np.arange(3), baskets)


def test_factors_follow_their_ids_and_new_ones_start_small(rng: np.random.Generator) -> None:
    previous = ALSModel(factors=4)
    previous.user_factors_ = rng.random((3, 4), dtype=np.float32) + 1.0
    previous.item_factors_ = rng.random((5, 4), dtype=np.float32) + 1.0
    users = np.array([2, -1, 0], dtype=np.intp)
    items = np.array([4, 3, -1, 0, 1, 2], dtype=np.intp)
    model = ALSModel(factors=4).warm_start(previous, users, items)
    assert model._initial is not None
    user_init, item_init = model._initial
    np.testing.assert_array_equal(user_init[[0, 2]], previous.user_factors_[[2, 0]])
    np.testing.assert_array_equal(item_init[[0, 1, 3]], previous.item_factors_[[4, 3, 0]])
    assert (user_init[1] < 0.01).all() and (item_init[2] < 0.01).all()


def _purchases(
    rng: np.random.Generator, n_users: int, days: int, offset: int, n_items: int = 30
) -> list[EventRow]:
    weights = 1.0 / np.arange(1, n_items + 1)
    weights /= weights.sum()
    rows = []
    for u in range(n_users):
        for o in range(3):
            ts = START + (offset + int(rng.integers(0, days))) * MICROS_PER_DAY
            for j, item in enumerate(rng.choice(n_items, size=3, p=weights, replace=False)):
                rows.append(
                    EventRow(
                        f"e{offset}-{u}-{o}-{j}",
                        f"u{u}",
                        None,
                        f"i{item}",
                        "purchase",
                        ts + j,
                        1.0,
                        2.0,
                        f"o{offset}-{u}-{o}",
                        None,
                    )
                )
    return rows


def _train_each(config: Path, *batches: list[EventRow]) -> tuple[Registry, list[str]]:
    """Store each batch of events, then ``recsys train --warm-start`` (the first run has no
    version to start from: a full run); the registry and the versions, in order."""
    registry = Registry(load_settings(Settings).registry_path)
    store = open_store(load_settings(Settings))
    versions = []
    try:
        for batch in batches:
            store.insert_events(batch)
            assert main(["train", "--config", str(config), "--warm-start"]) == 0
            versions.append(registry.current_version() or "")
    finally:
        store.close()
    return registry, versions


def test_a_warm_run_corrects_ease_for_the_customers_with_new_events(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """EASE and the hybrid's EASE generator are corrected, not solved again, and come out as
    a full run's: the manifest says so, and the weights match to float32 rounding."""
    from recsys.models.ease import EASEModel

    config = tmp_path / "train.toml"
    config.write_text(
        'default_model = "ease"\nthreads = 1\n'
        "[models.ease]\nparams = { regularization = 20.0 }\n"
        "[models.hybrid]\nparams = { factors = 8, max_iter = 20, min_positives = 10 }\n"
    )
    # three customers come back the next day
    registry, (first, second) = _train_each(
        config, _purchases(rng, 200, 60, 0, n_items=120), _purchases(rng, 3, 1, 61, n_items=120)
    )
    models = registry.manifest(second)["warm_start"]["models"]
    import re

    # an item nobody had bought may sell on the second day: "(0 new items)" or "(1 new items)"
    corrected = r"corrected by a low-rank update \(3 rows in, 3 out\)"
    assert re.fullmatch(rf"weights from {first} \(\d new items\); {corrected}", models["ease"])
    assert re.fullmatch(
        rf"ranker and ALS factors from {first} \(0 new users, \d new items\); EASE generator "
        + corrected,
        models["hybrid"],
    )
    # the same data trained in full
    assert main(["train", "--config", str(config), "--force"]) == 0
    third = registry.current_version()
    assert third is not None and "warm_start" not in registry.manifest(third)
    warm, full = (EASEModel.load(registry.path(v) / "models" / "ease") for v in (second, third))
    assert np.abs(warm.weights_ - full.weights_).max() <= 1e-4 * np.abs(full.weights_).max()
    warm_h, full_h = (
        HybridModel.load(registry.path(v) / "models" / "hybrid").state_.ease
        for v in (second, third)
    )
    assert warm_h is not None and full_h is not None
    assert np.abs(warm_h - full_h).max() <= 1e-4 * np.abs(full_h).max()
    # yesterday's weights differ by more: the correction did something
    from recsys.artifacts import read_version

    before = EASEModel.load(registry.path(first) / "models" / "ease")
    old_of = read_version(registry.path(first)).items.indices(
        read_version(registry.path(third)).items.ids
    )
    kept = np.flatnonzero(old_of >= 0)
    yesterday = before.weights_[np.ix_(old_of[kept], old_of[kept])]
    assert (
        np.abs(yesterday - full.weights_[np.ix_(kept, kept)]).max()
        > 1e-2 * np.abs(full.weights_).max()
    )


def test_warm_start_run_starts_from_the_current_version(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    config = tmp_path / "train.toml"
    config.write_text(
        'default_model = "als"\nthreads = 1\n'
        "[models.popular]\n"
        "[models.als]\nparams = { factors = 8, iterations = 5 }\n"
        '[models.bought_together]\nmodel = "cooccurrence"\nparams = { min_support = 1 }\n'
        "[models.hybrid]\nparams = { factors = 8, max_iter = 20, min_positives = 10 }\n"
    )
    # then a day of new events, with a new customer and the same items
    registry, (first, second) = _train_each(
        config, _purchases(rng, 40, 60, 0), _purchases(rng, 41, 1, 61)
    )
    assert second != first
    manifest = registry.manifest(second)
    warm = manifest["warm_start"]
    assert warm["from"] == first and warm["new_events"] > 0
    assert warm["models"]["als"].startswith(f"factors from {first} (1 new users")
    assert warm["models"]["bought_together"].startswith(f"counts from {first} plus ")
    assert warm["models"]["popular"].startswith("cold:")
    # 41 customers with new events (81 rows in or out) are too many to correct the EASE of
    # 30 items: solved
    assert warm["models"]["hybrid"] == (
        f"ranker and ALS factors from {first} (1 new users, 0 new items); EASE generator "
        "solved in full, not updated: 81 changed rows are too many for 30 items"
    )
    # the hybrid's ranker is the first version's: the same trees, learned on the same pairs
    before, after = (
        HybridModel.load(registry.path(v) / "models" / "hybrid") for v in (first, second)
    )
    assert before.ranker_kind_ == after.ranker_kind_ == "gradient_boosting"
    assert after.train_stats_ == before.train_stats_
    assert after.as_of_day_ > before.as_of_day_
    x = rng.random((500, len(FEATURES)))
    np.testing.assert_array_equal(after.ranker_.predict_proba(x), before.ranker_.predict_proba(x))
    assert manifest["metrics"] == {} and "warm start" in manifest["evaluation"]["skipped"]
    assert manifest["models"]["als"]["params"]["warm_iterations"] == 3

    # the carried counts are exactly a recount over every order
    folder = registry.path(second)
    store = open_store(load_settings(Settings))
    try:
        data = build_training_data(store.read_events(), InteractionConfig())
    finally:
        store.close()
    model = CooccurrenceModel.load(folder / "models" / "bought_together")
    assert Vocabulary.from_json(json.loads((folder / "items.json").read_text())) == data.items
    assert model.counts_ is not None
    assert (model.counts_ != cooccurrence_counts(data.orders)).nnz == 0


# -- stored lists carried by a warm run ------------------------------------------------------------


def _stored(pre: Any, items: Vocabulary, u: int) -> list[tuple[str, float, tuple[str, ...]]]:
    """Row ``u`` of stored lists as (item id, score, reasons)."""
    out = []
    for j, i in enumerate(np.asarray(pre.items[u]).tolist()):
        if i < 0:
            continue
        why = pre.reasons[int(pre.reason_codes[u, j])] if pre.reason_codes is not None else ()
        out.append((items.id(i), float(pre.scores[u, j]), why))
    return out


def _close(
    a: list[tuple[str, float, tuple[str, ...]]], b: list[tuple[str, float, tuple[str, ...]]]
) -> bool:
    """The same items and reasons in the same order, the scores to float32 rounding: the
    same model scoring a customer in another batch (BLAS picks its kernels by the matrix
    sizes, so the last bits of a dot product may differ)."""
    x, y = np.array([s for _, s, _ in a]), np.array([s for _, s, _ in b])
    scale = float(np.abs(x).max(initial=0.0))
    return [(i, why) for i, _, why in a] == [(i, why) for i, _, why in b] and bool(
        np.allclose(x, y, rtol=1e-5, atol=1e-6 * scale)
    )


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_merged_lists_hold_the_carried_rows_mapped_and_the_fresh_ones_as_scored(
    data: st.DataObject,
) -> None:
    from recsys.artifacts import Precomputed
    from training.warm import CarriedLists

    n_old, n_new, m, depth = 6, 8, 12, 4
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    explains = data.draw(st.booleans())

    def lists(n: int, reasons: tuple[tuple[str, ...], ...]) -> Precomputed:
        items = np.stack([rng.permutation(m)[:depth] for _ in range(n)]).astype(np.int32)
        items[rng.random(items.shape) < 0.2] = -1
        items = np.sort(items, axis=1)[:, ::-1].copy()  # pads last
        scores = np.where(items >= 0, rng.random(items.shape), np.nan).astype(np.float32)
        codes = rng.integers(0, len(reasons), items.shape).astype(np.int32) if explains else None
        return Precomputed("m", items, scores, codes, reasons if explains else ())

    old = lists(n_old, (("a",), ("b", "c"), ("d",)))
    fresh = lists(n_new, (("d",), ("e",)))
    item_map = rng.permutation(m).astype(np.intp)
    rows = np.sort(rng.choice(n_new, size=data.draw(st.integers(0, n_old)), replace=False))
    old_rows = rng.choice(n_old, size=rows.size, replace=False).astype(np.intp)
    carried = CarriedLists("v1", old, rows.astype(np.intp), old_rows, item_map, np.array([]))
    merged = carried.merge(fresh)
    old_ids = Vocabulary([f"i{j}" for j in range(m)])
    new_ids = Vocabulary(old_ids.ids_of(np.argsort(item_map)))
    for u in range(n_new):
        if u in rows:
            r = int(old_rows[np.flatnonzero(rows == u)[0]])
            assert _stored(merged, new_ids, u) == _stored(old, old_ids, r)
        else:
            assert _stored(merged, new_ids, u) == _stored(fresh, new_ids, u)
    assert len(set(merged.reasons)) == len(merged.reasons)


@pytest.mark.parametrize(("model", "carry"), [("hybrid", True), ("als", True), ("hybrid", False)])
def test_a_warm_run_keeps_the_stored_lists_of_customers_with_no_new_event(
    tmp_path: Path, rng: np.random.Generator, model: str, carry: bool
) -> None:
    from recsys.artifacts import Precomputed
    from recsys.engine import Engine
    from recsys.precompute import precompute

    config = tmp_path / "train.toml"
    config.write_text(
        f'default_model = "{model}"\nthreads = 1\n'
        f"[precompute]\ncarry_on_warm_start = {str(carry).lower()}\n"
        "[models.als]\nparams = { factors = 8, iterations = 5 }\n"
        "[models.hybrid]\nparams = { factors = 8, max_iter = 20, min_positives = 10 }\n"
    )
    # then new events for five known customers and a new one; the other 35 have none
    new = _purchases(rng, 5, 1, 61)
    new.append(new[0]._replace(event_id="n", user_id="newcomer"))
    registry, (first, second) = _train_each(config, _purchases(rng, 40, 60, 0), new)
    entry = registry.manifest(second)["precomputed"]
    before = Engine.load(registry.path(first), registry)
    after = Engine.load(registry.path(second), registry)
    old, pre = Precomputed.load(registry.path(first)), Precomputed.load(registry.path(second))
    assert old is not None and pre is not None
    listed = [u for u in range(len(after.users)) if (np.asarray(pre.items[u]) >= 0).any()]
    assert len(listed) == entry["users"] == len(after.users)  # all active in 60 days
    changed = {f"u{u}" for u in range(5)} | {"newcomer"}
    fresh = precompute(
        after.models[model], model, after.history, after.items, users=np.arange(len(after.users))
    )
    for u in listed:
        uid = after.users.id(u)
        stored = _stored(pre, after.items, u)
        if carry and uid not in changed:
            assert stored == _stored(old, before.items, before.users.index(uid))
        else:
            assert _close(stored, _stored(fresh, after.items, u))
    if carry:
        assert entry["carried"] == {"users": len(listed) - len(changed), "from": first}
        # the warm-started model moved: some carried list differs from today's scoring
        assert not all(
            _close(_stored(pre, after.items, u), _stored(fresh, after.items, u)) for u in listed
        )
    else:
        assert "carried" not in entry


@pytest.mark.parametrize("every", [7, 0])
def test_a_warm_run_trains_in_full_when_the_last_full_run_is_too_old(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str], every: int
) -> None:
    config = tmp_path / "train.toml"
    config.write_text(
        'default_model = "als"\nthreads = 1\n'
        f"[warm_start]\nfull_every_days = {every}\n"
        "[models.als]\nparams = { factors = 8, iterations = 5 }\n"
    )
    # a full run on days 0-59, warm runs after days 61 and 66, then one after day 71
    registry, names = _train_each(
        config,
        *(
            _purchases(rng, 10, days, offset)
            for offset, days in ((0, 60), (61, 1), (66, 1), (71, 1))
        ),
    )
    full, warm1, warm2, last = (registry.manifest(v) for v in names)
    assert "warm_start" not in full
    assert full["full_run_as_of"] == full["as_of"]
    for warm in (warm1, warm2):
        assert warm["warm_start"]["models"]["als"].startswith("factors from")
        assert warm["full_run_as_of"] == full["as_of"]
    if every:
        # 12 days of data after the full run's as-of, 5 after the previous warm one
        assert "warm_start" not in last and last["full_run_as_of"] == last["as_of"]
        assert "full_every_days = 7 days old; training in full" in capsys.readouterr().err
        assert last["metrics"]
        # gated against the full run behind the warm ones (it compared with nothing)
        reason = last["promotion"]["reason"]
        assert f"of version {names[0]}, the full run behind current version {names[2]}" in reason
    else:
        assert "warm_start" in last and last["full_run_as_of"] == full["as_of"]


@pytest.mark.parametrize(
    ("iterations", "interactions", "changed"),
    [
        (5, "", None),  # only the evaluation changed: nothing that reaches a model
        (6, "", "[models.als]"),
        (5, "[interactions]\nweights = { purchase = 5.0 }\n", "[interactions]"),
    ],
    ids=["evaluation only", "model params", "interaction weights"],
)
def test_a_warm_run_trains_in_full_when_the_models_config_changed(
    tmp_path: Path,
    rng: np.random.Generator,
    capsys: pytest.CaptureFixture[str],
    iterations: int,
    interactions: str,
    changed: str | None,
) -> None:
    # the ALS factors of a version fitted with 5 iterations, or on other interaction
    # weights, are not where a run with the new settings would start from
    def write(k: int, iterations: int, interactions: str) -> None:
        config.write_text(
            f'default_model = "als"\nthreads = 1\n[evaluation]\nk = {k}\nmetric = "ndcg@{k}"\n'
            f"{interactions}"
            f"[models.als]\nparams = {{ factors = 8, iterations = {iterations} }}\n"
        )

    config = tmp_path / "train.toml"
    write(10, 5, "")
    registry = Registry(load_settings(Settings).registry_path)
    store = open_store(load_settings(Settings))
    try:
        store.insert_events(_purchases(rng, 10, 60, 0))
        assert main(["train", "--config", str(config)]) == 0
        first = registry.current_version() or ""
        store.insert_events(_purchases(rng, 3, 1, 61))
        write(5, iterations, interactions)
        capsys.readouterr()
        assert main(["train", "--config", str(config), "--warm-start", "--force"]) == 0
        manifest = registry.manifest(registry.current_version() or "")
        err = capsys.readouterr().err
        if changed is None:
            assert manifest["warm_start"]["from"] == first
            assert "training in full" not in err
        else:
            assert "warm_start" not in manifest
            assert f"{first} was trained with another {changed}; training in full" in err
    finally:
        store.close()


@pytest.mark.parametrize("change", ["late events", "an erasure"])
def test_a_warm_run_trains_in_full_when_the_events_it_saw_changed(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str], change: str
) -> None:
    config = tmp_path / "train.toml"
    config.write_text(
        'default_model = "als"\nthreads = 1\n'
        "[models.als]\nparams = { factors = 8, iterations = 5 }\n"
        '[models.bought_together]\nmodel = "cooccurrence"\nparams = { min_support = 1 }\n'
    )
    registry = Registry(load_settings(Settings).registry_path)
    store = open_store(load_settings(Settings))
    try:
        store.insert_events(_purchases(rng, 10, 60, 0))
        assert main(["train", "--config", str(config)]) == 0
        # a day of new events for three customers, and either orders of day 30 that the
        # current version never saw (carried counts would miss them) or a customer erased
        # (carried counts would keep their baskets)
        store.insert_events(_purchases(rng, 3, 1, 61))
        if change == "late events":
            store.insert_events(_purchases(rng, 3, 1, 30))
        else:
            assert store.erase_user("u5") > 0
        capsys.readouterr()
        # --force: the full run's metric is gated against the first version's, which this
        # test is not about
        assert main(["train", "--config", str(config), "--warm-start", "--force"]) == 0
        version = registry.current_version() or ""
        assert "warm_start" not in registry.manifest(version)
        assert "(events came late or were erased); training in full" in capsys.readouterr().err
        # the counts are those of the events now in the store
        data = build_training_data(store.read_events(), InteractionConfig())
        model = CooccurrenceModel.load(registry.path(version) / "models" / "bought_together")
        assert model.counts_ is not None
        assert (model.counts_ != cooccurrence_counts(data.orders)).nnz == 0
        # nothing changed before the newest event since: the next run is warm
        store.insert_events(_purchases(rng, 3, 1, 62))
        assert main(["train", "--config", str(config), "--warm-start"]) == 0
        assert "warm_start" in registry.manifest(registry.current_version() or "")
    finally:
        store.close()
