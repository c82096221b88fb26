from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from recsys.errors import ConfigError
from recsys.offers.catalog import load_promotions
from tests.offers.helpers import catalog, promo

EXAMPLE = Path(__file__).resolve().parents[2] / "training" / "configs" / "promotions.toml"


def test_example_file_loads() -> None:
    cat = load_promotions(EXAMPLE)
    assert {p.trigger for p in cat} == {
        "birthday",
        "replenishment",
        "winback",
        "cross_sell",
        "always",
    }
    assert cat.get("christmas-basket") is not None
    assert not cat.get("christmas-basket").personal  # type: ignore[union-attr]
    assert [p.id for p in cat.valid_on(date(2012, 1, 1))] == [
        "birthday-10",
        "restock-5",
        "we-miss-you",
        "goes-with",
    ]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"discount": {"percent": 150}}, "'discount.percent'"),
        ({"discount": {"percent": 10, "amount": 5}}, "'discount'"),
        ({"discount": {"amount": 0}}, "'discount.amount'"),
        ({"applies_to": {"items": ["a"], "basket": True}}, "'applies_to'"),
        ({"valid_from": "2024-01-01T00:00:00"}, "'valid_from'"),
        ({"valid_until": "2023-01-01T00:00:00Z"}, "valid_until"),
        ({"trigger": "payday"}, "'trigger'"),
        ({"eligibility": {"channels": ["fax"]}}, "'eligibility.channels.0'"),
        ({"caps": {"per_customer": 0}}, "'caps.per_customer'"),
        ({"frequency_cap": {"max_impressions": 2}}, "'frequency_cap.period_days'"),
        ({"colour": "red"}, "unknown key 'colour'"),
    ],
)
def test_errors_name_offer_and_field(override: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        catalog(promo(), promo(id="bad-one", **override))
    message = str(err.value)
    assert "test.toml" in message
    assert "offer 'bad-one'" in message
    assert field in message


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ConfigError, match="offer 'p1': 'id' is used by another"):
        catalog(promo(), promo())


def test_offer_without_id_is_named_by_position(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"promotions": [{"title": "x"}]}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"p.json: promotion #1: 'id': Field required"):
        load_promotions(path)


def test_validity_is_any_moment_of_the_day() -> None:
    p = catalog(promo(valid_from="2024-03-01T18:00:00Z", valid_until="2024-03-02T06:00:00Z"))
    only = next(iter(p))
    assert only.valid_on(date(2024, 3, 1))
    assert only.valid_on(date(2024, 3, 2))
    assert not only.valid_on(date(2024, 2, 29))
    assert not only.valid_on(date(2024, 3, 3))
