from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import pytest

from recsys.cli import main
from recsys.data.schema import Customer
from recsys.offers.campaigns import run_campaign, write_campaign
from recsys.offers.store import sends_on
from recsys.store.base import EventStore
from tests.offers.helpers import TODAY, catalog, promo, purchase

D = timedelta


def _fill(store: EventStore) -> None:
    store.migrate()
    rows = [
        purchase(f"u{n}", "mug", TODAY - D(days=30 + 7 * k + n)) for n in range(4) for k in range(3)
    ]
    store.insert_events(rows)
    store.upsert_customers(
        [
            Customer("u0", birthday=date(1990, 6, 30)),
            Customer("u1", marketing_opt_out=True),
            Customer("u2", personalisation_opt_out=True),
            Customer("u9", birthday=date(1990, 6, 20)),  # no purchases yet
        ]
    )


def test_campaign_rerun_sends_nothing_twice(store: EventStore, tmp_path: Path) -> None:
    _fill(store)
    cat = catalog(
        promo(id="bday", trigger="birthday", eligibility={"channels": ["email"]}),
        promo(id="all", applies_to={"basket": True}),
        promo(id="wb", trigger="winback", applies_to={"basket": True}),
    )
    first = run_campaign(store, cat, TODAY, max_per_customer=2)
    users = {c.user_id for c in first.sends}
    assert "u1" not in users  # marketing opt-out
    assert first.skipped["marketing_opt_out"] == 1
    assert {c.offer_id for c in first.sends if c.user_id == "u2"} == {"all"}
    assert {c.offer_id for c in first.sends if c.user_id == "u0"} == {"bday", "all"}
    assert {c.offer_id for c in first.sends if c.user_id == "u9"} == {"bday", "all"}
    assert all(len([c for c in first.sends if c.user_id == u]) <= 2 for u in users)
    assert len(sends_on(store, TODAY.isoformat())) == len(first.sends)

    second = run_campaign(store, cat, TODAY, max_per_customer=2)
    assert second.sends == [] and second.already_sent == len(users)
    out = tmp_path / "again.csv"
    assert write_campaign(second, out) == 0
    assert out.read_text(encoding="utf-8").count("\n") == 1  # header only

    # the next day: the birthday offer was sent in this window already; "all" is capped
    # by nothing, so it is sent again
    nxt = run_campaign(store, cat, TODAY + D(days=1), max_per_customer=2)
    assert not any(c.offer_id == "bday" for c in nxt.sends)


def test_campaign_cli_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[promotions]]\nid = "x"\ntitle = "t"\napplies_to = { basket = true }\n'
        "discount = { percent = 101 }\nvalid_from = 2024-01-01T00:00:00Z\n"
        "valid_until = 2025-01-01T00:00:00Z\n",
        encoding="utf-8",
    )
    assert main(["offers", "validate", str(bad)]) == 2
    assert "offer 'x': 'discount.percent'" in capsys.readouterr().err

    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    _fill(open_store(load_settings(Settings)))
    out = tmp_path / "c.csv"
    assert main(["campaigns", "run", "--date", TODAY.isoformat(), "--out", str(out)]) == 0
    first = list(csv.DictReader(out.open(encoding="utf-8")))
    assert first and {"user_id", "offer_id", "reasons", "expected_value"} <= set(first[0])
    assert main(["campaigns", "run", "--date", TODAY.isoformat(), "--out", str(out)]) == 0
    assert "already ran" in capsys.readouterr().out
    assert list(csv.DictReader(out.open(encoding="utf-8"))) == []
    assert main(["segments", "--json"]) == 0
    assert '"segments"' in capsys.readouterr().out


@pytest.mark.parametrize("name", ["sends.txt", "no/such/folder/sends.csv"])
def test_an_out_that_cannot_be_written_is_refused_before_anything_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A run records its sends and a second run of the date sends nothing: a file that could
    not be written after the recording would lose the day's campaign."""
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    store = open_store(load_settings(Settings))
    _fill(store)
    day = TODAY.isoformat()
    assert main(["campaigns", "run", "--date", day, "--out", str(tmp_path / name)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --out {tmp_path / name}: ")
    assert sends_on(store, day) == []
    out = tmp_path / "sends.csv"
    assert main(["campaigns", "run", "--date", day, "--out", str(out)]) == 0
    assert len(list(csv.DictReader(out.open(encoding="utf-8")))) == len(sends_on(store, day)) > 0


def test_a_retired_or_out_of_stock_item_is_not_offered_in_a_campaign(store: EventStore) -> None:
    from recsys.data.schema import CatalogItem

    _fill(store)
    store.upsert_items([CatalogItem("mug", title="Mug", price=5.0)])
    cat = catalog(
        promo(id="mugs", applies_to={"items": ["mug"]}, eligibility={"channels": ["email"]})
    )
    before = run_campaign(store, cat, TODAY, record=False)
    assert {c.offer_id for c in before.sends} == {"mugs"}
    store.retire_item("mug")
    assert run_campaign(store, cat, TODAY, record=False).sends == []
    store.upsert_items([CatalogItem("mug", title="Mug", price=5.0, in_stock=False)])
    assert run_campaign(store, cat, TODAY, record=False).sends == []
