"""Rolling-origin quality of the default model against the baselines, on real purchase data.

The protocol of ``recsys evaluate --cuts N`` (:func:`recsys.evaluation.rolling.evaluate_rolling`):
``N`` cut dates ``--window`` days apart, the newest ``--window`` days before the end of the
log; each cut trains on every event before it and tests on the purchases of the window after
it, for the customers who bought in both periods, top 10 over the whole catalogue. Every model
is fitted at every cut in the same run:

- ``default``: the default model of ``training/configs/default.toml`` with its parameters;
- ``popular``, ``als``, ``ease``: as configured there (EASE is skipped with a notice on a
  catalogue over its ``max_items``);
- ``repeat``: the customer's own items by number of orders, ties and gaps filled by EASE
  (skipped with EASE);
- ``repeat_popular``: the same with gaps filled by popularity, which fits any catalogue.

Events become weights with the training config's ``[interactions]`` (what ``recsys train``
ships), for every model alike. The data goes through the product's own ingest path into a
temporary SQLite store. Nothing here is tuned: the numbers measure the shipped settings.

Then the issue-12 targets are checked on the means over the cuts: the default against the
own-items+EASE baseline on all items (recall@10 and NDCG@10), and against the best of ALS,
EASE and popularity on items new to the customer.

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_rolling.py \\
        --data ../shared/data/online_retail.csv.gz --format online-retail --cuts 4
    nice -n 10 .venv/bin/python benchmarks/bench_rolling.py \\
        --data ../shared/data/ta_feng_events.csv.gz --format generic --cuts 4 \\
        --sample-customers 0.25

``--sample-customers F`` keeps a deterministic share ``F`` of the customers (those whose
sha256 of the id falls below ``F``), all their events, for data too large for the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED_DATA, machine

DEFAULT_DATA = SHARED_DATA / "online_retail.csv.gz"
#: The learned and popularity baselines of issue 12 (configured as `recsys train` ships them).
BASELINES = ("popular", "als", "ease")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="events file")
    parser.add_argument(
        "--format", default="online-retail", help="ingest format: online-retail or generic"
    )
    parser.add_argument("--cuts", type=int, default=4, help="number of cut dates (>= 4)")
    parser.add_argument("--window", type=int, default=30, help="days after each cut")
    parser.add_argument("--k", type=int, default=10, help="list length")
    parser.add_argument(
        "--sample-customers",
        type=float,
        default=1.0,
        metavar="F",
        help="keep this share of customers, chosen by a hash of the id (deterministic)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = parser.parse_args(argv)
    if not args.data.exists():
        # a fresh clone has no ../shared: skip with a note rather than fail
        print(f"skipped: {args.data} not found (see ../shared/data/README.md)", file=sys.stderr)
        return 0

    from threadpoolctl import threadpool_limits

    from recsys.data.ingest import ingest_events
    from recsys.evaluation.rolling import evaluate_rolling
    from recsys.models import model_class
    from recsys.models.baselines import RepeatModel
    from recsys.store.sqlite import SQLiteStore
    from training.config import load_training_config

    load_before = os.getloadavg()
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "store.db")
        try:
            ingest_events(store, args.data, format=args.format)
            events = store.read_events()
            catalog = store.read_items()
        finally:
            store.close()
    n_loaded = len(events)
    if args.sample_customers < 1.0:
        events = _sample_customers(events, args.sample_customers)
    print(
        f"loaded {n_loaded:,} events in {time.perf_counter() - started:.1f} s; "
        f"{len(events):,} kept (customer share {args.sample_customers:g})",
        file=sys.stderr,
    )

    config = load_training_config()
    default = config.default_model

    def configured(name: str) -> Any:
        spec = config.models.get(name)
        params = dict(spec.params) if spec is not None else {}
        registry_name = (spec.model if spec is not None else None) or name
        return lambda: model_class(registry_name)(**params)

    ease_params = dict(config.models["ease"].params) if "ease" in config.models else {}
    models: dict[str, Any] = {"default": configured(default)}
    models.update({name: configured(name) for name in BASELINES})
    models["repeat"] = lambda: RepeatModel(fallback="ease", fallback_params=ease_params)
    models["repeat_popular"] = lambda: RepeatModel(fallback="popular")

    started = time.perf_counter()
    with threadpool_limits(limits=config.threads or os.cpu_count() or 1):
        result = evaluate_rolling(
            events,
            models,
            n_cuts=args.cuts,
            window_days=args.window,
            k=args.k,
            interaction_config=config.interactions,
            catalog=catalog,
            notify=lambda message: print(message, file=sys.stderr),
        )
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()

    targets = _targets(result, args.k)
    print(f"`{' '.join(['benchmarks/bench_rolling.py', *(argv or sys.argv[1:])])}`")
    print(
        f"run {started_at:%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} min, {machine()}; "
        f"load average (1/5/15 min) before {_load(load_before)}, after {_load(load_after)}; "
        f"default model: {default}\n"
    )
    print(result.to_markdown())
    print(_targets_markdown(targets, args.k))
    if args.json is not None:
        data = {
            "command": sys.argv,
            "started_at": started_at.isoformat(timespec="seconds"),
            "seconds": seconds,
            "machine": machine(),
            "load_before": load_before,
            "load_after": load_after,
            "default_model": default,
            "sample_customers": args.sample_customers,
            "result": result.to_dict(),
            "targets": targets,
        }
        args.json.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    return 0


def _sample_customers(events: Any, share: float) -> Any:
    """Every event of the customers whose id hashes below ``share`` (guests are dropped)."""
    import numpy as np

    ids = sorted({str(u) for u in events.user_id.tolist() if u})
    limit = int(share * 2**64)
    kept = {
        u for u in ids if int.from_bytes(hashlib.sha256(u.encode()).digest()[:8], "big") < limit
    }
    mask = np.fromiter((u in kept for u in events.user_id.tolist()), dtype=bool, count=len(events))
    return events.select(mask)


def _targets(result: Any, k: int) -> list[dict[str, Any]]:
    """Ratios of the default model's means to the baselines' (issue 12's targets)."""
    out = []

    def mean(name: str, metric: str, which: str) -> float:
        return float(result.spread(name, metric, which).mean)

    for metric in ("recall", "ndcg"):
        for baseline in ("repeat", "repeat_popular"):
            base = mean(baseline, metric, "all")
            out.append(
                {
                    "what": f"{metric}@{k} all items: default / {baseline}",
                    "default": mean("default", metric, "all"),
                    "baseline": base,
                    "ratio": mean("default", metric, "all") / base if base > 0 else None,
                }
            )
        best_all = max(
            (mean(b, metric, "all"), b)
            for b in (*BASELINES, "repeat", "repeat_popular")
            if result.spread(b, metric, "all").n
        )
        out.append(
            {
                "what": f"{metric}@{k} all items: default / best baseline ({best_all[1]})",
                "default": mean("default", metric, "all"),
                "baseline": best_all[0],
                "ratio": mean("default", metric, "all") / best_all[0] if best_all[0] > 0 else None,
            }
        )
        best_new = max(
            (mean(b, metric, "new"), b) for b in BASELINES if result.spread(b, metric, "new").n
        )
        out.append(
            {
                "what": f"{metric}@{k} new items: default / best of ALS, EASE, popular "
                f"({best_new[1]})",
                "default": mean("default", metric, "new"),
                "baseline": best_new[0],
                "ratio": mean("default", metric, "new") / best_new[0] if best_new[0] > 0 else None,
            }
        )
    return out


def _targets_markdown(targets: list[dict[str, Any]], k: int) -> str:
    lines = [
        "Default model against the baselines (means over the cuts):",
        "",
        "| comparison | default | baseline | ratio |",
        "|---|---:|---:|---:|",
    ]
    for t in targets:
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}×"
        lines.append(f"| {t['what']} | {t['default']:.4f} | {t['baseline']:.4f} | {ratio} |")
    return "\n".join(lines) + "\n"


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    raise SystemExit(main())
