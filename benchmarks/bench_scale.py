"""How training time grows with data: 10^5, 10^6 and 10^7 interactions.

Each size runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its own.
Per size: ALS (64 factors, 15 iterations, 1 thread), bought-together co-occurrence (cosine)
and popularity fits, and -- where the shop generator is used -- ``build_training_data``.

Two sources of data:

* **power-law sampler** (every size, used for the model fits): ``n`` purchase events with
  users drawn by a log-normal activity (sigma 1) and items by Zipf's law (exponent 1) over
  ``n/20`` users and ``n/100`` items; events are sorted by user and cut into baskets of
  ``1 + Poisson(4)`` lines, so orders hold one user's items. It builds the matrices directly
  (no string ids), because the full generator (:func:`recsys.data.synthetic.generate_shop`)
  takes minutes at 10^7 events, more than the time budget.
* **the shop generator** (10^5 and 10^6 by default, ``--generator-max``): timed, then
  ``build_training_data`` timed on its events.

The slope of log(time) against log(size) says how the cost grows (1 = linear).

Run: ``.venv/bin/python -m benchmarks.bench_scale [--smoke] [--sizes 1e5,1e6,1e7]``
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmarks.common import (
    base_parser,
    markdown_table,
    out_dir,
    peak_rss_mib,
    pyplot,
    save_plot,
    timed,
    write_report,
)

MICROS_PER_DAY = 86_400_000_000
START_US = 1_704_067_200_000_000  # 2024-01-01 UTC


def power_law_data(n: int, seed: int = 0) -> Any:
    """A :class:`TrainingData` of ``n`` purchase events from the power-law sampler above."""
    from recsys.data.interactions import TrainingData
    from recsys.data.schema import EventFrame
    from recsys.data.vocab import Vocabulary

    rng = np.random.default_rng(seed)
    n_users, n_items = max(n // 20, 10), max(n // 100, 10)
    activity = rng.lognormal(0.0, 1.0, n_users)
    popularity = 1.0 / (rng.permutation(n_items) + 1.0)
    user = np.searchsorted(np.cumsum(activity / activity.sum()), rng.random(n), side="right")
    item = np.searchsorted(np.cumsum(popularity / popularity.sum()), rng.random(n), side="right")
    user = np.minimum(user, n_users - 1)
    item = np.minimum(item, n_items - 1)
    order = np.argsort(user, kind="stable")
    user, item = user[order], item[order]
    sizes = 1 + rng.poisson(4.0, n)
    basket = np.repeat(np.arange(len(sizes)), sizes)[:n]
    ts = START_US + rng.integers(0, 90 * MICROS_PER_DAY, n)

    interactions = sp.csr_matrix(
        (np.full(n, 10.0, dtype=np.float32), (user, item)), shape=(n_users, n_items)
    )
    interactions.sum_duplicates()
    purchases = sp.csr_matrix(
        (np.ones(n, dtype=np.float32), (user, item)), shape=(n_users, n_items)
    )
    purchases.sum_duplicates()
    orders = sp.csr_matrix(
        (np.ones(n, dtype=np.float32), (basket, item)), shape=(int(basket[-1]) + 1, n_items)
    )
    orders.sum_duplicates()
    orders.data[:] = 1.0
    nothing = np.full(n, None, dtype=object)
    events = EventFrame(
        event_id=nothing,
        user_id=nothing,
        session_id=nothing,
        item_id=nothing,
        event_type=np.full(n, "purchase", dtype=object),
        ts=ts,
        quantity=np.ones(n),
        price=np.full(n, np.nan),
        order_id=nothing,
        recommendation_id=nothing,
    )
    width = len(str(max(n_users, n_items)))
    return TrainingData(
        users=Vocabulary([f"u{k:0{width}d}" for k in range(n_users)]),
        items=Vocabulary([f"i{k:0{width}d}" for k in range(n_items)]),
        interactions=interactions,
        purchase_counts=purchases,
        events=events,
        event_user=user.astype(np.intp),
        event_item=item.astype(np.intp),
        orders=orders,
        sessions=sp.csr_matrix((0, n_items), dtype=np.float32),
        item_category=[""] * n_items,
        item_price=np.full(n_items, np.nan),
        as_of=int(ts.max()),
    )


def measure_one(n: int, *, generator: bool, factors: int) -> dict[str, Any]:
    """Time every step at one size (in this process); peak RSS at the end."""
    import implicit.cpu.als  # noqa: F401  (its import, ~0.4 s, is not part of the fit)

    from recsys.data.interactions import InteractionConfig, build_training_data
    from recsys.data.synthetic import generate_shop
    from recsys.models.als import ALSModel
    from recsys.models.cooccurrence import CooccurrenceModel
    from recsys.models.popular import PopularModel

    row: dict[str, Any] = {"n": n}
    row["sample_s"], data = timed(lambda: power_law_data(n))
    row.update(users=data.n_users, items=data.n_items, nnz=int(data.interactions.nnz))
    row["als_s"] = timed(lambda d=data: ALSModel(factors=factors, num_threads=1).fit(d))[0]
    row["cooc_s"] = timed(lambda d=data: CooccurrenceModel(source="basket").fit(d))[0]
    row["popular_s"] = timed(lambda d=data: PopularModel().fit(d))[0]
    del data
    if generator:
        shop = generate_shop(max(n // 30, 10), max(n // 100, 10), n, seed=1)
        row["generate_s"], events = timed(lambda: shop.events)
        row["build_s"] = timed(lambda: build_training_data(events, InteractionConfig()))[0]
    row["peak_rss_mib"] = peak_rss_mib()
    return row


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) on log(x) (``nan`` with fewer than two points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if y > 0]
    if len(pts) < 2:
        return float("nan")
    lx, ly = np.array(pts).T
    return float(np.polyfit(lx, ly, 1)[0])


def main(argv: Sequence[str] | None = None) -> int:
    """Run every size in a subprocess; write ``scale.md``/``.json``/``.png``."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None, help="comma-separated sizes (default 1e5,1e6,1e7)")
    parser.add_argument(
        "--generator-max", type=float, default=1e6, help="largest size run through the generator"
    )
    parser.add_argument("--one", type=float, default=None, help=argparse_hidden())
    parser.add_argument("--factors", type=int, default=64)
    args = parser.parse_args(argv)
    if args.one is not None:  # the child: measure one size, print JSON
        n = int(args.one)
        print(json.dumps(measure_one(n, generator=n <= args.generator_max, factors=args.factors)))
        return 0

    out = out_dir(args)
    default = "1e3,1e4" if args.smoke else "1e5,1e6,1e7"
    sizes = [int(float(s)) for s in (args.sizes or default).split(",")]
    factors = 8 if args.smoke else args.factors
    rows = []
    for n in sizes:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.bench_scale",
            "--one",
            str(n),
            "--generator-max",
            str(args.generator_max),
            "--factors",
            str(factors),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"size {n} failed:\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"size {n:,}: {rows[-1]}", flush=True)

    steps = [
        ("als_s", "ALS fit"),
        ("cooc_s", "co-occurrence fit"),
        ("popular_s", "popular fit"),
        ("sample_s", "power-law sampling"),
        ("generate_s", "shop generator"),
        ("build_s", "build_training_data"),
    ]
    table = [
        [r["n"], r["users"], r["items"], r["nnz"]]
        + [r.get(k, "-") for k, _ in steps]
        + [round(r["peak_rss_mib"])]
        for r in rows
    ]
    slopes = {}
    for key, label in steps:
        have = [r for r in rows if key in r]
        slopes[label] = slope([r["n"] for r in have], [r[key] for r in have])
    md = [
        f"ALS {factors} factors, 15 iterations, 1 thread; co-occurrence: baskets, cosine, "
        "50 neighbours; seconds per step, one run per size in its own subprocess.",
        "",
        markdown_table(
            ["events", "users", "items", "non-zeros"]
            + [f"{label} s" for _, label in steps]
            + ["peak RSS MiB"],
            table,
        ),
        "",
        "Slope of log(time) on log(events) (1.0 = linear): "
        + ", ".join(f"{k} {v:.2f}" for k, v in slopes.items() if not math.isnan(v))
        + ".",
    ]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in steps:
        have = [r for r in rows if key in r]
        if have:
            ax.loglog([r["n"] for r in have], [r[key] for r in have], "o-", label=label)
    ax.set_xlabel("events")
    ax.set_ylabel("seconds")
    ax.set_title("Training time by data size")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    save_plot(fig, out, "scale")
    write_report(out, "scale", "\n".join(md), {"rows": rows, "slopes": slopes})
    return 0


def argparse_hidden() -> str:
    """Help text of the internal ``--one`` option (argparse.SUPPRESS hides it)."""
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
