"""The evaluation's scoring, before and after ranking without dense rows (issue 13).

On one synthetic shop (``recsys generate`` as :mod:`benchmarks.bench_train_scale` builds it) the
script prepares the evaluation as :func:`recsys.evaluation.protocol.evaluate_models` does (cut,
training data, a seeded sample of customers, their earlier purchases), fits each model once,
then times the two ways of making every customer's two lists (all items; items new to them),
alternating, ``--repeats`` times each, in the same process:

* ``before``: the code before this change, copied here: ``score`` makes each batch's
  ``users × items`` rows (factor models: one product of the whole batch), and the previous
  ``top_k`` (a full copy, a full-shape NaN mask and ``int64`` argpartition) runs twice;
* ``after``: :func:`recsys.evaluation.protocol._rank`, i.e. the models' ``recommend_lists``.

Both lists of every customer are compared item for item, and recall/NDCG@k computed from
each, so the output says whether quality changed. Wall and CPU (process) seconds per run.

Run: ``nice -n 10 .venv/bin/python -m benchmarks.bench_eval_scoring --events 1000000 --items
100000 --users 100000 [--home DIR] [--repeats 2]``; prints one JSON row per model.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from benchmarks.bench_train_scale import prepare_store

NO_ITEM = -1


def legacy_top_k(
    scores: NDArray[np.floating], k: int, *, exclude: sp.csr_matrix | None = None
) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """``recsys.models.base.top_k`` as it was before this change (commit 8f5c942)."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    scores[np.isnan(scores)] = -np.inf
    if exclude is not None and exclude.nnz:
        coo = exclude.tocoo()
        scores[coo.row, coo.col] = -np.inf
    n, m = scores.shape
    k = max(0, min(k, m))
    if k == 0:
        return np.empty((n, 0), np.intp), np.empty((n, 0), np.float32)
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(m), (n, 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1).astype(np.intp)
    vals = np.take_along_axis(vals, order, axis=1)
    idx[~np.isfinite(vals)] = NO_ITEM
    vals[~np.isfinite(vals)] = -np.inf
    return idx, vals.astype(np.float32)


def legacy_score(model: Any, users: NDArray[np.intp], history: sp.csr_matrix, now: int) -> Any:
    """``score`` as it was before this change: factor models multiplied the whole batch at
    once (BPR only its known users' rows); the others are unchanged."""
    from recsys.models.bpr import BPRModel
    from recsys.models.factors import FactorRecommender

    if isinstance(model, BPRModel):
        known = (users >= 0) & (users < model.user_factors_.shape[0])
        out = np.full((len(users), model.item_factors_.shape[0]), np.nan, dtype=np.float32)
        out[known] = model.user_factors_[users[known]] @ model.item_factors_.T
        return out
    if isinstance(model, FactorRecommender):
        vectors = model.user_vectors(users, history)
        scores = vectors @ model.item_factors_.T
        scores[np.isnan(vectors[:, 0])] = np.nan
        return scores.astype(np.float32, copy=False)
    return model.score(users, history, now=now)


def legacy_rank(
    model: Any,
    user_index: NDArray[np.intp],
    history: sp.csr_matrix,
    bought_before: sp.csr_matrix,
    k: int,
    now: int,
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``recsys.evaluation.protocol._rank`` as it was before this change."""
    from recsys.evaluation.protocol import BATCH_USERS, _pad

    lists, new_lists = [], []
    for start in range(0, user_index.size, BATCH_USERS):
        stop = min(start + BATCH_USERS, user_index.size)
        scores = legacy_score(model, user_index[start:stop], history[start:stop], now)
        lists.append(_pad(legacy_top_k(scores, k)[0], k))
        new_lists.append(_pad(legacy_top_k(scores, k, exclude=bought_before[start:stop])[0], k))
    return np.vstack(lists), np.vstack(new_lists)


def current_rank(model: Any, *args: Any) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``recsys.evaluation.protocol._rank`` of one model, called as :func:`legacy_rank`."""
    from recsys.evaluation.protocol import _rank

    ((lists, new_lists, _),) = _rank([model], *args)
    return lists, new_lists


def make_model(name: str) -> Any:
    """The model as the default training config has it (BPR, off by default, shortened)."""
    from recsys.models import ALSModel, BPRModel, BuyAgainModel, PopularModel, TrendingModel

    threads = os.cpu_count() or 1
    return {
        "popular": lambda: PopularModel(),
        "trending": lambda: TrendingModel(),
        "buy_again": lambda: BuyAgainModel(),
        "als": lambda: ALSModel(factors=64, iterations=15, num_threads=threads),
        "bpr": lambda: BPRModel(factors=64, iterations=10, num_threads=threads),
    }[name]()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--home", type=Path, help="reuse this state folder's store")
    parser.add_argument("--models", default="popular,trending,buy_again,als,bpr")
    parser.add_argument("--max-users", type=int, default=5000, help="as [evaluation] max_users")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-eval-"))
    prepare_store(home, events=args.events, items=args.items, users=args.users)
    os.environ["RECSYS_HOME"] = str(home)

    from threadpoolctl import threadpool_limits

    from recsys.data.interactions import InteractionConfig, build_training_data
    from recsys.evaluation import metrics as M
    from recsys.evaluation.protocol import Holdout
    from recsys.evaluation.splits import default_cut, time_split
    from recsys.settings import Settings
    from recsys.store import open_store

    store = open_store(Settings())
    events = store.read_events()
    cut = default_cut(events)
    split = time_split(events, cut)
    data = build_training_data(split.train, InteractionConfig(), as_of=cut)
    holdout = Holdout.of_split(data, split, max_users=args.max_users, seed=0)
    truth, before_items, history = holdout.truth, holdout.bought_before, holdout.history
    relevant_new = truth.relevant - truth.relevant.multiply(
        sp.csr_matrix(
            (before_items.data, before_items.indices, before_items.indptr),
            shape=truth.relevant.shape,
        )
    )
    relevant_new = sp.csr_matrix(relevant_new)
    relevant_new.eliminate_zeros()
    setup = {
        "events": len(events),
        "items": data.n_items,
        "customers": data.n_users,
        "evaluated": truth.n_users,
        "eligible": truth.n_eligible,
        "load": os.getloadavg(),
    }
    print(json.dumps({"setup": setup}), flush=True)

    with threadpool_limits(limits=os.cpu_count() or 1):
        for name in args.models.split(","):
            model = make_model(name)
            t0 = time.perf_counter()
            model.fit(data)
            fit_s = time.perf_counter() - t0
            runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
            out: dict[str, tuple[NDArray[np.intp], NDArray[np.intp]]] = {}
            for _ in range(args.repeats):
                for label, rank in (("before", legacy_rank), ("after", current_rank)):
                    wall, cpu = time.perf_counter(), time.process_time()
                    out[label] = rank(model, truth.user_index, history, before_items, args.k, cut)
                    runs[label].append(
                        {
                            "wall_s": round(time.perf_counter() - wall, 2),
                            "cpu_s": round(time.process_time() - cpu, 2),
                        }
                    )
            quality = {}
            for label, (lists, new_lists) in out.items():
                every = M.mean_metrics(M.ranking_metrics(lists, truth.relevant, args.k))
                new = M.mean_metrics(M.ranking_metrics(new_lists, relevant_new, args.k))
                quality[label] = {
                    "recall": round(every["recall"], 6),
                    "ndcg": round(every["ndcg"], 6),
                    "new_recall": round(new["recall"], 6),
                }
            same = [
                int(np.count_nonzero((out["before"][j] != out["after"][j]).any(axis=1)))
                for j in (0, 1)
            ]
            row = {
                "model": name,
                "fit_s": round(fit_s, 1),
                **runs,
                "rows_differing": {"all": same[0], "new": same[1]},
                "quality": quality,
                "load": [round(x, 1) for x in os.getloadavg()],
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
