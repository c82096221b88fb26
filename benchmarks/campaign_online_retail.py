"""A campaign on real data: UCI Online Retail, one campaign date, counts and expected value.

Loads ``../shared/data/online_retail.csv.gz`` (the project does not ship it) into a temporary
SQLite store with :mod:`recsys.data.ingest`, gives every customer a synthetic birthday
(seeded: the data has none), fits the models the offers use (buy-again, bought-together,
hybrid) on the events before the campaign date, and runs the campaign of that date with the
example promotions (``training/configs/promotions.toml``). Prints sends per trigger and per
segment, the expected value, and the run time; then re-runs the date to show it sends nothing
twice.

    .venv/bin/python benchmarks/campaign_online_retail.py [--date 2011-12-01] [--no-models]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "online_retail.csv.gz"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", default="2011-12-01")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-per-customer", type=int, default=3)
    parser.add_argument("--no-models", action="store_true", help="history fallbacks only")
    args = parser.parse_args()
    if not DATA.exists():
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 2

    from recsys.data.ingest import ingest_events
    from recsys.data.interactions import InteractionConfig, build_training_data
    from recsys.models import BuyAgainModel, CooccurrenceModel, HybridModel
    from recsys.offers.campaigns import LoadedModels, run_campaign
    from recsys.offers.catalog import load_promotions
    from recsys.offers.triggers import day_start_micros
    from recsys.store.sqlite import SQLiteStore

    day = date.fromisoformat(args.date)
    promotions = load_promotions(ROOT / "training" / "configs" / "promotions.toml")
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "retail.db")
        store.migrate()
        t0 = time.perf_counter()
        report = ingest_events(store, DATA, format="online-retail")
        print(f"ingested {report.loaded:,} events in {time.perf_counter() - t0:.1f} s")

        # synthetic birthdays, seeded: uniform over the days of a leap year (29 Feb included)
        rng = np.random.default_rng(args.seed)
        customers = store.read_customers()
        offsets = rng.integers(0, 366, size=len(customers))
        years = rng.integers(1950, 2000, size=len(customers))
        with_birthdays = []
        for c, off, year in zip(customers, offsets.tolist(), years.tolist(), strict=True):
            bday = date(2000, 1, 1) + timedelta(days=off)
            if not (bday.month == 2 and bday.day == 29):
                bday = bday.replace(year=int(year))
            with_birthdays.append(replace(c, birthday=bday))
        store.upsert_customers(with_birthdays)
        print(f"customers with a synthetic birthday: {len(with_birthdays):,} (seed {args.seed})")

        models = None
        if not args.no_models:
            t0 = time.perf_counter()
            events = store.read_events(until=day_start_micros(day))
            data = build_training_data(
                events,
                InteractionConfig(half_life_days=180.0),
                as_of=day_start_micros(day),
                catalog=store.read_items(),
            )
            fitted = {
                "buy_again": BuyAgainModel().fit(data),
                "bought_together": CooccurrenceModel(source="basket").fit(data),
                "hybrid": HybridModel(seed=args.seed).fit(data),
            }
            models = LoadedModels.of(
                fitted,
                version="benchmark",
                as_of=data.as_of,
                users=data.users,
                items=data.items,
                history=data.interactions,
            )
            hybrid = fitted["hybrid"]
            print(
                f"fitted buy_again, bought_together, hybrid on {len(events):,} events before "
                f"{day} in {time.perf_counter() - t0:.1f} s (hybrid ranker: {hybrid.ranker_kind_}, "
                f"calibrated: {hybrid.calibrated_})"
            )

        t0 = time.perf_counter()
        result = run_campaign(
            store, promotions, day, max_per_customer=args.max_per_customer, models=models
        )
        seconds = time.perf_counter() - t0
        n_users = len({c.user_id for c in result.sends})
        print(
            f"\ncampaign {day}: {len(result.sends):,} offers to {n_users:,} customers "
            f"in {seconds:.1f} s (P from {result.probability_source})"
        )
        print(f"customers considered: {result.customers_considered:,}")
        print(
            "sends per trigger: " + ", ".join(f"{k}={v:,}" for k, v in result.by_trigger().items())
        )
        print(
            "sends per segment: " + ", ".join(f"{k}={v:,}" for k, v in result.by_segment().items())
        )
        print("not sent: " + ", ".join(f"{k}={v:,}" for k, v in sorted(result.skipped.items())))
        ev = np.array([c.expected_value for c in result.sends])
        cost = sum(c.probability * c.discount_cost for c in result.sends)
        print(
            f"expected value of the set: {ev.sum():,.2f} "
            f"(mean {ev.mean() if len(ev) else 0:.3f} per offer; "
            f"expected discount cost {cost:,.2f})"
        )
        by_offer: dict[str, list[float]] = {}
        for c in result.sends:
            by_offer.setdefault(c.offer_id, []).append(c.expected_value)
        for offer, values in sorted(by_offer.items()):
            print(f"  {offer:<18} sends={len(values):>5,}  expected value={sum(values):>10,.2f}")
        segs = {}
        for s in result.segments.values():
            segs[s] = segs.get(s, 0) + 1
        print(
            "segments of all customers: " + ", ".join(f"{k}={v:,}" for k, v in sorted(segs.items()))
        )
        for c in result.sends[:5]:
            print(
                f"  e.g. {c.user_id} {c.offer_id} item={c.item_id} reasons={';'.join(c.reasons)} "
                f"P={c.probability:.3f} EV={c.expected_value:.2f}"
            )

        again = run_campaign(
            store, promotions, day, max_per_customer=args.max_per_customer, models=models
        )
        print(
            f"\nre-run of {day}: {len(again.sends)} new sends "
            f"({again.already_sent:,} customers already sent)"
        )
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
