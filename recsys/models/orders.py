"""The orders a hybrid serves a customer's candidates in, and the test that chooses one.

The learned ranker orders every candidate. Two other orders are built from its scores:

* **own purchases first** (:func:`repeat_first_scores`): the items with more of the
  customer's orders first, the learned order among items with as many;
* **the discover order** (:func:`discover_scores`): the customer's never-bought candidates in
  the reciprocal-rank fusion of their learned rank and their rank by the shop's recent
  popularity or by the hybrid's EASE score, at a weight.

:class:`~recsys.models.hybrid.HybridModel` tests them on its newest label window (the paired
t of :func:`paired_t` over the window's buyers) and serves the one that wins by a margin:
:func:`discover_choice` is the discover order's test. :class:`ServedOrder` names the order a fit
serves, :class:`RepeatChoice` what its repeat-first test chose, which the next version holds
against one test's chance (:func:`held_choice`). The functions here work on a batch's
candidate rows (the feature matrix of :data:`~recsys.models.features.FEATURES`) and its learned
scores only, so a training run's test and a serving request order the same rows alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recsys.models.features import FEATURE_COLUMN
from recsys.models.kernels import order_within_rows

_N_ORDERS = FEATURE_COLUMN["n_orders"]
_POP_RECENT = FEATURE_COLUMN["item_pop_recent"]
_POP_TOTAL = FEATURE_COLUMN["item_pop_total"]
_EASE_SCORE = FEATURE_COLUMN["ease_score"]

#: The orders ``discover_order="auto"`` mixes into the learned order of a customer's
#: never-bought candidates (reciprocal-rank fusion, see :func:`discover_scores`): the shop's
#: recent popularity, and the rank by the hybrid's EASE score (when the fit has an EASE
#: generator, under ``max_ease_items``).
DISCOVER_BY = ("popularity", "ease")
#: The mixes ``discover_order="auto"`` tries against the learned order (weight 0, the one a
#: test must beat): an order of :data:`DISCOVER_BY` and its weight. EASE's weights are the
#: scratch runs' (benchmarks/RESULTS.md, thirty-eighth session): on a 4,000-item grocery shop
#: new items rose with the weight up to 4 (0.0431, 0.0457, 0.0463 NDCG@10 at 1, 2, 4 against
#: the learned order's 0.0321), and on Online Retail they fell with it (the test's business).
DISCOVER_MIXES: tuple[tuple[str, float], ...] = (
    ("popularity", 0.5),
    ("popularity", 1.0),
    ("popularity", 2.0),
    ("ease", 1.0),
    ("ease", 2.0),
    ("ease", 4.0),
)
#: ``discover_order="auto"`` mixes in the popularity order when the probe's NDCG@10 of the
#: newest window's new purchases with it is ahead of the learned order's by more than this
#: many standard errors of the buyers' paired differences (the bar of the repeat-first test,
#: :data:`REPEAT_FIRST_T`).
DISCOVER_T = 2.0
#: The constant of reciprocal-rank fusion: a rank r counts ``1 / (DISCOVER_RRF_K + r)``. The
#: usual 60 flattens a top-10 list's ranks; 10 was the value measured.
DISCOVER_RRF_K = 10.0
#: ``repeat_first="auto"`` puts the customer's purchases first when, on the newest window's
#: buyers, that order's NDCG@10 is ahead of the probe ranker's by more than this many standard
#: errors of their paired differences. Two, the usual bar: what one window's buyers show by
#: chance does not switch the order. The probe's own seed moves the test too (one of 12
#: rolling fits on Online Retail passed it at t = 2.4 and lost after the cut); 1 and 2 made
#: the same choices over 4 cuts x 3 seeds of both data sets, 3 gave up a Ta-Feng cut that
#: repeat first won (benchmarks/RESULTS.md, seventeenth session).
REPEAT_FIRST_T = 2.0


def repeat_first_scores(x: NDArray[np.float32], raw: NDArray[np.float64]) -> NDArray[np.float64]:
    """Scores that put the items with more of the customer's orders first and keep the
    ranker's order (``raw``) among items with as many orders (``repeat_first``)."""
    orders = np.nan_to_num(x[:, _N_ORDERS].astype(np.float64))
    # arctan maps any raw score into (0, 1), in its order: one more order always outranks it
    return orders + 0.5 + np.arctan(raw) / np.pi


def paired_t(diff: NDArray[np.float64]) -> float:
    """The paired t statistic of per-customer differences between two orders: how far their
    mean is from what one window of customers makes by chance (0 without a spread)."""
    spread = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    return float(diff.mean() / (spread / np.sqrt(len(diff)))) if spread > 0 else 0.0


def never_bought(x: NDArray[np.float32]) -> NDArray[np.bool_]:
    """Which candidate rows the customer never bought (no orders of the item)."""
    return ~(np.nan_to_num(x[:, _N_ORDERS]) > 0)


def ranks_within(rows: NDArray[np.integer], order: NDArray[np.intp]) -> NDArray[np.intp]:
    """Each entry's rank (0 = first) among its row's entries, given ``order``: a
    :func:`numpy.lexsort` of the entries whose primary key is ``rows``."""
    sorted_rows = rows[order]
    rank = np.empty(len(rows), dtype=np.intp)
    rank[order] = np.arange(len(rows)) - np.searchsorted(sorted_rows, sorted_rows)
    return rank


def check_discover_by(by: str) -> str:
    """``by`` when it is one of :data:`DISCOVER_BY`, else a ``ValueError`` naming it."""
    if by not in DISCOVER_BY:
        raise ValueError(f"unknown discover order {by!r}: expected one of {list(DISCOVER_BY)}")
    return by


def discover_scores(
    rows: NDArray[np.integer],
    x: NDArray[np.float32],
    learned: NDArray[np.float64],
    weight: float,
    by: str = "popularity",
) -> NDArray[np.float64]:
    """``learned`` with each customer's never-bought candidates put in the discover order: the
    reciprocal-rank fusion of their learned rank and their rank (weighted ``weight``) by
    ``by``: the shop's recent popularity, or the hybrid's EASE score (a candidate without
    one last, then by recent popularity).

    The scores are handed out again, not made anew: the never-bought candidates of a row keep
    the set of learned scores they had, best to the first in the fused order. A list with
    the customer's purchases in it keeps the slots where the learned order put them, and the
    scores keep their scale (the calibration reads them).
    """
    return DiscoverOrders(rows, x, learned).scores(weight, by)


class DiscoverOrders:
    """:func:`discover_scores` of one batch for several mixes: the learned ranks once, and
    the rank by each order once, not once per mix (the probe tries six; each rank is a sort
    of every never-bought candidate)."""

    def __init__(
        self, rows: NDArray[np.integer], x: NDArray[np.float32], learned: NDArray[np.float64]
    ) -> None:
        self.x, self.learned = x, learned
        self.new = np.flatnonzero(never_bought(x))
        self.r = np.asarray(rows)[self.new]
        self.score = learned[self.new]
        self.best_first = order_within_rows(self.r, self.score)
        self.by_learned = ranks_within(self.r, self.best_first)
        self._by_other: dict[str, NDArray[np.intp]] = {}

    def scores(self, weight: float, by: str = "popularity") -> NDArray[np.float64]:
        """The batch's scores in the discover order mixing ``by`` in at ``weight``."""
        new, r = self.new, self.r
        if not len(new):
            return self.learned
        by_other = self._by_other.get(by)
        if by_other is None:
            x = self.x
            pop = np.nan_to_num(x[new, _POP_RECENT].astype(np.float64), nan=-1.0)
            total = np.nan_to_num(x[new, _POP_TOTAL].astype(np.float64), nan=-1.0)
            # np.lexsort((by_learned, -total, -pop[, -ease], r)) as stable sorts from the last
            # key up, each with the rows: the best-first order has by_learned ascending
            order = self.best_first
            if check_discover_by(by) == "ease":
                ease = np.nan_to_num(x[new, _EASE_SCORE].astype(np.float64), nan=-np.inf)
                keys: tuple[NDArray[np.float64], ...] = (total, pop, ease)
            else:
                keys = (total, pop)
            for key in keys:
                order = order_within_rows(r, key, order)
            by_other = self._by_other[by] = ranks_within(r, order)
        by_learned = self.by_learned
        fused = 1.0 / (DISCOVER_RRF_K + by_learned) + weight / (DISCOVER_RRF_K + by_other)
        out = self.learned.copy()
        # both orders group the rows alike: the k-th entry of one is the k-th of the other's row
        # np.lexsort((by_learned, -fused, r)), from the order by (r, by_learned)
        out[new[order_within_rows(r, fused, self.best_first)]] = self.score[self.best_first]
        return out


def discover_choice(
    group: NDArray[np.integer],
    x: NDArray[np.float32],
    y: NDArray[np.integer],
    learned: NDArray[np.float64],
) -> tuple[tuple[str, float], dict[str, float]]:
    """``discover_order="auto"``'s test on never-bought candidates (rows ``x`` of customers
    ``group``, labelled ``y``, scored ``learned``): the mix of :data:`DISCOVER_MIXES` (EASE's
    only when the rows have EASE scores) whose :func:`discover_scores` NDCG@10 of the
    bought rows is best, when it is ahead of the learned order by more than
    :data:`DISCOVER_T` standard errors of the customers' paired differences, else
    ``("popularity", 0.0)``, the learned order. Returns it and the numbers
    (``train_stats_`` keys: ``discover_ndcg_<by>_<weight>``, ``discover_t_<by>_<weight>``,
    the chosen ``discover_weight`` and ``discover_ease``, 1 when EASE's)."""
    from recsys.evaluation.metrics import grouped_ndcg_each

    stats = {"discover_buyers": float(len(np.unique(group[y == 1])))}
    best, best_mean = ("popularity", 0.0), -np.inf
    if stats["discover_buyers"] >= 2:
        base = grouped_ndcg_each(group, learned, y)
        stats["discover_learned_ndcg"] = best_mean = float(base.mean())
        with_ease = bool(np.isfinite(x[:, _EASE_SCORE]).any())
        orders = DiscoverOrders(group, x, learned)
        for by, weight in DISCOVER_MIXES:
            if by == "ease" and not with_ease:
                continue
            each = grouped_ndcg_each(group, orders.scores(weight, by), y)
            t = paired_t(each - base)
            stats[f"discover_ndcg_{by}_{weight:g}"] = float(each.mean())
            stats[f"discover_t_{by}_{weight:g}"] = t
            if t > DISCOVER_T and each.mean() > best_mean:
                best, best_mean = (by, weight), float(each.mean())
    stats["discover_weight"] = best[1]
    stats["discover_ease"] = float(best[0] == "ease")
    return best, stats


@dataclass(frozen=True)
class RepeatChoice:
    """What a version's ``repeat_first="auto"`` test chose, and its t statistic.

    :meth:`~recsys.models.hybrid.HybridModel.hold_choice` takes it from the version that
    serves, so that the next fit changes the order only when its test and that version's ask
    for it together (:func:`held_choice`).

    Attributes
    ----------
    first
        Whether that version serves the customer's own purchases first.
    t
        Its test's t statistic (see :data:`REPEAT_FIRST_T`); ``None`` when it ran no test.
    """

    first: bool
    t: float | None

    @classmethod
    def of_stats(cls, first: bool, stats: Mapping[str, Any]) -> RepeatChoice:
        """The choice ``first`` with its test's t from a fit's ``train_stats_`` (none when
        the fit ran no test)."""
        t = stats.get("gate_t") if stats.get("gate") else None
        return cls(first=first, t=None if t is None else float(t))


@dataclass(frozen=True)
class ServedOrder:
    """An order a fitted hybrid serves: the customer's own purchases first or not, and the
    order mixed into the learned order of never-bought candidates, with its weight (0: the
    learned order alone). A training run's holdout scores one fit in every order its tests
    choose among (:meth:`~recsys.models.hybrid.HybridModel.order_choices`) and keeps the
    metrics of the one the final fit serves.

    Attributes
    ----------
    first
        Whether the customer's own purchases come first (``repeat_first_``).
    discover_weight
        The weight of the order mixed into the discover order (``discover_weight_``).
    discover_by
        The order mixed in, one of :data:`DISCOVER_BY` (``discover_by_``).
    """

    first: bool
    discover_weight: float
    discover_by: str = "popularity"


def held_choice(t: float, previous: RepeatChoice | None) -> bool:
    """Whether a fit whose test gave ``t`` serves the customer's own purchases first, when
    the version serving chose ``previous``.

    Without a previous test, or when the test agrees with the version's choice, the test
    decides alone (``t`` above :data:`REPEAT_FIRST_T`). To change the version's choice the
    mean of the two tests' t must pass the bar. One test errs by chance (the probe's seed
    moves it: one of 12 rolling fits on Online Retail passed at t = 2.4 after t = -0.5 at the
    cut before, and lost after its cut), and a shop's lists should not flip between versions
    on one such draw; a test far past the bar (Ta-Feng's t = 10-20) still switches at once.
    The mean, not a sum of independent evidence: consecutive runs' newest windows overlap,
    so their tests are not independent.
    """
    says_first = t > REPEAT_FIRST_T
    if previous is None or previous.t is None or previous.first == says_first:
        return says_first
    return (previous.t + t) / 2.0 > REPEAT_FIRST_T


__all__ = [
    "DISCOVER_BY",
    "DISCOVER_MIXES",
    "DISCOVER_RRF_K",
    "DISCOVER_T",
    "REPEAT_FIRST_T",
    "DiscoverOrders",
    "RepeatChoice",
    "ServedOrder",
    "check_discover_by",
    "discover_choice",
    "discover_scores",
    "held_choice",
    "never_bought",
    "paired_t",
    "ranks_within",
    "repeat_first_scores",
]
