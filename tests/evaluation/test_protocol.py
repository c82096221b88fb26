"""The hold-out protocol on a shop small enough to check by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from recsys.data.interactions import InteractionConfig, TrainingData, build_training_data
from recsys.data.schema import MICROS_PER_DAY, EventFrame, EventRow, from_micros
from recsys.errors import ConfigError, DataError
from recsys.evaluation import evaluate_models
from recsys.evaluation.protocol import Bought, Holdout, sample_customers
from recsys.evaluation.splits import time_split
from recsys.models.base import Recommender, scored_once

DAY = MICROS_PER_DAY
CUT = 100 * DAY


class FixedOrder(Recommender):
    """Scores items by a fixed preference list (same for every user): answers are obvious."""

    name: ClassVar[str] = "fixed"

    def __init__(self, *, order: tuple[str, ...] = ()) -> None:
        self.order = order

    def fit(self, data: TrainingData) -> Self:
        self.scores_ = np.full(data.n_items, np.nan, dtype=np.float32)
        for rank, item in enumerate(self.order):
            if item in data.items:
                self.scores_[data.items.index(item)] = len(self.order) - rank
        self.seen_now_: list[int | None] = []
        return self

    def score(
        self, users: NDArray[np.intp], history: sp.csr_matrix, *, now: int | None = None
    ) -> NDArray[np.float32]:
        self.seen_now_.append(now)
        assert history.shape == (len(users), self.scores_.size)
        return np.tile(self.scores_, (len(users), 1))

    def save(self, directory: Path) -> None:  # pragma: no cover - not used here
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path) -> Self:  # pragma: no cover - not used here
        raise NotImplementedError


def buy(n: int, user: str, item: str, day: float, order: str) -> EventRow:
    return EventRow(f"e{n}", user, None, item, "purchase", int(day * DAY), 1.0, None, order, None)


@pytest.fixture
def events() -> EventFrame:
    rows = [
        # before the cut
        buy(0, "a", "x", 10, "o1"),
        buy(1, "a", "y", 10, "o1"),
        buy(2, "b", "x", 20, "o2"),
        buy(3, "c", "z", 30, "o3"),
        buy(4, "d", "w", 40, "o4"),  # d buys nothing after the cut: not evaluated
        # on or after the cut
        buy(5, "a", "x", 100, "o5"),  # a repeat
        buy(6, "a", "v", 101, "o5"),  # new to a; v was never seen in training
        buy(7, "a", "w", 102, "o6"),  # new to a
        buy(8, "b", "y", 110, "o7"),  # new to b
        buy(9, "b", "y", 111, "o8"),  # the same item twice counts once
        buy(10, "c", "z", 120, "o9"),  # a repeat only: c has nothing new
        buy(11, "e", "x", 120, "o10"),  # e bought nothing before: not evaluated
        buy(12, "", "x", 120, "o11"),  # a guest
    ]
    return EventFrame.from_rows(rows)


def test_hand_checked_numbers(events: EventFrame) -> None:
    model = FixedOrder(order=("x", "w", "y", "z"))
    result = evaluate_models(events, {"fixed": model}, cut=CUT, k=2)
    assert (result.n_users, result.n_users_new, result.cut, result.k) == (3, 2, CUT, 2)
    assert result.n_items == 4  # v was never seen before the cut
    assert result.n_test_purchases == 6  # a, b, c after the cut (e and the guest excluded)
    m = result["fixed"]
    # lists (k=2): [x, w] for everyone. a: truth {x, v, w} -> 2 hits; b: {y} -> 0; c: {z} -> 0
    assert m.all_items["recall"] == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert m.all_items["precision"] == pytest.approx((1 + 0 + 0) / 3)
    assert m.all_items["hit_rate"] == pytest.approx(1 / 3)
    # new items: a's list without x, y -> [w, z], truth {v, w}: 1 hit of 2;
    # b's list without x -> [w, y], truth {y}: hit at rank 2; c has no new item
    assert m.new_items["recall"] == pytest.approx((1 / 2 + 1) / 2)
    assert m.new_items["mrr"] == pytest.approx((1 + 1 / 2) / 2)
    assert m.coverage == pytest.approx(2 / 4)
    assert m.gini > 0
    assert m.fit_seconds >= 0 and m.score_seconds >= 0
    assert set(model.seen_now_) == {CUT}  # scored "as of" the cut, never later


def test_users_test_includes_customers_unseen_in_training(events: EventFrame) -> None:
    result = evaluate_models(events, {"fixed": FixedOrder(order=("x",))}, cut=CUT, users="test")
    assert result.n_users == 4  # a, b, c and e
    assert result["fixed"].all_items["hit_rate"] == pytest.approx(2 / 4)  # a and e


def test_models_given_as_factories_and_segments(events: EventFrame) -> None:
    result = evaluate_models(
        events,
        {"good": lambda: FixedOrder(order=("x", "y", "z")), "bad": FixedOrder(order=("w",))},
        cut=CUT,
        k=3,
        segments={"a": "vip", "b": "vip"},
    )
    assert [m.name for m in result.models] == ["good", "bad"]
    good = result["good"]
    assert good.segments["vip"]["users"] == 2
    assert good.segments["(none)"]["users"] == 1
    assert good.segments["(none)"]["all"]["recall"] == pytest.approx(1.0)  # c: z in [x, y, z]
    assert good.all_items["recall"] > result["bad"].all_items["recall"]


def test_variants_score_the_same_fit_another_way_without_fitting(events: EventFrame) -> None:
    """A variant is scored as it is given: the protocol does not fit it (a fit of this one
    would leave it no scores and no hits), and its result follows its model's, with the
    model's fit seconds."""

    def reversed_order(name: str, model: Recommender) -> dict[str, Recommender]:
        assert isinstance(model, FixedOrder)
        other = FixedOrder()  # its own fit would score nothing
        other.scores_, other.seen_now_ = 5 - model.scores_, []
        return {f"{name} reversed": other}

    result = evaluate_models(
        events,
        {"fixed": FixedOrder(order=("x", "w", "y", "z")), "bad": FixedOrder(order=("w",))},
        cut=CUT,
        k=2,
        variants=lambda name, model: reversed_order(name, model) if name == "fixed" else {},
    )
    assert [m.name for m in result.models] == ["fixed", "fixed reversed", "bad"]
    # lists [z, y]: a's truth {x, v, w} none, b's {y} and c's {z} all
    assert result["fixed reversed"].all_items["recall"] == pytest.approx((0 + 1 + 1) / 3)
    assert result["fixed"].all_items["recall"] == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert result["fixed reversed"].fit_seconds == result["fixed"].fit_seconds


class SharedOrder(FixedOrder):
    """:class:`FixedOrder` whose scoring of a batch is shared by its copies
    (:func:`~recsys.models.base.scored_once`); ``reverse`` ranks the other way."""

    reverse = False

    def fit(self, data: TrainingData) -> Self:
        self.batches_: list[int] = []  # the rows of each batch computed, shared with copies
        return super().fit(data)

    def score(
        self, users: NDArray[np.intp], history: sp.csr_matrix, *, now: int | None = None
    ) -> NDArray[np.float32]:
        def compute() -> NDArray[np.float32]:
            self.batches_.append(len(users))
            return super(SharedOrder, self).score(users, history, now=now)

        scores = scored_once((self.scores_, users, history, now), compute)
        return -scores if self.reverse else scores


def test_a_model_and_its_variants_take_each_batch_in_turn_and_share_its_scoring(
    events: EventFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The protocol hands a model and its variants the same batches one after the other,
    inside :func:`~recsys.models.base.shared_scoring`: a variant that shares its model's
    scoring computes no batch, and every result is what it would be alone."""
    import copy

    from recsys.evaluation import protocol

    monkeypatch.setattr(protocol, "BATCH_USERS", 2)  # 3 customers: two batches

    def reversed_order(name: str, model: Recommender) -> dict[str, Recommender]:
        assert isinstance(model, SharedOrder)
        other = copy.copy(model)
        other.reverse = True
        return {f"{name} reversed": other}

    shared = SharedOrder(order=("x", "w", "y", "z"))
    result = evaluate_models(events, {"fixed": shared}, cut=CUT, k=2, variants=reversed_order)
    assert shared.batches_ == [2, 1]  # each batch scored once, for both orders
    # the same lists as each order alone: [x, w] and [z, y]
    assert result["fixed"].all_items["recall"] == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert result["fixed reversed"].all_items["recall"] == pytest.approx((0 + 1 + 1) / 3)
    alone = evaluate_models(events, {"fixed": FixedOrder(order=("z", "y", "w", "x"))}, cut=CUT, k=2)
    assert result["fixed reversed"].all_items == alone["fixed"].all_items
    assert result["fixed reversed"].new_items == alone["fixed"].new_items


def test_default_cut_holds_out_the_last_month(events: EventFrame) -> None:
    # newest event on day 120: the cut is day 90, which keeps the same two periods here
    result = evaluate_models(events, {"fixed": FixedOrder(order=("x",))})
    assert result.cut == 90 * DAY
    assert result.n_users == 3


def test_reports(events: EventFrame, tmp_path: Path) -> None:
    result = evaluate_models(events, {"fixed": FixedOrder(order=("x", "w"))}, cut=CUT)
    data = json.loads(result.to_json())
    assert data["n_users"] == 3
    assert data["models"][0]["all_items"]["recall"] == pytest.approx(
        result["fixed"].all_items["recall"]
    )
    assert data["cut_date"].startswith("1970-04-11")
    table = result.to_markdown()
    assert "| fixed |" in table and "R@10" in table and "3 customers" in table
    png = result.plot(tmp_path / "chart.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"k": 0}, ConfigError, "k must be at least 1"),
        ({"users": "everyone"}, ConfigError, "users must be"),
        ({"cut": 1}, DataError, "no event before the cut"),
        ({"cut": 500 * DAY}, DataError, "no purchase on or after"),
    ],
)
def test_bad_arguments(events: EventFrame, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        evaluate_models(events, {"fixed": FixedOrder()}, **kwargs)


def test_guests_purchases_after_the_cut_are_named_as_guests() -> None:
    """A shop of guests bought after the cut: the reason is that none is a customer (it said
    there was no purchase)."""
    guest = buy(1, "", "x", 110, "o2")._replace(session_id="s1")
    events = EventFrame.from_rows([buy(0, "a", "x", 10, "o1"), guest])
    with pytest.raises(DataError) as info:
        evaluate_models(events, {"fixed": FixedOrder()}, cut=CUT)
    assert str(info.value) == (
        f"no customer's purchase on or after the cut {from_micros(CUT).date()}: all 1 are "
        "guests' (no customer id)"
    )


def test_no_customer_in_both_periods_is_a_data_error() -> None:
    events = EventFrame.from_rows([buy(0, "a", "x", 10, "o1"), buy(1, "b", "x", 110, "o2")])
    with pytest.raises(DataError, match="no customer to evaluate"):
        evaluate_models(events, {"fixed": FixedOrder()}, cut=CUT)


def test_registry_names_are_accepted(events: EventFrame) -> None:
    result = evaluate_models(events, {"popular": "popular", "repeat": "repeat"}, cut=CUT, k=3)
    # c's only purchase after the cut is a repeat of z: the repeat baseline must hit it
    assert result["repeat"].all_items["hit_rate"] >= 2 / 3
    with pytest.raises(ConfigError, match="unknown model"):
        evaluate_models(events, {"nope": "no-such-model"}, cut=CUT)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_sample_is_the_full_protocol_on_the_sampled_customers(
    events: EventFrame, seed: int
) -> None:
    order = ("x", "w", "y", "z")
    sampled = evaluate_models(
        events, {"fixed": FixedOrder(order=order)}, cut=CUT, k=2, max_users=2, seed=seed
    )
    assert (sampled.n_users, sampled.n_users_eligible, sampled.sample_seed) == (2, 3, seed)
    assert sampled.sampled
    chosen = set(sample_customers(["a", "b", "c"], 2, seed=seed))
    # the same protocol with the other customer's later purchases removed: same training data,
    # only the sampled customers left to evaluate
    keep = (events.ts < CUT) | np.isin(events.user_id.astype(str), sorted(chosen))
    alone = evaluate_models(events.select(keep), {"fixed": FixedOrder(order=order)}, cut=CUT, k=2)
    assert not alone.sampled and alone.n_users == alone.n_users_eligible == 2
    assert sampled.n_test_purchases == alone.n_test_purchases
    assert sampled["fixed"].all_items == alone["fixed"].all_items
    assert sampled["fixed"].new_items == alone["fixed"].new_items
    assert sampled["fixed"].all_items_ci95 == alone["fixed"].all_items_ci95


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_holdout_of_a_sample_drawn_already_is_the_holdout_that_draws_it(
    events: EventFrame, seed: int
) -> None:
    # the Spark engine draws the sample first (it collects only their purchases) and tells
    # the holdout how many it drew from, instead of the holdout drawing it a second time
    split = time_split(events, cut=CUT)
    data = build_training_data(split.train, InteractionConfig())
    drawing = Holdout.of_split(data, split, k=2, max_users=2, seed=seed)
    eligible = ["a", "b", "c"]
    drawn = sample_customers(eligible, 2, seed=seed)
    purchased = split.train.event_type == "purchase"
    given = Holdout.of(
        data,
        drawn,
        test=Bought(split.test.user_id, split.test.item_id),
        before=Bought(split.train.user_id[purchased], split.train.item_id[purchased]),
        cut=CUT,
        k=2,
        max_users=2,
        seed=seed,
        n_train_events=len(split.train),
        drawn_from=len(eligible),
    )
    assert given.truth.user_ids == drawing.truth.user_ids == drawn
    assert given.truth.n_eligible == drawing.truth.n_eligible == 3
    assert (given.truth.relevant != drawing.truth.relevant).nnz == 0
    assert (given.bought_before != drawing.bought_before).nnz == 0
    fixed = FixedOrder(order=("x", "w", "y", "z")).fit(data)
    assert given.result(given.measure([("fixed", fixed)], 0.0), {})["fixed"].all_items == (
        drawing.result(drawing.measure([("fixed", fixed)], 0.0), {})["fixed"].all_items
    )


def test_a_sample_no_smaller_than_the_customers_is_no_sample(events: EventFrame) -> None:
    full = evaluate_models(events, {"fixed": FixedOrder(order=("x",))}, cut=CUT)
    capped = evaluate_models(events, {"fixed": FixedOrder(order=("x",))}, cut=CUT, max_users=3)
    assert not capped.sampled and capped.sample_seed is None
    assert capped.n_users == capped.n_users_eligible == full.n_users == 3
    assert capped["fixed"].all_items == full["fixed"].all_items
    for name, (lo, hi) in full["fixed"].all_items_ci95.items():
        assert lo <= full["fixed"].all_items[name] <= hi
    with pytest.raises(ConfigError, match="max_users must be at least 1"):
        evaluate_models(events, {"fixed": FixedOrder()}, cut=CUT, max_users=0)


_ids = st.lists(st.text(min_size=1, max_size=6), max_size=40)


@given(ids=_ids, n=st.integers(1, 50), seed=st.integers(0, 2**32))
@settings(max_examples=200, deadline=None)
def test_sample_customers_is_a_seeded_subset_of_the_requested_size(
    ids: list[str], n: int, seed: int
) -> None:
    sample = sample_customers(ids, n, seed=seed)
    assert len(sample) == min(n, len(set(ids)))
    assert set(sample) <= set(ids) and sample == sorted(set(sample))
    assert sample_customers(list(reversed(ids)), n, seed=seed) == sample  # order-free


@given(ids=_ids, drop=st.lists(st.integers(0, 39)), n=st.integers(1, 50), seed=st.integers(0, 99))
@settings(max_examples=200, deadline=None)
def test_sample_customers_is_consistent_under_subsets(
    ids: list[str], drop: list[int], n: int, seed: int
) -> None:
    """A customer sampled from a set stays sampled from every subset that holds them: runs on
    overlapping customers (one more day of data) evaluate mostly the same people."""
    subset = [c for i, c in enumerate(ids) if i not in set(drop)]
    from_all = set(sample_customers(ids, n, seed=seed))
    assert from_all & set(subset) <= set(sample_customers(subset, n, seed=seed))


# -- real data -----------------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.slow
def test_reference_numbers_on_online_retail(online_retail: Path, tmp_path: Path) -> None:
    """The shared data README's split: cut 2011-11-09, customers who bought in both periods.

    The README's recall column is reproduced by *capped* recall (hits / min(k, relevant)),
    not by plain recall; both are checked so a change to either definition is caught.
    """
    from datetime import UTC, datetime

    from recsys.data.ingest import ingest_events
    from recsys.data.schema import to_micros
    from recsys.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "retail.db")
    try:
        ingest_events(store, online_retail, format="online-retail")
        events = store.read_events(event_types=["purchase", "return"])
    finally:
        store.close()
    cut = to_micros(datetime(2011, 11, 9, tzinfo=UTC))
    # "most popular" as the README counts it: by number of distinct customers, a fixed list
    top = _most_customers(events, cut)
    models = {"repeat": "repeat", "popular": lambda: FixedOrder(order=top)}
    result = evaluate_models(events, models, cut=cut, k=10)  # type: ignore[dict-item]
    assert result.n_users == 1395
    repeat, popular = result["repeat"], result["popular"]
    assert repeat.all_items["capped_recall"] == pytest.approx(0.336, abs=0.01)
    assert repeat.all_items["recall"] == pytest.approx(0.171, abs=0.01)
    assert popular.all_items["capped_recall"] == pytest.approx(0.078, abs=0.01)


def _most_customers(events: EventFrame, cut: int) -> tuple[str, ...]:
    before = (events.ts < cut) & (events.event_type == "purchase") & (events.user_id != "")
    pairs = set(zip(events.user_id[before].tolist(), events.item_id[before].tolist(), strict=True))
    counts: dict[str, int] = {}
    for _, item in pairs:
        counts[item] = counts.get(item, 0) + 1
    return tuple(sorted(counts, key=lambda i: (-counts[i], i))[:50])


def test_command_line(
    events: EventFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recsys.cli import main
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    store = open_store(load_settings(Settings))
    store.insert_events(events.rows())
    store.close()
    out, plot = tmp_path / "result.json", tmp_path / "chart.png"
    argv = ["evaluate", "--cut", "1970-04-11", "--k", "3", "--models", "popular,repeat"]
    assert main([*argv, "--out", str(out), "--plot", str(plot)]) == 0
    assert "| repeat |" in capsys.readouterr().out
    assert json.loads(out.read_text())["n_users"] == 3
    assert plot.stat().st_size > 0
    assert main([*argv[:-1], "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    # an output that cannot be written is refused before the evaluation, not after it
    for option, name in (("--out", "result.txt"), ("--plot", "no/chart.png")):
        assert main([*argv, option, str(tmp_path / name)]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith(f"error: {option} {tmp_path / name}: ")
        assert "| repeat |" not in captured.out
    assert main(["evaluate", "--cut", "11/09/2011"]) == 2
    assert "not a date" in capsys.readouterr().err
