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

``--seeds N`` fits the default model with N seeds (its configured one, then the smallest
others: :func:`recsys.evaluation.rolling.other_seeds`) in the same run, the baselines once. The
hybrid's seed moved Ta-Feng's means by 1.6-3.5 % (benchmarks/RESULTS.md, "Thirteenth and
fourteenth sessions"), more than many settings it would compare. A table then gives each
seed's means and their spread, and the targets are checked on the mean over the seeds.

``--baseline FILE`` compares the run with an earlier one's ``--json`` (the same data and
cuts): every model's four means then and now, what differs in the numerics (the libraries'
versions, the CPU and its BLAS kernels), and exit status 1 when a target's default mean fell
by more than ``--max-drop`` (1 %). With the same code, data and numerics the numbers are the
same to the bit, so a check on every change of the models catches a drift the day it comes;
``benchmarks/baselines/`` holds the reference runs (see its README). Across CPUs the hybrid's
means move by 1-4 % with the BLAS kernels alone (RESULTS.md, thirty-fourth session): compare
on the baseline's platform, or force its kernels (``OPENBLAS_CORETYPE=Haswell``).
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED_DATA, machine
from recsys.environment import numerics_differ

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
    parser.add_argument(
        "--all-vs",
        choices=("repeat", "best"),
        default="repeat",
        help="all-items target baseline: own items + EASE (Online Retail) or the best (Ta-Feng)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS/OpenMP threads (default: the training config's `threads`, 0 = every core)",
    )
    parser.add_argument(
        "--ease-max-items",
        type=int,
        default=None,
        help="cap EASE's catalogue (and the repeat baseline's EASE) below its default: on "
        "scipy's OpenBLAS 0.3.30 the dense inverse crashes the process from about 16,000 items "
        "(see benchmarks/RESULTS.md, rolling origin), so EASE is skipped instead",
    )
    parser.add_argument(
        "--default-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one parameter of the default model (VALUE is JSON, e.g. "
        "als_regularization=0.01); repeatable. Compares a setting without editing the config",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="fit the default model with this many seeds and check the targets on their mean",
    )
    parser.add_argument("--target-all", type=float, default=1.05, help="all-items target ratio")
    parser.add_argument("--target-new", type=float, default=1.10, help="new-items target ratio")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="an earlier run's --json with the same data and cuts: every model's means now "
        "against it, what else differs (libraries, BLAS kernels), and exit 1 when a target's "
        "default mean fell by more than --max-drop",
    )
    parser.add_argument(
        "--max-drop",
        type=float,
        default=0.01,
        help="with --baseline: the largest fall of a target's default mean still accepted "
        "(a fraction; the same code, data and numerics give the same numbers to the bit)",
    )
    args = parser.parse_args(argv)
    then = None
    if args.baseline is not None:
        try:
            then = json.loads(args.baseline.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"--baseline {args.baseline}: {exc}")
    if not args.data.exists():
        # a fresh clone has no ../shared: skip with a note rather than fail
        print(f"skipped: {args.data} not found (see ../shared/data/README.md)", file=sys.stderr)
        return 0

    from threadpoolctl import threadpool_limits

    from recsys.environment import library_versions, platform_info
    from recsys.evaluation.rolling import evaluate_rolling, other_seeds
    from recsys.models import model_class
    from recsys.models.baselines import RepeatModel
    from training.config import load_training_config

    load_before = os.getloadavg()
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    events, catalog = load_events(args.data, args.format)
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

    def configured(name: str, overrides: dict[str, Any] | None = None) -> Any:
        spec = config.models.get(name)
        params = dict(spec.params) if spec is not None else {}
        params.update(overrides or {})
        registry_name = (spec.model if spec is not None else None) or name
        return lambda: model_class(registry_name)(**params)

    ease_params = dict(config.models["ease"].params) if "ease" in config.models else {}
    if args.ease_max_items is not None:
        ease_params["max_items"] = args.ease_max_items
    overrides: dict[str, Any] = {}
    for item in args.default_param:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--default-param {item!r}: expected KEY=VALUE")
        overrides[key] = json.loads(value)
    models: dict[str, Any] = {"default": configured(default, overrides)}
    seeded = other_seeds({"default": models["default"]()}, args.seeds)
    if args.seeds > 1 and not seeded:
        parser.error(f"--seeds: the default model {default!r} has no seed parameter")
    models.update(seeded)
    defaults = ["default", *seeded]
    models.update({name: configured(name) for name in BASELINES})
    models["ease"] = lambda: model_class("ease")(**ease_params)
    models["repeat"] = lambda: RepeatModel(fallback="ease", fallback_params=ease_params)
    models["repeat_popular"] = lambda: RepeatModel(fallback="popular")

    started = time.perf_counter()
    threads = config.threads if args.threads is None else args.threads
    with threadpool_limits(limits=threads or os.cpu_count() or 1):
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

    targets = _targets(
        result, args.k, args.target_all, args.target_new, args.all_vs, defaults=defaults
    )
    print(f"`{' '.join(['benchmarks/bench_rolling.py', *(argv or sys.argv[1:])])}`")
    print(
        f"run {started_at:%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} min, {machine()}; "
        f"load average (1/5/15 min) before {_load(load_before)}, after {_load(load_after)}; "
        f"default model: {default}" + (f" with {json.dumps(overrides)}" if overrides else "") + "\n"
    )
    print(result.to_markdown())
    if len(defaults) > 1:
        print(_seeds_markdown(result, defaults, args.k))
    print(_fit_markdown(result))
    print(_targets_markdown(targets, args.k))
    data = {
        "command": sys.argv,
        "started_at": started_at.isoformat(timespec="seconds"),
        "seconds": seconds,
        "machine": machine(),
        "platform": platform_info(),
        "libraries": library_versions(),
        "load_before": load_before,
        "load_after": load_after,
        "default_model": default,
        "default_overrides": overrides,
        "sample_customers": args.sample_customers,
        "result": result.to_dict(),
        "targets": targets,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    if then is not None:
        # through JSON, as a baseline file holds it
        report, drops = compare_runs(then, json.loads(json.dumps(data, default=str)), args.max_drop)
        print(f"Against {args.baseline}:\n\n{report}")
        if drops:
            print("\n".join(f"drop: {drop}" for drop in drops), file=sys.stderr)
            return 1
    return 0


#: The four means compared with a baseline run, in the summary's keys.
_MEANS = ("recall@10_all", "ndcg@10_all", "recall@10_new", "ndcg@10_new")


def compare_runs(
    then: dict[str, Any], now: dict[str, Any], max_drop: float
) -> tuple[str, list[str]]:
    """Every model's means in ``now`` against ``then`` (two ``--json`` reports), and the falls.

    Same code, data, libraries and BLAS kernels give the same numbers to the bit, so a change
    there is the code's; with other numerics it can be the machine's alone (the hybrid's
    means moved 1-4 % between two CPUs' kernels), and the report says what differs.

    Parameters
    ----------
    then, now : dict
        The reports, as ``--json`` writes them.
    max_drop : float
        The largest relative fall of a target's default mean (the mean over the seeds) that is
        not reported as a drop.

    Returns
    -------
    tuple of (str, list of str)
        A markdown report and one line per drop (empty: none).

    Raises
    ------
    SystemExit
        With one line, when the two runs cut the data differently (not comparable).
    """
    for key in ("cut_dates", "window_days", "k"):
        if then["result"].get(key) != now["result"].get(key):
            raise SystemExit(
                f"error: the baseline's {key} {then['result'].get(key)} is not this run's "
                f"{now['result'].get(key)}: not comparable"
            )
    lines = []
    differs = numerics_differ(then, now, unrecorded="the baseline")
    lines.append(
        "Numerics: "
        + ("the same libraries and BLAS kernels" if not differs else "; ".join(differs))
    )
    cpus = [(run.get("platform") or {}).get("cpu") for run in (then, now)]
    if cpus[0] != cpus[1]:  # the same kernels give the same numbers; said for the reader
        lines.append(f"CPU: {cpus[0] or 'not recorded'} -> {cpus[1]}")
    lines.append("")
    lines.append("| model | " + " | ".join(f"{m} then → now" for m in _MEANS) + " |")
    lines.append("|---|" + "---:|" * len(_MEANS))
    for model, means in now["result"]["summary"].items():
        before = then["result"]["summary"].get(model)
        if before is None:
            continue
        cells = []
        for metric in _MEANS:
            a, b = (before.get(metric) or {}).get("mean"), (means.get(metric) or {}).get("mean")
            cells.append("–" if a is None or b is None else f"{a:.4f} → {b:.4f} ({_ratio(b, a)})")
        if set(cells) != {"–"}:  # a model skipped in both runs has no row
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    drops = []
    earlier = {row["what"]: row for row in then.get("targets", [])}
    for row in now.get("targets", []):
        old = earlier.get(row["what"])
        if old is None or not old["default"]:
            continue
        change = row["default"] / old["default"] - 1.0
        if change < -max_drop:
            drops.append(
                f"{row['what']}: the default's mean {old['default']:.4f} -> {row['default']:.4f} "
                f"({change:+.1%}, more than {max_drop:.1%})"
                + (f"; numerics differ: {'; '.join(differs)}" if differs else "")
            )
    return "\n".join(lines) + "\n", drops


def _ratio(new: float, old: float) -> str:
    return f"{new / old:.3f}x" if old else "–"


def load_events(path: Path, format: str) -> tuple[Any, Any]:
    """The events and catalogue of ``path`` through the product's own ingest path (into a
    temporary SQLite store)."""
    from recsys.data.ingest import ingest_events
    from recsys.store.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "store.db")
        try:
            ingest_events(store, path, format=format)
            return store.read_events(), store.read_items()
        finally:
            store.close()


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


def _targets(
    result: Any,
    k: int,
    target_all: float,
    target_new: float,
    all_vs: str,
    *,
    defaults: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Issue 12's targets: ratios of the default model's means to the baselines' means.

    ``all_vs`` names the all-items baseline: ``repeat`` (the customer's own items + EASE, the
    Online Retail target) or ``best`` (the best mean of every baseline, the Ta-Feng target).
    Each row also gives the ratio's range over the cuts, so one lucky cut shows. With several
    ``defaults`` (the default model with other seeds), the default's value at each cut is
    their mean.
    """
    defaults = defaults or ["default"]
    baselines_all = [b for b in (*BASELINES, "repeat", "repeat_popular") if _n(result, b)]
    baselines_new = [b for b in BASELINES if _n(result, b)]
    out = []
    for metric in ("recall", "ndcg"):
        for which, pool, target in (
            ("all", [all_vs] if all_vs != "best" else baselines_all, target_all),
            ("new", baselines_new, target_new),
        ):
            pool = [b for b in pool if _n(result, b)]
            if not pool:
                continue
            best = max(pool, key=lambda b: result.spread(b, metric, which).mean)
            mine = np.mean([result.values(d, metric, which) for d in defaults], axis=0)
            theirs = result.values(best, metric, which)
            per_cut = [a / b for a, b in zip(mine, theirs, strict=True) if b > 0]
            base = result.spread(best, metric, which).mean
            mean = float(np.nanmean(mine))
            ratio = mean / base if base > 0 else None
            name = "default" if len(defaults) == 1 else f"default (mean of {len(defaults)} seeds)"
            out.append(
                {
                    "what": f"{metric}@{k} {which} items: {name} / {best}"
                    + (f" (best of {', '.join(pool)})" if len(pool) > 1 else ""),
                    "default": mean,
                    "baseline": base,
                    "ratio": ratio,
                    "per_cut": per_cut,
                    "target": target,
                    "met": ratio is not None and ratio >= target,
                }
            )
    return out


def _seeds_markdown(result: Any, defaults: list[str], k: int) -> str:
    """Each seed's means over the cuts, their mean, and the spread (max − min) / mean."""
    pairs = [(m, w) for m in ("recall", "ndcg") for w in ("all", "new")]
    lines = [
        "The default model by seed (means over the cuts):",
        "",
        "| seed | " + " | ".join(f"{m}@{k} {w}" for m, w in pairs) + " |",
        "|---|" + "---:|" * len(pairs),
    ]
    means = {d: [result.spread(d, m, w).mean for m, w in pairs] for d in defaults}
    for d in defaults:
        label = d.removeprefix("default seed=") if d != "default" else "configured"
        lines.append(f"| {label} | " + " | ".join(f"{v:.4f}" for v in means[d]) + " |")
    columns = np.array([means[d] for d in defaults])
    mean = columns.mean(axis=0)
    spread = (columns.max(axis=0) - columns.min(axis=0)) / np.where(mean > 0, mean, np.nan)
    lines.append("| **mean** | " + " | ".join(f"**{v:.4f}**" for v in mean) + " |")
    lines.append("| (max − min) / mean | " + " | ".join(f"{v:.1%}" for v in spread) + " |")
    return "\n".join(lines) + "\n"


def _n(result: Any, name: str) -> int:
    return int(result.spread(name, "recall", "all").n)


def _targets_markdown(targets: list[dict[str, Any]], k: int) -> str:
    lines = [
        "Default model against the baselines (ratio of the means over the cuts; per-cut range):",
        "",
        "| comparison | default | baseline | ratio | per cut | target | met |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for t in targets:
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.3f}×"
        cuts = f"{min(t['per_cut']):.2f}–{max(t['per_cut']):.2f}" if t["per_cut"] else "-"
        lines.append(
            f"| {t['what']} | {t['default']:.4f} | {t['baseline']:.4f} | {ratio} | {cuts} "
            f"| ≥ {t['target']:.2f}× | {'yes' if t['met'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def _fit_markdown(result: Any) -> str:
    """Wall seconds of each model's fit per cut (the machine's load inflates them: compare
    models of one run, not runs)."""
    from recsys.data.schema import from_micros

    dates = [str(from_micros(r.cut).date()) for r in result.cuts]
    names = [m.name for m in result.cuts[-1].models] if result.cuts else []
    lines = [
        "Fit wall seconds per cut (same run):",
        "",
        "| model | " + " | ".join(dates) + " |",
        "|---|" + "---:|" * len(dates),
    ]
    for name in names:
        cells = []
        for r in result.cuts:
            found = [m for m in r.models if m.name == name]
            cells.append(f"{found[0].fit_seconds:.1f}" if found else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    raise SystemExit(main())
