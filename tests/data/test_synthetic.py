"""The synthetic shop: determinism, the laws it is built on, and the files it writes."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from recsys.data.synthetic import (
    CATALOG_FILE_COLUMNS,
    CUSTOMER_FILE_COLUMNS,
    EVENT_FILE_COLUMNS,
    P_BUY_GIVEN_CART,
    SyntheticShop,
    generate_shop,
    write_shop,
)
from recsys.errors import ConfigError


@pytest.fixture(scope="module")
def shop() -> SyntheticShop:
    return generate_shop(1500, 600, 60_000, seed=7, days=120)


def _same(a: SyntheticShop, b: SyntheticShop) -> bool:
    ea, eb = a.events, b.events
    return (
        np.array_equal(ea.ts, eb.ts)
        and list(ea.item_id) == list(eb.item_id)
        and list(ea.user_id) == list(eb.user_id)
        and list(ea.event_type) == list(eb.event_type)
        and a.catalog == b.catalog
        and a.customers == b.customers
    )


def test_same_seed_same_shop_and_different_seed_different_shop() -> None:
    a = generate_shop(200, 80, 3000, seed=1)
    b = generate_shop(200, 80, 3000, seed=1)
    c = generate_shop(200, 80, 3000, seed=2)
    assert _same(a, b)
    assert not _same(a, c)
    assert np.array_equal(a.truth.user_factors, b.truth.user_factors)


def test_exact_event_count_sorted_and_inside_the_period(shop: SyntheticShop) -> None:
    ev = shop.events
    assert len(ev) == 60_000
    assert np.all(np.diff(ev.ts) >= 0)
    start = shop.start.timestamp() * 1e6
    assert ev.ts.min() >= start
    assert ev.ts.max() < start + shop.days * 86_400e6
    assert len(set(ev.event_id.tolist())) == len(ev)


def test_popularity_is_heavy_tailed(shop: SyntheticShop) -> None:
    # Zipf(1) over 600 items puts ~67% of the base view mass on the top 10% of items; tastes and
    # the funnel blur that a little. 40% is four times the uniform share, so a generator that
    # lost the skew fails, while the sampling noise of 60k events is far below the margin.
    ev = shop.events
    bought = ev.item_id[ev.event_type == "purchase"]
    _, counts = np.unique(bought.astype(str), return_counts=True)
    counts = np.sort(counts)[::-1]
    top = max(1, len(shop.catalog) // 10)
    assert counts[:top].sum() / counts.sum() > 0.4


def test_funnel_views_over_carts_over_purchases(shop: SyntheticShop) -> None:
    types = shop.events.event_type
    views, carts, buys = ((types == t).sum() for t in ("view", "cart", "purchase"))
    returns = (types == "return").sum()
    assert views > 2 * carts > 0
    assert carts > buys > returns > 0
    # every order's purchases share one order id and one user
    ev = shop.events
    p = ev.event_type == "purchase"
    users_per_order: dict[str, set[str]] = {}
    for o, u in zip(ev.order_id[p], ev.user_id[p], strict=True):
        users_per_order.setdefault(o, set()).add(u)
    assert all(len(us) == 1 for us in users_per_order.values())


def test_guests_have_sessions_but_no_customer(shop: SyntheticShop) -> None:
    ev = shop.events
    guest = ev.user_id == ""
    assert 0.03 < guest.mean() < 0.2
    assert all(s is not None for s in ev.session_id[guest])


def test_consumables_are_rebought_near_their_cycle(shop: SyntheticShop) -> None:
    ev = shop.events
    item_index = {iid: k for k, iid in enumerate(shop.item_ids)}
    p = np.flatnonzero((ev.event_type == "purchase") & (ev.user_id != ""))
    by_pair: dict[tuple[str, str], list[int]] = {}
    for k in p:
        by_pair.setdefault((ev.user_id[k], ev.item_id[k]), []).append(int(ev.ts[k]))
    ratios = []
    for (_, item), times in by_pair.items():
        cycle = shop.truth.cycle_days[item_index[item]]
        if np.isnan(cycle) or len(times) < 2:
            continue
        gaps = np.diff(sorted(times)) / 86_400e6
        ratios.extend(gaps / cycle)
    assert len(ratios) > 50
    # repeats are cycle × N(1, 0.15); an occasional organic re-purchase adds short gaps
    assert 0.85 < float(np.median(ratios)) < 1.15
    # a customer rebuys a consumable far more often than anything else
    rates = {}
    for consumable in (True, False):
        pairs = [
            len(t) > 1
            for (_, item), t in by_pair.items()
            if np.isnan(shop.truth.cycle_days[item_index[item]]) != consumable
        ]
        rates[consumable] = np.mean(pairs)
    assert rates[True] > 3 * rates[False]


def test_complements_are_bought_together(shop: SyntheticShop) -> None:
    ev = shop.events
    p = ev.event_type == "purchase"
    baskets: dict[str, set[str]] = {}
    for o, i in zip(ev.order_id[p], ev.item_id[p], strict=True):
        baskets.setdefault(o, set()).add(i)
    comp = shop.truth.complement
    ids = shop.item_ids
    index = {iid: k for k, iid in enumerate(ids)}
    with_partner = together = 0
    for items in baskets.values():
        for i in items:
            j = comp[index[i]]
            if j >= 0:
                with_partner += 1
                together += ids[j] in items
    # 35% of bought items with a partner pull it in; chance co-occurrence is far rarer
    assert together / with_partner > 0.2


def test_true_affinity_is_a_probability_that_drives_carts(shop: SyntheticShop) -> None:
    truth = shop.truth
    users = np.arange(len(truth.activity))
    items = np.arange(len(truth.popularity))
    table = truth.true_affinity(users[:, None], items[None, :])
    assert table.shape == (len(users), len(items))
    assert (table > 0).all() and (table <= P_BUY_GIVEN_CART).all()
    best = truth.best_items(3, 5)
    assert np.all(np.diff(table[3, best]) <= 0)
    assert table[3, best[0]] == table[3].max()
    # views that became carts had a higher true affinity than views that did not
    ev = shop.events
    index = {iid: k for k, iid in enumerate(shop.item_ids)}
    uindex = {uid: k for k, uid in enumerate(shop.user_ids)}
    reg = ev.user_id != ""
    u = np.array([uindex[x] for x in ev.user_id[reg]])
    i = np.array([index[x] for x in ev.item_id[reg]])
    t = ev.event_type[reg]
    aff = truth.true_affinity(u, i)
    assert aff[t == "cart"].mean() > 1.2 * aff[t == "view"].mean()


def test_customers_have_feb_29_birthdays_regions_and_opt_outs(shop: SyntheticShop) -> None:
    customers = shop.customers
    assert [c.user_id for c in customers] == shop.user_ids
    leap = [c for c in customers if c.birthday and (c.birthday.month, c.birthday.day) == (2, 29)]
    assert len(leap) >= 1
    assert any(c.birthday is None for c in customers)
    assert len({c.region for c in customers}) > 3
    assert 0 < sum(c.marketing_opt_out for c in customers) < len(customers) / 5
    assert any(c.personalisation_opt_out for c in customers)
    cats = {c.category for c in shop.catalog}
    assert all(" > " in c for c in cats)
    assert all(c.price and c.price > 0 and c.margin is not None for c in shop.catalog)


def test_write_shop_csv_has_the_generic_columns(tmp_path: Path) -> None:
    small = generate_shop(50, 30, 800, seed=3)
    paths = write_shop(small, tmp_path / "out")
    assert paths["events"].name == "events.csv.gz"
    with gzip.open(paths["events"], "rt", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == EVENT_FILE_COLUMNS
    assert len(rows) == 801
    first = dict(zip(EVENT_FILE_COLUMNS, rows[1], strict=True))
    assert first["timestamp"].endswith("+00:00")
    assert first["event_type"] in {"view", "cart", "purchase", "return"}
    with paths["catalog"].open(newline="") as f:
        cat = list(csv.reader(f))
    assert tuple(cat[0]) == CATALOG_FILE_COLUMNS
    assert {r[4] for r in cat[1:]} <= {"true", "false"}
    with paths["customers"].open(newline="") as f:
        cust = list(csv.reader(f))
    assert tuple(cust[0]) == CUSTOMER_FILE_COLUMNS
    assert len(cust) == 51


def test_write_shop_parquet_round_trips(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    small = generate_shop(50, 30, 500, seed=4)
    paths = write_shop(small, tmp_path, format="parquet")
    table = pq.read_table(paths["events"])
    assert tuple(table.column_names) == EVENT_FILE_COLUMNS
    assert table.num_rows == 500
    ids, items = table.column("event_id").to_pylist(), table.column("item_id").to_pylist()
    written = dict(zip(ids, items, strict=True))
    assert written == dict(zip(small.events.event_id, small.events.item_id, strict=True))


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="at least 1 user"):
        generate_shop(0, 10, seed=1)
    with pytest.raises(ConfigError, match="guest_share"):
        generate_shop(10, 10, seed=1, guest_share=1.5)


def test_generate_command_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recsys.cli import main

    code = main(
        [
            "generate",
            "--users",
            "30",
            "--items",
            "20",
            "--events",
            "400",
            "--seed",
            "5",
            "--out",
            str(tmp_path / "g"),
            "--no-gzip",
        ]
    )
    assert code == 0
    assert (tmp_path / "g" / "events.csv").read_text().count("\n") == 401
    assert "wrote 400 events" in capsys.readouterr().out


def test_written_files_ingest_to_the_same_training_data(tmp_path: Path) -> None:
    ingest = pytest.importorskip("recsys.data.ingest")
    from recsys.data.interactions import InteractionConfig, build_training_data
    from recsys.store.sqlite import SQLiteStore

    small = generate_shop(60, 40, 1500, seed=9)
    paths = write_shop(small, tmp_path)
    store = SQLiteStore(tmp_path / "s.db")
    store.migrate()
    report = ingest.ingest_events(store, paths["events"], format="generic")
    assert report.loaded == 1500
    loaded = store.read_events()
    store.close()
    a = build_training_data(loaded, InteractionConfig(half_life_days=7))
    b = build_training_data(small.events, InteractionConfig(half_life_days=7))
    assert a.users == b.users and a.items == b.items
    assert (a.interactions != b.interactions).nnz == 0
    assert (a.orders != b.orders).nnz == 0
