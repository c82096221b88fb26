"""Neighbours' baskets (TIFU-KNN) against the own-items baselines, at the rolling cuts.

Issue 12 suggests neighbours' baskets as a candidate source the hybrid lacks. This benchmark
asks whether they carry information the shipped baselines miss, before anything is built on
them: a TIFU-KNN baseline (Hu et al., "Modeling Personalized Item Frequency Information for
Next-basket Recommendation", SIGIR 2020) is evaluated beside ``repeat_popular``,
``popular`` (and, with ``--ease``, ``ease`` and ``repeat``) with the protocol of
``bench_rolling.py`` (:func:`recsys.evaluation.rolling.evaluate_rolling`).

:class:`NeighbourBaskets` scores an item for a customer as
``alpha * own + (1 - alpha) * neighbours``: ``own`` is the customer's time-decayed personal
item frequency (:func:`recsys.models.features.decayed_order_share`, the hybrid's
``decayed_share``), ``neighbours`` the mean of the same vectors over the ``k`` customers most
similar to them (cosine of those vectors). It simplifies TIFU-KNN in one way: one decay per
order instead of the paper's decay within and between groups of orders. Popularity only
breaks ties and fills the list, as ``repeat_popular``'s fallback does. Its parameters are the
paper's Ta-Feng values (``k = 300``, ``alpha`` 0.7), not tuned here; ``alpha = 1`` (own
vector only) and 0.9 show what the neighbours add.

Usage::

    nice -n 5 .venv/bin/python -m benchmarks.bench_neighbours \\
        --data ../shared/data/ta_feng_events.csv.gz --format generic --window 21
    nice -n 5 .venv/bin/python -m benchmarks.bench_neighbours \\
        --data ../shared/data/online_retail.csv.gz --format online-retail --ease
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_rolling import load_events
from benchmarks.common import machine
from recsys.data.interactions import TrainingData
from recsys.models.base import Constraint, Recommender
from recsys.models.features import EventArrays, decayed_order_share

#: Customers scored per block: a block's similarities are ``block × customers`` float32.
_BLOCK = 512


class NeighbourBaskets(Recommender):
    """TIFU-KNN's prediction: the customer's decayed item frequency blended with their
    ``k`` nearest neighbours' (see the module docstring). A benchmark baseline: it is not
    registered, saved or served."""

    name: ClassVar[str] = "neighbour_baskets"
    parameter_constraints: ClassVar[dict[str, tuple[Constraint, ...]]] = {}

    def __init__(self, *, alpha: float = 0.7, k: int = 300, decay: float = 0.9) -> None:
        self.alpha = alpha
        self.k = k
        self.decay = decay

    def fit(self, data: TrainingData) -> Self:
        """The customers' decayed item-frequency vectors and the items' popularity ranks."""
        ev = EventArrays.from_training_data(data)
        p = ev.purchase
        user, item, order, day = ev.user[p], ev.item[p], ev.order[p], ev.day[p]
        n_users, n_items = data.n_users, data.n_items
        # an order's day is its first purchase's; one entry per distinct (user, item, order)
        first_day = np.full(int(order.max()) + 1 if len(order) else 1, np.inf)
        np.minimum.at(first_day, order, day)
        eu, ei, eo = np.unique(np.stack([user, item, order]), axis=1)
        pairs, pos = np.unique(eu.astype(np.int64) * n_items + ei, return_inverse=True)
        share = decayed_order_share(
            eu, eo, first_day[eo], pos.astype(np.intp), len(pairs), n_users, self.decay
        )
        shape = (n_users, n_items)
        self.vectors_ = sp.csr_matrix(
            (share.astype(np.float32), (pairs // n_items, pairs % n_items)), shape=shape
        )
        norms = np.sqrt(np.asarray(self.vectors_.multiply(self.vectors_).sum(axis=1)).ravel())
        scale = sp.diags((1.0 / np.maximum(norms, 1e-12)).astype(np.float32))
        self.unit_ = sp.csr_matrix(scale @ self.vectors_)
        buyers = np.asarray((data.purchase_counts > 0).sum(axis=0)).ravel()
        ranks = np.argsort(np.argsort(buyers, kind="stable"), kind="stable")
        self.popularity_ = (ranks / max(n_items, 1)).astype(np.float32)
        return self

    def neighbours(self, users: NDArray[np.intp]) -> NDArray[np.intp]:
        """The ``k`` customers most similar to each of ``users`` (never the customer)."""
        sim = (self.unit_[users] @ self.unit_.T).toarray()
        sim[np.arange(len(users)), users] = -np.inf
        k = min(self.k, sim.shape[1] - 1)
        return np.argpartition(-sim, k - 1, axis=1)[:, :k].astype(np.intp)

    def score(
        self, users: NDArray[np.intp], history: sp.csr_matrix, *, now: int | None = None
    ) -> NDArray[np.float32]:
        """``alpha * own + (1 - alpha) * neighbours``, plus popularity to break ties."""
        users = np.asarray(users, dtype=np.intp)
        n_users, n_items = self.vectors_.shape
        out = np.zeros((len(users), n_items), dtype=np.float32)
        known = np.flatnonzero(users >= 0)
        for start in range(0, len(known), _BLOCK):
            rows = known[start : start + _BLOCK]
            near = self.neighbours(users[rows])
            k = near.shape[1]
            mean = sp.csr_matrix(
                (
                    np.full(near.size, 1.0 / k, dtype=np.float32),
                    near.ravel(),
                    np.arange(0, near.size + 1, k),
                ),
                shape=(len(rows), n_users),
            )
            own = self.vectors_[users[rows]].toarray()
            out[rows] = self.alpha * own + (1.0 - self.alpha) * (mean @ self.vectors_).toarray()
        return out + 1e-6 * self.popularity_[None, :]

    def save(self, directory: Path) -> None:
        """Not saved: a benchmark baseline."""
        raise NotImplementedError("a benchmark baseline is not saved")

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Not saved: a benchmark baseline."""
        raise NotImplementedError("a benchmark baseline is not saved")


def models(alphas: tuple[float, ...], ease: bool) -> dict[str, Any]:
    """The baselines as ``training/configs/default.toml`` ships them, and one
    :class:`NeighbourBaskets` per ``alpha``."""
    from recsys.models import model_class
    from recsys.models.baselines import RepeatModel
    from training.config import load_training_config

    config = load_training_config()
    popular = dict(config.models["popular"].params)
    out: dict[str, Any] = {
        "repeat_popular": lambda: RepeatModel(fallback="popular"),
        "popular": lambda: model_class("popular")(**popular),
    }
    for alpha in alphas:
        out[f"neighbours_a{alpha:g}"] = lambda a=alpha: NeighbourBaskets(alpha=a)
    if ease:
        params = dict(config.models["ease"].params)
        out["ease"] = lambda: model_class("ease")(**params)
        out["repeat"] = lambda: RepeatModel(fallback="ease", fallback_params=params)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="events file")
    parser.add_argument("--format", default="online-retail", help="online-retail or generic")
    parser.add_argument("--cuts", type=int, default=4)
    parser.add_argument("--window", type=int, default=30, help="days after each cut")
    parser.add_argument("--ease", action="store_true", help="add ease and repeat (own + EASE)")
    parser.add_argument(
        "--alpha", type=float, action="append", help="own-vector weight (repeatable)"
    )
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"skipped: {args.data} not found (see ../shared/data/README.md)", file=sys.stderr)
        return 0
    from threadpoolctl import threadpool_limits

    from recsys.evaluation.rolling import evaluate_rolling
    from training.config import load_training_config

    events, catalog = load_events(args.data, args.format)
    started = time.perf_counter()
    with threadpool_limits(limits=2):
        result = evaluate_rolling(
            events,
            models(tuple(args.alpha or (1.0, 0.9, 0.7)), args.ease),
            n_cuts=args.cuts,
            window_days=args.window,
            k=10,
            interaction_config=load_training_config().interactions,
            catalog=catalog,
            notify=lambda message: print(message, file=sys.stderr),
        )
    print(f"{time.perf_counter() - started:.0f} s, {machine()}\n")
    print(result.to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
