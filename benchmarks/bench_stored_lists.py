"""A training run's stored lists with each batch's storing behind the next batch's ranking,
against storing in turn, alternating in one process.

The default model of the config (the hybrid) is fitted once on a state folder's events; then
the stored lists of the customers a training run stores (``[precompute] active_days``) are
computed ``--reps`` times each way by :func:`recsys.precompute.precompute`: ``threads=1`` (each
batch ranked, then stored) and ``threads=2`` (stored on a thread of its own while the next
batch is ranked). Both run inside ``prediction_threads(2)`` with BLAS limited to 2, as
``recsys train`` on 2 cores. Prints each time, the medians, the paired ratios and whether the
lists (items, scores, reason codes and reasons) are the same::

    python -m benchmarks.bench_stored_lists --home /tmp/ta_feng --reps 3
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

    from recsys import precompute as stored_lists
    from recsys.concurrency import prediction_threads
    from recsys.data.interactions import build_training_data
    from recsys.settings import Settings
    from recsys.store import open_store
    from training.config import load_training_config
    from training.publish import active_users
    from training.stages import make_model

    config = load_training_config()
    data = build_training_data(open_store(Settings()).read_events(), config.interactions)
    users = active_users(data, config.precompute.active_days)
    times: dict[int, list[float]] = {1: [], 2: []}
    lists: dict[int, Any] = {}
    with threadpool_limits(2), prediction_threads(2):
        start = time.perf_counter()
        model = make_model(config.default_model, config).fit(data)
        print(
            f"{config.default_model} fitted in {time.perf_counter() - start:.1f} s; "
            f"{len(users)} of {data.n_users} customers' lists",
            flush=True,
        )
        for rep in range(args.reps):
            for threads in times:
                start = time.perf_counter()
                lists[threads] = stored_lists.precompute(
                    model,
                    config.default_model,
                    data.interactions,
                    data.items,
                    users=users,
                    threads=threads,
                )
                times[threads].append(time.perf_counter() - start)
                print(f"rep {rep} threads={threads}: {times[threads][-1]:.2f} s", flush=True)
    a, b = lists[1], lists[2]
    same = (
        np.array_equal(a.items, b.items)
        and np.array_equal(a.scores, b.scores, equal_nan=True)
        and (a.reason_codes is None) == (b.reason_codes is None)
        and (a.reason_codes is None or np.array_equal(a.reason_codes, b.reason_codes))
        and a.reasons == b.reasons
    )
    print(paired_summary({f"threads={t}": v for t, v in times.items()}, "threads=1", "threads=2"))
    print(f"the same lists: {same}")


if __name__ == "__main__":
    main()
