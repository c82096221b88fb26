"""The hybrid's ``repeat_first`` test over rolling cuts: what it chose, and what each order scored.

At each of 4 rolling cuts (:func:`recsys.evaluation.splits.rolling_cuts`, ``--window`` days
apart, tested on the ``--window`` days after each) and for each of ``--seeds`` seeds, the
shipped hybrid is fitted once with ``repeat_first="auto"``; its lists are then scored three
ways from that one fit: ``never`` (the learned order), ``always`` (the customer's own
purchases first) and ``auto`` (what the fit's test chose). The test's numbers (the probe's
NDCG@10 both ways on the newest label window, and the paired t statistic) are printed per
cut and seed, and the means over cuts and seeds per way, for ``repeat_first`` thresholds 0-3
(the decision "t above the threshold" replayed from the recorded t), and the choices a
training run makes when it holds the serving version's (the cuts taken as successive
versions, oldest first: :func:`recsys.models.orders.held_choice`).

The events are read from a state folder that ``recsys ingest`` filled (``--home``), weighted
with the training config's ``[interactions]``; ``repeat_popular`` (own items, then
popularity) is scored alongside unless ``--no-baseline``.

Usage::

    RECSYS_HOME=/tmp/tfh .venv/bin/recsys ingest ../shared/data/ta_feng_events.csv.gz \\
        --format generic
    nice -n 5 .venv/bin/python benchmarks/bench_repeat_first.py --home /tmp/tfh --window 21 \\
        --json tf.json

``--before DAY`` keeps the events before that day only, so that the cuts fall in the shop's
first months, where the label windows are thirds of a short history; ``--after DAY`` drops
those before it, as if the shop had opened that day (a young shop at another season).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cut_scores, machine
from recsys.data.schema import MICROS_PER_DAY

WAYS = ("never", "always", "auto")


def events_between(events: Any, after: date | None, before: date | None) -> Any:
    """The events from ``after`` (00:00 UTC, included) to ``before`` (00:00 UTC, excluded),
    either end open when ``None``: an :class:`~recsys.data.schema.EventFrame`."""
    from recsys.offers.triggers import day_start_micros

    keep = np.ones(len(events), dtype=bool)
    if after is not None:
        keep &= events.ts >= day_start_micros(after)
    if before is not None:
        keep &= events.ts < day_start_micros(before)
    return events.select(keep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="state folder with the events")
    parser.add_argument("--window", type=int, default=30, help="days after each cut")
    parser.add_argument("--cuts", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every number here")
    parser.add_argument(
        "--before",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="only the events before this day (UTC), so that the cuts fall in a shop's first "
        "months: the short histories whose label windows are thirds",
    )
    parser.add_argument(
        "--after",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="only the events from this day (UTC) on: the shop as if it had opened that day",
    )
    args = parser.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from recsys.data.interactions import TrainingData
    from recsys.evaluation.rolling import evaluate_rolling
    from recsys.models.base import Recommender
    from recsys.models.baselines import RepeatModel
    from recsys.models.hybrid import HybridModel
    from recsys.store.sqlite import SQLiteStore
    from training.config import load_training_config

    store = SQLiteStore(args.home / "recsys.db")
    events, catalog = store.read_events(), store.read_items()
    store.close()
    if args.before is not None or args.after is not None:
        events = events_between(events, args.after, args.before)
        print(f"{len(events):,} events from {args.after} to {args.before}", flush=True)
    first_day = float(events.ts.min()) / MICROS_PER_DAY
    config = load_training_config()
    params = {**dict(config.models["hybrid"].params), "repeat_first": "auto"}
    print(f"{machine()}; hybrid {params}", flush=True)
    fits: dict[tuple[int, int], tuple[HybridModel, float]] = {}

    def way(seed: int, name: str) -> type[Recommender]:
        class Way(HybridModel):
            """One fit per (cut, seed), shared by the three ways, ordered as ``name`` says."""

            def fit(self, data: TrainingData) -> Any:
                key = (data.as_of, seed)
                if key not in fits:
                    start = time.perf_counter()
                    model = HybridModel(**{**params, "seed": seed}).fit(data)
                    fits[key] = model, time.perf_counter() - start
                fitted = fits[key][0]
                self.__dict__.update(fitted.__dict__)
                self.repeat_first_ = {"never": False, "always": True}.get(
                    name, fitted.repeat_first_
                )
                return self

        return Way

    models: dict[str, Any] = {
        f"{name}/{seed}": way(seed, name) for seed in range(args.seeds) for name in WAYS
    }
    if not args.no_baseline:
        models["repeat_popular"] = lambda: RepeatModel(fallback="popular")
    start = time.perf_counter()
    with threadpool_limits(2):
        rolling = evaluate_rolling(
            events,
            models,
            n_cuts=args.cuts,
            window_days=args.window,
            interaction_config=config.interactions,
            catalog=catalog,
        )
    print(f"{time.perf_counter() - start:.0f} s")
    rows = []
    for i, result in enumerate(rolling.cuts):
        tests = {
            str(seed): {
                **{k: v for k, v in fitted.train_stats_.items() if k.startswith("gate")},
                "windows": fitted.train_stats_.get("windows", 0.0),
                "fit_seconds": seconds,
            }
            for (as_of, seed), (fitted, seconds) in fits.items()
            if as_of == result.cut
        }
        history = result.cut / MICROS_PER_DAY - first_day
        print(f"cut {i}: {result.n_users} customers, {history:.0f} days of history")
        for seed, test in tests.items():
            print(f"  seed {seed} test " + ", ".join(f"{k} {v:.4f}" for k, v in test.items()))
        scores = cut_scores(result)
        for name, v in scores.items():
            print(f"  {name:16s} all {v[0]:.4f} / {v[1]:.4f}  new {v[2]:.4f} / {v[3]:.4f}")
        rows.append({"cut": i, "history_days": history, "tests": tests, "models": scores})

    print("\nmean over cuts and seeds (R@10 / NDCG@10 all, new), and the spread of seed means")
    for name in [*WAYS, "repeat_popular"][: len(WAYS) + (not args.no_baseline)]:
        v = np.array([[s for k, s in r["models"].items() if k.split("/")[0] == name] for r in rows])
        by_seed = v.mean(axis=0)
        print(
            f"  {name:16s}",
            " ".join(f"{x:.4f}" for x in v.mean(axis=(0, 1))),
            "spread",
            " ".join(f"{x:.4f}" for x in by_seed.max(axis=0) - by_seed.min(axis=0)),
        )
    for threshold in (0.0, 1.0, 2.0, 3.0):

        def chosen(r: dict[str, Any], seed: int, threshold: float = threshold) -> list[float]:
            first = r["tests"][str(seed)].get("gate_t", 0.0) > threshold
            return list(r["models"][f"{'always' if first else 'never'}/{seed}"])

        picked = np.array([[chosen(r, s) for s in range(args.seeds)] for r in rows])
        print(f"  t > {threshold:.0f}          ", " ".join(f"{x:.4f}" for x in picked.mean((0, 1))))
    firsts, held = held_means(rows, args.seeds)
    print(f"  held ({firsts} first)    ", " ".join(f"{x:.4f}" for x in held))
    firsts, ruled = held_means(rows, args.seeds, first_below_windows=3)
    print(f"  held, young shops first ({firsts} first)", " ".join(f"{x:.4f}" for x in ruled))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def held_means(
    rows: list[dict[str, Any]], seeds: int, *, first_below_windows: int = 0
) -> tuple[int, list[float]]:
    """The cuts as successive versions (oldest first): each seed's choice held against its
    choice at the cut before, as a training run holds the serving version's
    (:func:`~recsys.models.orders.held_choice`). Returns how many fits served own purchases
    first, and the means of their scores over cuts and seeds.

    ``first_below_windows``: a fit whose ranker learned on fewer label windows than this
    serves own purchases first without its test. With the shipped ``train_windows = 3``,
    3 replays :data:`~recsys.models.ranker.REPEAT_FIRST_MIN_WINDOWS` on fits that ran the
    test: under 120 days of history the ranker learns on 2 windows and the probe on 1."""
    from recsys.models.orders import RepeatChoice, held_choice

    scores, firsts = [], 0
    for seed in range(seeds):
        previous = None
        for r in rows:
            test = r["tests"][str(seed)]
            t = test.get("gate_t")
            if test.get("windows", first_below_windows) < first_below_windows:
                first = True
            else:
                first = False if t is None else held_choice(t, previous)
            previous = RepeatChoice(first, t)
            firsts += first
            scores.append(r["models"][f"{'always' if first else 'never'}/{seed}"])
    return firsts, [float(x) for x in np.mean(scores, axis=0)]


if __name__ == "__main__":
    raise SystemExit(main())
