"""Incremental retraining: ``--warm-start`` against a full run after 1 % new events.

Protocol (real data, the engine's default cut: the last 30 days before the newest event are the
holdout, cut at midnight UTC):

* "yesterday's version" is trained on the events before the cut less the newest 1 % of them;
* "today" adds that 1 %: a **full** fit and a **warm** fit (:mod:`training.warm`) on all events
  before the cut, both scored on the purchases after it (recall@10, NDCG@10); with
  ``--cuts N``, at N cut dates 30 days apart, with each ratio's mean, min and max;
* (a) model level: ALS (from yesterday's factors, ``warm_iterations`` sweeps), basket
  co-occurrence (yesterday's counts plus the new baskets) and the hybrid (yesterday's ranker,
  its generators rebuilt with ALS from yesterday's factors), fit seconds and quality;
* (b) pipeline level: ``run_training`` with the default configuration, full vs ``warm_start``
  (the warm run also skips the holdout evaluation; see :mod:`training.warm`), the warm run
  once as configured (customers with no new event keep yesterday's stored list) and once
  with every stored list scored again; each version scored as the API serves it (stored list
  or live scoring) on the purchases after the cut; with ``--noise``, against a second full run
  with another seed of the hybrid too; with ``--seeds N``, yesterday, the full and the warm run
  all with each of N seeds of the hybrid, and each cut's ratio of the seeds' means (two full
  fits with other seeds differ by more than the 1 % a warm run may lose, so one seed cannot
  tell a loss from the noise).

Run: ``.venv/bin/python -m benchmarks.bench_warm [--home DIR] [--skip-models]`` (``--home``: a
state folder whose store already holds the data; otherwise Online Retail is ingested into a
temporary one; its registry is replaced).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.models.base import Recommender

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class _Fitted(Recommender):
    """An already fitted model handed to the evaluation protocol (its fit does nothing)."""

    name: ClassVar[str] = "fitted"

    def __init__(self, model: Recommender) -> None:
        self.model = model

    def fit(self, data: TrainingData) -> Self:
        return self

    def score(
        self, users: NDArray[np.intp], history: sp.csr_matrix, *, now: int | None = None
    ) -> NDArray[np.float32]:
        return self.model.score(users, history, now=now)

    def save(self, directory: Path) -> None:  # pragma: no cover - never saved
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path) -> Self:  # pragma: no cover - never loaded
        raise NotImplementedError


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def model_level(events: Any, catalog: Any, config: Any, *, cuts: int = 1) -> list[dict[str, Any]]:
    """ALS, co-occurrence and the hybrid: full vs warm fit seconds and holdout quality, at
    ``cuts`` rolling cut dates 30 days apart (the newest: 30 days before the last event).

    A second full hybrid fit with another seed ("hybrid full, seed 1") measures how far two
    equally good full fits differ, the noise a warm fit's difference is read against.
    """
    from recsys.data.schema import MICROS_PER_DAY

    as_of = int(events.ts.max())
    newest = as_of - 30 * MICROS_PER_DAY
    newest -= newest % MICROS_PER_DAY
    rows = []
    for c in range(cuts):
        cut = newest - c * 30 * MICROS_PER_DAY
        rows += _model_level_cut(events, catalog, config, cut)
    if cuts > 1:
        rows += _ratios(rows)
    return rows


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per metric, warm / full (and seed 1 / seed 0) over the cuts: mean, min and max."""
    by_cut: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if isinstance(r.get("recall@10"), float):
            by_cut.setdefault(str(r["cut"]), {})[str(r["fit"])] = r
    out = []
    for num, den in (
        ("als warm", "als full"),
        ("cooccurrence warm", "cooccurrence full"),
        ("hybrid warm", "hybrid full"),
        ("hybrid full, seed 1", "hybrid full"),
    ):
        row: dict[str, Any] = {"fit": f"{num} / {den}", "cut": "mean [min, max]"}
        for metric in ("seconds", "recall@10", "ndcg@10"):
            ratio = np.array([f[num][metric] / f[den][metric] for f in by_cut.values()])
            row[metric] = f"{ratio.mean():.3f} [{ratio.min():.3f}, {ratio.max():.3f}]"
        out.append(row)
    return out


def _model_level_cut(events: Any, catalog: Any, config: Any, cut: int) -> list[dict[str, Any]]:
    """One cut of :func:`model_level`."""
    from datetime import UTC, datetime

    from threadpoolctl import threadpool_limits

    from recsys.data.interactions import build_training_data
    from recsys.evaluation.protocol import evaluate_models
    from recsys.models.als import ALSModel
    from recsys.models.cooccurrence import CooccurrenceModel
    from recsys.models.hybrid import HybridModel

    pre = np.sort(events.ts[events.ts < cut])
    yesterday = int(pre[int(0.99 * len(pre))])
    ic = config.interactions
    old = build_training_data(
        events.select(events.ts < yesterday), ic, as_of=yesterday, catalog=catalog
    )
    today = build_training_data(events.select(events.ts < cut), ic, as_of=cut, catalog=catalog)
    fresh = build_training_data(
        events.select((events.ts >= yesterday) & (events.ts < cut)), ic, as_of=cut
    )
    users = old.users.indices(today.users.ids)
    items = old.items.indices(today.items.ids)
    from training.warm import _new_baskets

    new_baskets = _new_baskets("basket", today, fresh)
    als_params = dict(config.models["als"].params)
    hybrid_params = dict(config.models["hybrid"].params)
    rows = []
    with threadpool_limits(limits=os.cpu_count() or 1):
        prev_als = ALSModel(**als_params).fit(old)
        cold_als, cold_s = _timed(lambda: ALSModel(**als_params).fit(today))
        warm_als, warm_s = _timed(
            lambda: ALSModel(**als_params).warm_start(prev_als, users, items).fit(today)
        )
        prev_co = CooccurrenceModel().fit(old)
        cold_co, cold_cs = _timed(lambda: CooccurrenceModel().fit(today))
        warm_co, warm_cs = _timed(
            lambda: CooccurrenceModel().warm_start(prev_co, items, new_baskets).fit(today)
        )
        prev_h = HybridModel(**hybrid_params).fit(old)
        cold_h, cold_hs = _timed(lambda: HybridModel(**hybrid_params).fit(today))
        other_h, other_hs = _timed(lambda: HybridModel(**{**hybrid_params, "seed": 1}).fit(today))
        warm_h, warm_hs = _timed(
            lambda: HybridModel(**hybrid_params).warm_start(prev_h, users, items).fit(today)
        )
        result = evaluate_models(
            events,
            {
                "als full": _Fitted(cold_als),
                "als warm": _Fitted(warm_als),
                "cooccurrence full": _Fitted(cold_co),
                "cooccurrence warm": _Fitted(warm_co),
                "hybrid full": _Fitted(cold_h),
                "hybrid full, seed 1": _Fitted(other_h),
                "hybrid warm": _Fitted(warm_h),
            },
            cut=cut,
            k=10,
            interaction_config=ic,
            catalog=catalog,
        )
    seconds = {
        "als full": cold_s,
        "als warm": warm_s,
        "cooccurrence full": cold_cs,
        "cooccurrence warm": warm_cs,
        "hybrid full": cold_hs,
        "hybrid full, seed 1": other_hs,
        "hybrid warm": warm_hs,
    }
    day = datetime.fromtimestamp(cut / 1e6, UTC).date().isoformat()
    for m in result.models:
        rows.append(
            {
                "cut": day,
                "fit": m.name,
                "seconds": round(seconds[m.name], 2),
                "recall@10": round(m.all_items["recall"], 4),
                "ndcg@10": round(m.all_items["ndcg"], 4),
            }
        )
    same = (warm_co.similarity_ != cold_co.similarity_).nnz == 0
    rows.append({"cut": day, "fit": "cooccurrence lists identical", "recall@10": same})
    print(f"cut {day}: new events {len(fresh.events):,} of {len(today.events):,}", flush=True)
    return rows


def pipeline_level(
    home: Path, events: Any, *, cuts: int = 1, noise: bool = False, seeds: int = 0
) -> list[dict[str, Any]]:
    """:func:`_pipeline_level_cut` at ``cuts`` cut dates 30 days apart (the newest: 30 days
    before the last event), with each ratio to the full run's mean, min and max over the cuts.

    ``seeds`` above 0: every run at each cut with the hybrid's seeds ``0 .. seeds - 1`` (the
    full and the warm run only), and each cut's ratio is that of the seeds' means."""
    from recsys.data.schema import MICROS_PER_DAY

    newest = int(events.ts.max()) - 30 * MICROS_PER_DAY
    newest -= newest % MICROS_PER_DAY
    rows = []
    for c in range(cuts):
        cut = newest - c * 30 * MICROS_PER_DAY
        if seeds:
            for seed in range(seeds):
                rows += _pipeline_level_cut(home, events, cut, seed=seed)
        else:
            rows += _pipeline_level_cut(home, events, cut, noise=noise)
    runs = list(dict.fromkeys(str(r["run"]) for r in rows))
    metrics = ("seconds", "cpu_seconds", "served_recall@10", "served_ndcg@10")

    def mean_of(run: str, cut: str, metric: str) -> float:
        return float(np.mean([r[metric] for r in rows if r["run"] == run and r["cut"] == cut]))

    days = list(dict.fromkeys(str(r["cut"]) for r in rows))
    for run in runs[1:]:
        row: dict[str, Any] = {"run": f"{run} / full", "cut": "mean [min, max]"}
        if seeds:
            row["over"] = f"each cut: the means of {seeds} seeds"
        for metric in metrics:
            ratio = np.array([mean_of(run, d, metric) / mean_of("full", d, metric) for d in days])
            row[metric] = f"{ratio.mean():.3f} [{ratio.min():.3f}, {ratio.max():.3f}]"
        rows.append(row)
    return rows


def _pipeline_level_cut(
    home: Path, events: Any, cut: int, *, noise: bool = False, seed: int | None = None
) -> list[dict[str, Any]]:
    """``run_training`` full vs warm on the default config at ``cut``: wall and CPU seconds,
    per stage, the share of each run that is the hybrid's fit, and the quality of what each
    version serves (:func:`served_quality`).

    Yesterday's version is trained once and its registry restored before each run, so every
    run starts from the same current version. ``seed``: the hybrid's seed in every run,
    yesterday's too; only the full and the warm run.
    """
    import shutil
    from datetime import UTC, datetime

    from recsys.registry import Registry
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store
    from training.config import load_training_config
    from training.pipeline import run_training

    config = load_training_config(None)
    if seed is not None:
        config = _hybrid_seeded(config, seed)
    pre = np.sort(events.ts[events.ts < cut])
    yesterday = int(pre[int(0.99 * len(pre))])
    settings = load_settings(Settings)
    models, saved = settings.registry_path, home / "bench-warm-yesterday"
    quiet = lambda message: None  # noqa: E731
    shutil.rmtree(models, ignore_errors=True)
    shutil.rmtree(saved, ignore_errors=True)
    store = open_store(settings)
    try:
        run_training(config, store=store, registry=Registry(models), as_of=yesterday, notify=quiet)
    finally:
        store.close()
    shutil.copytree(models, saved)
    rescore = config.precompute.model_copy(update={"carry_on_warm_start": False})
    runs = {
        "full": (config, False),
        "warm": (config, True),
        "warm, every list scored": (config.model_copy(update={"precompute": rescore}), True),
    }
    if seed is not None:
        del runs["warm, every list scored"]
    if noise:
        # how far two equally good full runs differ: the noise the warm runs are read against
        runs["full, hybrid seed 1"] = (_hybrid_seeded(config, 1), False)
    rows = []
    for mode, (run_config, warm_start) in runs.items():
        shutil.rmtree(models)
        shutil.copytree(saved, models)
        store = open_store(settings)
        try:
            start, cpu = time.perf_counter(), time.process_time()
            result = run_training(
                run_config,
                store=store,
                registry=Registry(models),
                as_of=cut,
                force=True,
                warm_start=warm_start,
                notify=quiet,
            )
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
            served = served_quality(store, Registry(models), result.version, events, cut)
        finally:
            store.close()
        hybrid = result.manifest["models"].get("hybrid", {}).get("fit_seconds", 0.0)
        rows.append(
            {
                "run": mode,
                "cut": datetime.fromtimestamp(cut / 1e6, UTC).date().isoformat(),
                **({} if seed is None else {"seed": seed}),
                "seconds": round(seconds, 1),
                "cpu_seconds": round(cpu_seconds, 1),
                "hybrid_fit_seconds": round(hybrid, 1),
                "hybrid_share": round(hybrid / seconds, 2),
                "carried": result.manifest.get("precomputed", {}).get("carried"),
                **{k: round(v, 1) for k, v in result.timings.items()},
                **{f"cpu_{k}": round(v, 1) for k, v in result.cpu_seconds.items()},
                **served,
            }
        )
    shutil.rmtree(saved, ignore_errors=True)
    full = rows[0]
    seeded = "" if seed is None else f" (seed {seed})"
    for row in rows[1:]:
        print(
            f"{row['run']} / full{seeded}: {row['seconds'] / full['seconds']:.2f}x wall, "
            f"{row['cpu_seconds'] / full['cpu_seconds']:.2f}x CPU, served recall@10 "
            f"{row['served_recall@10'] / full['served_recall@10']:.3f}x, NDCG@10 "
            f"{row['served_ndcg@10'] / full['served_ndcg@10']:.3f}x",
            flush=True,
        )
    return rows


def _hybrid_seeded(config: Any, seed: int) -> Any:
    """``config`` with its hybrid's ``seed`` set to ``seed``."""
    hybrid = config.models["hybrid"]
    hybrid = hybrid.model_copy(update={"params": {**hybrid.params, "seed": seed}})
    return config.model_copy(update={"models": {**config.models, "hybrid": hybrid}})


def served_quality(
    store: Any, registry: Any, version: str, events: Any, cut: int
) -> dict[str, Any]:
    """What the API would serve from ``version`` to the customers it knows who bought in the
    30 days after ``cut``, scored on those purchases: the batch path of ``recsys recommend``
    (:meth:`~recsys.service.RecommendationService.recommend_many`: the stored list where it
    gives the answer, as for a customer with nothing new, else the model's scoring), with the
    default rules; recall@10 and NDCG@10 (:func:`~recsys.evaluation.metrics.ranking_metrics`).
    """
    from recsys.data.schema import MICROS_PER_DAY
    from recsys.engine import Engine
    from recsys.evaluation.metrics import ranking_metrics
    from recsys.live import LiveState
    from recsys.service import FixedEngine, RecommendationService

    engine = Engine.load(registry.path(version), registry)
    after = (
        (events.ts >= cut)
        & (events.ts < cut + 30 * MICROS_PER_DAY)
        & (events.event_type == "purchase")
    )
    users = engine.users.indices(events.user_id[after].astype(str))
    items = engine.items.indices(events.item_id[after].astype(str))
    known = (users >= 0) & (items >= 0)
    ids = sorted(set(engine.users.ids_of(np.unique(users[known]))))
    row = {uid: j for j, uid in enumerate(ids)}
    uids = engine.users.ids_of(users[known])
    relevant = sp.csr_matrix(
        (np.ones(len(uids)), ([row[u] for u in uids], items[known])),
        shape=(len(ids), len(engine.items)),
    )
    live = LiveState(store)
    live.refresh()
    lists = RecommendationService(store, FixedEngine(engine), live).recommend_many(ids, 10)
    topk = np.full((len(ids), 10), -1, dtype=np.intp)
    for j, lst in enumerate(lists):
        got = engine.items.indices([r.item_id for r in lst.items][:10])
        topk[j, : len(got)] = got
    metrics = ranking_metrics(topk, relevant, 10)
    return {
        "served_customers": len(ids),
        "served_recall@10": round(float(np.nanmean(metrics["recall"])), 4),
        "served_ndcg@10": round(float(np.nanmean(metrics["ndcg"])), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="state folder whose store holds the data")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--skip-models", action="store_true", help="only the whole-run part (b)")
    parser.add_argument("--cuts", type=int, default=1, help="at this many cut dates, 30 days apart")
    parser.add_argument(
        "--noise",
        action="store_true",
        help="whole runs: a second full run with another seed of the hybrid (the noise)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=0,
        help="whole runs: yesterday, full and warm with each of this many hybrid seeds; "
        "each cut's ratio of the seeds' means",
    )
    args = parser.parse_args()
    if args.noise and args.seeds:
        parser.error("--noise and --seeds: the seeds' full runs already show the noise")
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-warm-"))
    os.environ["RECSYS_HOME"] = str(home)
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store
    from training.config import load_training_config

    store = open_store(load_settings(Settings))
    try:
        if args.home is None:
            from recsys.data.ingest import ingest_events

            ingest_events(store, SHARED / "online_retail.csv.gz", format="online-retail")
        events, catalog = store.read_events(), store.read_items()
    finally:
        store.close()
    if not args.skip_models:
        for row in model_level(events, catalog, load_training_config(None), cuts=args.cuts):
            print(row, flush=True)
    if not args.skip_pipeline:
        for row in pipeline_level(home, events, cuts=args.cuts, noise=args.noise, seeds=args.seeds):
            print(row, flush=True)


if __name__ == "__main__":
    main()
