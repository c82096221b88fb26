"""The promotions file the service writes reads back as the same catalogue."""

from __future__ import annotations

import tempfile
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.offers.catalog import Promotion
from recsys.offers.service import FILE_HEADER, read_catalog, write_promotions
from tests.offers.helpers import catalog, promo

ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}\Z")
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
starts = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
)
words = st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=3)
maybe_float = st.one_of(st.none(), st.floats(0.01, 1e6))
maybe_int = st.one_of(st.none(), st.integers(1, 10**6))


@st.composite
def promotions(draw: st.DrawFn, offer_id: str) -> dict[str, Any]:
    start = draw(starts)
    applies: dict[str, Any] = draw(
        st.one_of(
            st.builds(lambda w: {"items": w}, words),
            st.builds(lambda w: {"categories": w}, words),
            st.just({"basket": True}),
            st.just({"any_item": True}),
        )
    )
    data: dict[str, Any] = {
        "id": offer_id,
        "title": draw(st.text(min_size=1, max_size=30)),
        "trigger": draw(
            st.sampled_from(["birthday", "replenishment", "winback", "cross_sell", "always"])
        ),
        "applies_to": applies,
        "discount": draw(
            st.one_of(
                st.builds(lambda p: {"percent": p}, st.floats(0.01, 100.0)),
                st.builds(lambda a: {"amount": a}, st.floats(0.01, 1e6)),
            )
        ),
        "valid_from": start,
        "valid_until": start + draw(st.timedeltas(timedelta(seconds=1), timedelta(days=900))),
        "eligibility": {
            "segments": draw(st.one_of(st.none(), words)),
            "new_customers_only": draw(st.booleans()),
            "birthday_window": draw(st.booleans()),
            "min_basket": draw(maybe_float),
            "channels": draw(
                st.lists(st.sampled_from(["email", "web", "app"]), min_size=1, max_size=3)
            ),
        },
        "caps": {
            "per_customer": draw(maybe_int),
            "total_redemptions": draw(maybe_int),
            "budget": draw(maybe_float),
        },
        "frequency_cap": draw(
            st.one_of(
                st.none(),
                st.builds(
                    lambda m, d: {"max_impressions": m, "period_days": d},
                    st.integers(1, 100),
                    st.integers(1, 365),
                ),
            )
        ),
        "priority": draw(st.integers(-(2**63), 2**63 - 1)),
    }
    return data


promotion_lists = st.lists(ids, min_size=1, max_size=3, unique=True).flatmap(
    lambda xs: st.tuples(*(promotions(x) for x in xs))
)


@settings(max_examples=40, deadline=None)
@given(promotion_lists, st.sampled_from([".toml", ".json"]))
def test_write_then_read_gives_the_same_promotions(
    docs: tuple[dict[str, Any], ...], suffix: str
) -> None:
    promos: list[Promotion] = list(catalog(*docs))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"promotions{suffix}"
        write_promotions(path, promos)
        assert list(read_catalog(path)) == promos


def test_toml_file_has_the_header_datetimes_and_no_unset_fields(tmp_path: Path) -> None:
    path = tmp_path / "promotions.toml"
    write_promotions(path, list(catalog(promo())))
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# {FILE_HEADER}\n")
    raw = tomllib.loads(text)["promotions"][0]
    assert raw["valid_from"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert "frequency_cap" not in raw and "amount" not in raw["discount"]


def test_a_change_keeps_what_another_worker_wrote(tmp_path: Path) -> None:
    """Two workers, each with its own copy of the file: a change is made to the file as it
    is, not to a copy up to a refresh interval old (a worker's write undid the other's)."""
    from recsys.offers.service import OfferService
    from recsys.store.sqlite import SQLiteStore

    path = tmp_path / "promotions.toml"
    store = SQLiteStore(tmp_path / "store.db")
    store.migrate()
    first, second = (OfferService(store, path, fallback=None).load() for _ in range(2))
    try:
        first.put(promo(id="a"), "a")
        second.put(promo(id="b"), "b")  # its copy has no "a"
        first.put(promo(id="a", priority=3), "a")  # its copy has no "b"
        assert [(p.id, p.priority) for p in read_catalog(path)] == [("a", 3), ("b", 0)]
        second.delete("a")
        first.put(promo(id="c"), "c")  # its copy still has "a": a deleted one must not return
        assert [p.id for p in read_catalog(path)] == ["b", "c"]
    finally:
        first.close()
        second.close()
        store.close()
