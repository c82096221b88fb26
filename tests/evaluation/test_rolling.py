"""Rolling-origin evaluation: the cut law as properties, the summary, skipped models, the CLI."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.data.schema import MICROS_PER_DAY, CatalogItem, EventFrame, EventRow
from recsys.errors import DataError, ModelError
from recsys.evaluation import (
    Spread,
    default_cut,
    evaluate_models,
    evaluate_rolling,
    rolling_cuts,
    rolling_splits,
)
from recsys.models.base import Recommender

DAY = MICROS_PER_DAY


class FixedOrder(Recommender):
    """The same preference list for everyone: each cut's answer is easy to recompute."""

    name: ClassVar[str] = "fixed"

    def __init__(self, *, order: tuple[str, ...] = ()) -> None:
        self.order = order

    def fit(self, data: TrainingData) -> Self:
        self.scores_ = np.full(data.n_items, np.nan, dtype=np.float32)
        for rank, item in enumerate(self.order):
            if item in data.items:
                self.scores_[data.items.index(item)] = len(self.order) - rank
        return self

    def score(
        self, users: NDArray[np.intp], history: sp.csr_matrix, *, now: int | None = None
    ) -> NDArray[np.float32]:
        return np.tile(self.scores_, (len(users), 1))

    def save(self, directory: Path) -> None:  # pragma: no cover - not used here
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path) -> Self:  # pragma: no cover - not used here
        raise NotImplementedError


class Refuses(FixedOrder):
    """A model that cannot fit any data, as EASE cannot fit a catalogue past ``max_items``."""

    def fit(self, data: TrainingData) -> Self:
        raise ModelError(f"refuses: {data.n_items} items is too many for this test model")


def buy(n: int, user: str, item: str, day: float) -> EventRow:
    ts = int(day * DAY)
    return EventRow(f"e{n}", user, None, item, "purchase", ts, 1.0, None, f"o{n}", None)


@st.composite
def event_logs(draw: st.DrawFn) -> EventFrame:
    """Events at any microsecond of a few months, customers and guests, several event types."""
    n = draw(st.integers(1, 60))
    rows = []
    for i in range(n):
        user = draw(st.sampled_from(["", "a", "b", "c"]))
        kind = draw(st.sampled_from(["purchase", "view", "cart"]))
        # exactly at midnight half the time: events on a cut are where an off-by-one would show
        ts = draw(st.one_of(st.integers(0, 150 * DAY), st.integers(0, 150).map(lambda d: d * DAY)))
        rows.append(EventRow(f"e{i}", user, None, "xyz"[i % 3], kind, ts, 1.0, None, None, None))
    return EventFrame.from_rows(rows)


# -- the cut law ----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    event_logs(),
    st.integers(2, 6),
    st.integers(1, 20),
    st.one_of(st.none(), st.integers(1, 30)),
)
def test_rolling_cuts_obey_the_law(
    events: EventFrame, n_cuts: int, window: int, step: int | None
) -> None:
    try:
        splits = rolling_splits(events, n_cuts, window_days=window, step_days=step)
    except DataError as exc:
        # refused only when the oldest cut would have nothing before it...
        step_days = window if step is None else step
        last = default_cut(events, days=window)
        assert last - (n_cuts - 1) * step_days * DAY <= int(events.ts.min()), str(exc)
        # ...and the message's "at most m" is exact: m cuts fit, m + 1 do not
        fit = int(str(exc).rsplit("at most ", 1)[1].split()[0])
        assert fit < n_cuts
        if fit >= 2:
            assert len(rolling_cuts(events, fit, window_days=window, step_days=step)) == fit
        with pytest.raises(DataError):
            rolling_cuts(events, max(fit + 1, 2), window_days=window, step_days=step)
        return
    assert all(s.cut is not None for s in splits)
    cuts = [int(s.cut or 0) for s in splits]
    assert len(cuts) == n_cuts
    assert all(c % DAY == 0 for c in cuts)  # midnight UTC: a nameable date
    assert all(a < b for a, b in itertools.pairwise(cuts))  # ordered, distinct
    newest = int(events.ts.max())
    # the newest window ends inside the log (never past its last day)
    assert cuts[-1] + window * DAY <= newest < cuts[-1] + (window + 1) * DAY
    for i, (s, cut) in enumerate(zip(splits, cuts, strict=True)):
        end = cut + window * DAY
        # no training event at or after its cut, and every earlier event is training data
        assert np.all(s.train.ts < cut)
        assert len(s.train) == int(np.count_nonzero(events.ts < cut)) > 0
        # each test window lies after its cut and before the next cut's window ends
        assert np.all((s.test.ts >= cut) & (s.test.ts < end))
        if i + 1 < len(splits):
            assert end < cuts[i + 1] + window * DAY
            if step is None:
                assert end == cuts[i + 1]  # default step: the windows tile, no overlap
        # the test is the window's purchases of customers, all of them
        wanted = (
            (events.ts >= cut) & (events.ts < end) & (events.event_type == "purchase")
        ) & np.array([bool(u) for u in events.user_id])
        assert len(s.test) == int(wanted.sum())


def test_too_short_a_log_says_how_many_cuts_fit() -> None:
    events = EventFrame.from_rows([buy(0, "a", "x", 0.5), buy(1, "a", "y", 100.5)])
    assert len(rolling_cuts(events, 3)) == 3  # cuts at days 10, 40, 70
    with pytest.raises(DataError, match="at most 3 do"):
        rolling_cuts(events, 4)
    with pytest.raises(DataError, match="at least 2"):
        rolling_cuts(events, 1)
    with pytest.raises(DataError, match="whole number of days"):
        rolling_cuts(events, 2, window_days=0.5)


# -- the summary ----------------------------------------------------------------------------------


def shop(seed: int = 3, days: int = 150) -> EventFrame:
    """Customers buying from a skewed catalogue every few days, so every cut has customers."""
    rng = np.random.default_rng(seed)
    items = [f"i{j}" for j in range(12)]
    p = 1.0 / np.arange(1, 13)
    p /= p.sum()
    rows, n = [], 0
    for u in range(40):
        for day in np.sort(rng.uniform(0, days, size=int(rng.integers(6, 14)))):
            rows.append(buy(n, f"u{u}", str(rng.choice(items, p=p)), float(day)))
            n += 1
    return EventFrame.from_rows(rows)


def test_the_summary_is_the_spread_of_the_cuts() -> None:
    events = shop()
    order = tuple(f"i{j}" for j in (3, 0, 7, 1))
    result = evaluate_rolling(
        events, {"fixed": FixedOrder(order=order)}, n_cuts=4, window_days=20, k=3
    )
    assert [r.cut for r in result.cuts] == rolling_cuts(events, 4, window_days=20)
    per_cut = []
    for cut in rolling_cuts(events, 4, window_days=20):
        alone = evaluate_models(
            events, {"fixed": FixedOrder(order=order)}, cut=cut, k=3, horizon=20 * DAY
        )
        per_cut.append(alone["fixed"].all_items["ndcg"])
    assert result.values("fixed", "ndcg", "all") == pytest.approx(per_cut)
    spread = result.spread("fixed", "ndcg", "all")
    assert spread.n == 4
    assert spread.mean == pytest.approx(np.mean(per_cut))
    assert spread.std == pytest.approx(np.std(per_cut, ddof=1))
    assert (spread.min, spread.max) == (pytest.approx(min(per_cut)), pytest.approx(max(per_cut)))
    assert spread.min <= spread.mean <= spread.max

    data = json.loads(result.to_json())
    assert data["cut_dates"] == [str(r["cut_date"])[:10] for r in data["cuts"]]
    assert data["summary"]["fixed"]["ndcg@3_all"]["mean"] == pytest.approx(spread.mean)
    table = result.to_markdown()
    assert "4 cuts" in table and "| fixed |" in table and f"{spread.mean:.3f} ±" in table


def test_the_horizon_keeps_later_purchases_out_of_the_truth() -> None:
    events = EventFrame.from_rows(
        [
            buy(0, "a", "x", 1),
            buy(1, "b", "y", 2),  # b makes y and z known to the models before the cut
            buy(2, "b", "z", 3),
            buy(3, "a", "y", 12),
            buy(4, "a", "z", 40),
        ]
    )
    order = ("z", "y", "x")
    wide = evaluate_models(events, {"f": FixedOrder(order=order)}, cut=10 * DAY, k=1)
    narrow = evaluate_models(
        events, {"f": FixedOrder(order=order)}, cut=10 * DAY, k=1, horizon=20 * DAY
    )
    assert wide.n_test_purchases == 2 and narrow.n_test_purchases == 1
    assert wide["f"].all_items["hit_rate"] == 1.0  # z, bought on day 40, counts without horizon
    assert narrow["f"].all_items["hit_rate"] == 0.0  # ...and not within 20 days of the cut


def test_spread_of_nothing_and_of_one() -> None:
    assert Spread.of([]).n == 0 and math.isnan(Spread.of([float("nan")]).mean)
    one = Spread.of([0.25, float("nan")])
    assert (one.mean, one.std, one.min, one.max, one.n) == (0.25, 0.0, 0.25, 0.25, 1)


# -- models that cannot fit -----------------------------------------------------------------------


def test_a_model_that_cannot_fit_is_skipped_and_named() -> None:
    events = shop()
    notices: list[str] = []
    single = evaluate_models(
        events,
        {"refuses": Refuses(), "fixed": FixedOrder(order=("i0",))},
        cut=100 * DAY,
        notify=notices.append,
    )
    assert [m.name for m in single.models] == ["fixed"]
    assert "too many for this test model" in single.skipped["refuses"]
    assert notices == [f"notice: model 'refuses' skipped: {single.skipped['refuses']}"]
    assert "- refuses: refuses:" in single.to_markdown()

    notices.clear()
    rolling = evaluate_rolling(
        events,
        {"refuses": Refuses(), "fixed": FixedOrder(order=("i0",))},
        n_cuts=3,
        window_days=20,
        notify=notices.append,
    )
    assert len(notices) == 1  # told once, not once per cut
    assert rolling.model_names == ["fixed", "refuses"]
    assert rolling.spread("refuses", "recall", "all").n == 0
    assert rolling.spread("fixed", "recall", "all").n == 3
    assert "refuses" in rolling.skipped() and "Skipped" in rolling.to_markdown()


def _big_catalogue_store(n_items: int) -> None:
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    store = open_store(load_settings(Settings))
    try:
        store.insert_events(shop(days=150).rows())
        store.upsert_items([CatalogItem(f"c{j}") for j in range(n_items)])
    finally:
        store.close()


@pytest.mark.slow
def test_evaluate_on_a_catalogue_too_large_for_ease(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default models just past EASE's max_items: EASE and `repeat` (on it) are skipped."""
    from recsys.cli import main
    from recsys.models.ease import EASEModel

    max_items = EASEModel().max_items
    _big_catalogue_store(max_items + 50 - 12)
    assert main(["evaluate", "--cut", "1970-04-21"]) == 0
    out, err = capsys.readouterr()
    assert "notice: model 'ease' skipped" in err and "notice: model 'repeat' skipped" in err
    assert f"max_items={max_items}" in err
    assert "| popular |" in out and "| als |" in out
    assert "| ease |" not in out and "- repeat: " in out and "- ease: " in out

    assert main(["evaluate", "--cuts", "2", "--window", "20", "--models", "popular,ease"]) == 0
    out, err = capsys.readouterr()
    assert err.count("notice: model 'ease' skipped") == 1
    assert "| popular |" in out and "- ease: " in out


def test_command_line_rolling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recsys.cli import main
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    store = open_store(load_settings(Settings))
    store.insert_events(shop().rows())
    store.close()
    argv = ["evaluate", "--cuts", "4", "--window", "20", "--models", "popular,repeat"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 cuts" in out and "| repeat |" in out and "| popular |" in out
    assert main([*argv, "--json"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert len(data["cut_dates"]) == 4 and data["window_days"] == 20
    recall = data["summary"]["repeat"]["recall@10_all"]
    assert recall["min"] <= recall["mean"] <= recall["max"] and recall["n"] == 4
    assert data["environment"]["libraries"]["lightgbm"] and data["environment"]["platform"]["blas"]
    config = tmp_path / "eval.toml"
    config.write_text("cuts = 3\nwindow_days = 25\n[models.popular]\n")
    assert main(["evaluate", "--config", str(config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["cut_dates"]) == 3 and list(data["summary"]) == ["popular"]
    for bad, message in (
        (["--cuts", "1"], "at least 2"),
        (["--cuts", "3", "--plot", str(tmp_path / "x.png")], "--plot"),
        (["--window", "10"], "give --cuts"),
        (["--cuts", "40"], "do not fit"),
    ):
        assert main(["evaluate", *bad]) == 2
        assert message in capsys.readouterr().err


def test_a_bad_parameter_value_is_named_before_the_store_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recsys.cli import main

    config = tmp_path / "eval.toml"
    config.write_text("cuts = 3\n[models.als]\nfactors = -3\n")
    # an empty store: the parameter is the error, not the missing events
    assert main(["evaluate", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"{config}: models.als.factors = -3: must be an integer >= 1" in err[0]


def test_command_line_other_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--seeds 3: each model with a seed is fitted again with two other seeds, under its own
    name; a model without one is not repeated."""
    from recsys.cli import main
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    store = open_store(load_settings(Settings))
    store.insert_events(shop().rows())
    store.close()
    argv = ["evaluate", "--cuts", "2", "--window", "20", "--models", "popular,als", "--json"]
    assert main([*argv, "--seeds", "3"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert sorted(data["summary"]) == ["als", "als seed=1", "als seed=2", "popular"]
    recalls = {n: data["summary"][n]["recall@10_all"]["mean"] for n in data["summary"]}
    assert len({recalls["als"], recalls["als seed=1"], recalls["als seed=2"]}) > 1
    # the configured seed is the one the plain run uses
    assert main(argv) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["summary"]["als"]["recall@10_all"]["mean"] == recalls["als"]
    assert main([*argv, "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
