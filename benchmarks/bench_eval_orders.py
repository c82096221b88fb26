"""The evaluation's two orders of the hybrid scored from one pass over the batches (each
batch's candidate pairs and ranker scores computed once), against each order scored on its
own, alternating in one process.

A training run's evaluation scores its hybrid in the learned order and with the customer's
own purchases first (:meth:`recsys.models.hybrid.HybridModel.in_order`): the same fit, the
same candidate pairs and the same ranker scores, ordered two ways. The default model of the
config is fitted once, as the run's evaluation fits it (the events before the holdout cut,
the order test skipped); then :func:`recsys.evaluation.protocol._rank` makes every evaluated
customer's two lists ``--reps`` times each way: ``apart`` (each order in a pass of its own)
and ``shared`` (both orders in one pass, inside
:func:`~recsys.models.base.shared_scoring`). Both run inside ``prediction_threads(2)`` with
BLAS limited to 2, as ``recsys train`` on 2 cores. Prints each time, the medians, the paired
ratios and whether the lists are the same::

    python -m benchmarks.bench_eval_orders --home /tmp/online_retail --reps 5
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from benchmarks.common import paired_summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="a RECSYS_HOME with ingested events")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ["RECSYS_HOME"] = args.home
    import implicit.cpu.als  # noqa: F401  (its OpenMP runtime loaded before the limit)
    import numpy as np
    from threadpoolctl import threadpool_limits

    from recsys.concurrency import prediction_threads
    from recsys.data.interactions import build_training_data
    from recsys.data.schema import MICROS_PER_DAY
    from recsys.evaluation.protocol import Holdout, _rank
    from recsys.evaluation.splits import time_split
    from recsys.models.hybrid import HybridModel
    from recsys.settings import Settings
    from recsys.store import open_store
    from training.config import load_training_config
    from training.holdout import evaluated_model

    config = load_training_config()
    store = open_store(Settings())
    events = store.read_events()
    # the run's cut: holdout_days before the newest event, on a day boundary
    cut = int(events.ts.max()) - int(config.evaluation.holdout_days * MICROS_PER_DAY)
    cut -= cut % MICROS_PER_DAY
    split = time_split(events, cut)
    data = build_training_data(split.train, config.interactions, as_of=cut)
    ev = config.evaluation
    holdout = Holdout.of_split(data, split, max_users=ev.max_users or None, seed=ev.seed)
    truth, before, history = holdout.truth, holdout.bought_before, holdout.history
    times: dict[str, list[float]] = {"apart": [], "shared": []}
    lists: dict[str, list[Any]] = {}
    with threadpool_limits(2), prediction_threads(2):
        start = time.perf_counter()
        model = evaluated_model(config.default_model, config).fit(data)
        if not isinstance(model, HybridModel):
            raise SystemExit(f"the default model {config.default_model!r} is not a hybrid")
        orders = [model, model.in_order(not model.repeat_first_)]
        print(
            f"{config.default_model} fitted in {time.perf_counter() - start:.1f} s; "
            f"{truth.n_users} customers evaluated",
            flush=True,
        )

        def rank(models: list[HybridModel]) -> list[Any]:
            return [r[:2] for r in _rank(list(models), truth.user_index, history, before, 10, cut)]

        for rep in range(args.reps):
            # the way that goes first alternates: a trend in the machine's load favours neither
            ways = ("apart", "shared") if rep % 2 == 0 else ("shared", "apart")
            for way in ways:
                start = time.perf_counter()
                if way == "apart":
                    lists[way] = [*rank(orders[:1]), *rank(orders[1:])]
                else:
                    lists[way] = rank(orders)
                times[way].append(time.perf_counter() - start)
                print(f"rep {rep} {way}: {times[way][-1]:.2f} s", flush=True)
    same = all(
        np.array_equal(a, b)
        for x, y in zip(lists["apart"], lists["shared"], strict=True)
        for a, b in zip(x, y, strict=True)
    )
    print(paired_summary(times, "apart", "shared"))
    print(f"the same lists: {same}")


if __name__ == "__main__":
    main()
