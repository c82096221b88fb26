"""The hybrid's final fit keeping its evaluation's ranker, against learning its own, over
rolling cuts (issue 13: tried, not kept).

A training run learns the hybrid's ranker twice: on the label windows before its holdout cut
(the evaluation's fit) and on those before the as-of (the final fit). At each of ``--cuts``
rolling cuts ``c`` (:func:`recsys.evaluation.splits.rolling_cuts`, ``--window`` days apart)
and for each of ``--seeds`` seeds:

* ``A``: the hybrid fitted on the events before ``c`` (the final fit as it is);
* ``E``: the hybrid fitted on the events before ``c - --holdout`` days (the evaluation's fit,
  with its order test);
* ``F``: a fit on the events before ``c`` warm-started from ``E``
  (:meth:`~recsys.models.hybrid.HybridModel.warm_start`: ``E``'s ranker, calibration and
  order, ALS from ``E``'s factors; every generator rebuilt on all the events).

``A`` and ``F`` (and ``repeat_popular``) are scored on the ``--window`` days after ``c``.
Prints each fit's seconds, each cut's R@10 / NDCG@10 on all items and on new items, the means,
``F / A`` overall and per cut, and ``F / A`` of the fit seconds. The shipped hybrid's
parameters come from the training config; the events from a state folder::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.bench_ranker_from_eval --home /tmp/orw_clean
    OPENBLAS_NUM_THREADS=1 python -m benchmarks.bench_ranker_from_eval --home /tmp/tfh --window 14
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.common import cut_scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="state folder with the events")
    parser.add_argument("--window", type=int, default=30, help="days after each cut")
    parser.add_argument("--holdout", type=float, default=30.0, help="days before c for E")
    parser.add_argument("--cuts", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args(argv)

    import implicit.cpu.als  # noqa: F401  (its OpenMP runtime loaded before the limit)
    import numpy as np
    from threadpoolctl import threadpool_limits

    from recsys.concurrency import prediction_threads
    from recsys.data.interactions import TrainingData, build_training_data
    from recsys.data.schema import MICROS_PER_DAY
    from recsys.evaluation.rolling import evaluate_rolling
    from recsys.evaluation.splits import time_split
    from recsys.models.baselines import RepeatModel
    from recsys.models.hybrid import HybridModel
    from recsys.store.sqlite import SQLiteStore
    from training.config import load_training_config

    store = SQLiteStore(args.home / "recsys.db")
    events, catalog = store.read_events(), store.read_items()
    store.close()
    config = load_training_config()
    params = dict(config.models["hybrid"].params)
    fits: dict[tuple[int, int], dict[str, HybridModel]] = {}
    seconds: dict[tuple[str, int, int], float] = {}
    kept: list[bool] = []

    def timed(way: str, key: tuple[int, int], fit: Any) -> HybridModel:
        start = time.perf_counter()
        model: HybridModel = fit()
        seconds[(way, *key)] = time.perf_counter() - start
        return model

    def fit_all(data: TrainingData, seed: int) -> dict[str, HybridModel]:
        key = (data.as_of, seed)
        if key in fits:
            return fits[key]
        a = timed("A", key, lambda: HybridModel(**{**params, "seed": seed}).fit(data))
        cut = data.as_of - int(args.holdout * MICROS_PER_DAY)
        early = build_training_data(
            time_split(events, cut).train, config.interactions, as_of=cut, catalog=catalog
        )
        e = timed("E", key, lambda: HybridModel(**{**params, "seed": seed}).fit(early))
        users = early.users.indices(data.users.ids)
        items = early.items.indices(data.items.ids)
        f = timed(
            "F",
            key,
            lambda: HybridModel(**{**params, "seed": seed}).warm_start(e, users, items).fit(data),
        )
        kept.append(f.ranker_ is e.ranker_)
        print(
            f"cut {data.as_of} seed {seed}: A {seconds[('A', *key)]:.1f} s, "
            f"E {seconds[('E', *key)]:.1f} s, F {seconds[('F', *key)]:.1f} s",
            flush=True,
        )
        fits[key] = {"A": a, "F": f}
        return fits[key]

    def way(seed: int, name: str) -> type[HybridModel]:
        class Way(HybridModel):
            """One set of fits per (cut, seed); this one serves ``name``'s."""

            def fit(self, data: TrainingData) -> Any:
                self.__dict__.update(fit_all(data, seed)[name].__dict__)
                return self

        return Way

    models: dict[str, Any] = {
        f"{name}/{seed}": way(seed, name) for seed in range(args.seeds) for name in ("A", "F")
    }
    models["repeat_popular"] = lambda: RepeatModel(fallback="popular")
    with threadpool_limits(2), prediction_threads(2):
        rolling = evaluate_rolling(
            events,
            models,
            n_cuts=args.cuts,
            window_days=args.window,
            interaction_config=config.interactions,
            catalog=catalog,
        )
    rows = []
    for i, result in enumerate(rolling.cuts):
        scores = cut_scores(result)
        rows.append(scores)
        print(f"cut {i}: " + ", ".join(f"{k} {np.round(v, 4).tolist()}" for k, v in scores.items()))

    def of(name: str) -> Any:  # cuts x seeds x (R, NDCG all; R, NDCG new)
        return np.array([[v for k, v in r.items() if k.split("/")[0] == name] for r in rows])

    a, f = of("A"), of("F")
    print("R@10 / NDCG@10 all items, new items; mean over cuts and seeds")
    for name, v in (("A", a), ("F", f), ("repeat_popular", of("repeat_popular"))):
        print(f"  {name:15s} {np.round(v.mean(axis=(0, 1)), 4).tolist()}")
    print(
        f"F / A ratio of means: {np.round(f.mean(axis=(0, 1)) / a.mean(axis=(0, 1)), 3).tolist()}"
    )
    per_cut = f.mean(axis=1)[:, :2] / a.mean(axis=1)[:, :2]
    print(f"F / A per cut (R@10, NDCG@10): {np.round(per_cut, 3).tolist()}")
    ratios = [seconds[("F", *k)] / seconds[("A", *k)] for k in fits]
    print(f"fit seconds F / A: {np.round(ratios, 3).tolist()} (median {np.median(ratios):.3f})")
    print(f"F keeps E's ranker: {bool(kept) and all(kept)}")


if __name__ == "__main__":
    main()
