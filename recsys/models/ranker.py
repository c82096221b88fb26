"""How the hybrid's ranker learns: label windows before the cut, their candidate pairs, the
pair scorer, the probe's tests of the served order, and the calibration's sample.

:class:`~recsys.models.hybrid.HybridModel` holds the learning parameters (its docstring says
what each does and why its default is what it is) and hands them here as one
:class:`RankerLearning`; :meth:`RankerLearning.fit` returns what was learned
(:class:`Learned`), which the model keeps and serves. Serving (pairs, scores, explanations)
stays in :mod:`recsys.models.hybrid`.

In short: the generators are built from the events before an internal cut (``as_of`` minus
``label_days``) and again before each older cut of ``train_windows``; a candidate pair is
labelled "purchased within ``label_days`` of its cut"; the scorer learns on the pairs of the
customers outside the calibration split, and the calibration (fitted by the model, through
the order it serves) on a sample of the others. With ``repeat_first`` or ``discover_order``
``"auto"``, a probe ranker learned on every window but the newest chooses the served order on
the newest one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.concurrency import beside, each_chunk, openmp_threads, run_threads
from recsys.errors import ModelError
from recsys.models.features import (
    FEATURE_COLUMN,
    FEATURES,
    EventArrays,
    GeneratorSettings,
    GeneratorState,
    StateBuilder,
)
from recsys.models.orders import (
    REPEAT_FIRST_T,
    RepeatChoice,
    discover_choice,
    held_choice,
    never_bought,
    paired_t,
    repeat_first_scores,
)

log = logging.getLogger(__name__)

#: Users whose candidate pairs are built at once: bounds the dense ``chunk × n_items`` score
#: matrices, and is what :func:`~recsys.concurrency.each_chunk` shares among a training run's
#: threads (a window's 1,400 customers on 2 threads: 6 chunks of 256, where chunks of 1,024
#: left one thread half the work). Online Retail's candidate pairs took as long in chunks of
#: 256 as of 1,024 on one thread (2.0-2.2 s) and gave the same features to the bit.
CHUNK = 256

#: Features the ranker sees only with ``decayed_features`` (see
#: :class:`~recsys.models.hybrid.HybridModel`).
DECAYED_FEATURES = ("decayed_share", "repeat_rank", "item_share_recent")
_DECAYED_COLS = [FEATURE_COLUMN[name] for name in DECAYED_FEATURES]
#: The direction each feature may move the ranker's score in with ``monotone`` (+1 up, -1
#: down, 0 free), all else equal: more orders, a higher generator score or a better (lower)
#: generator rank, more popularity never lower it. Timing, the customer's and the item's
#: other traits are left free.
MONOTONE = {
    "als_score": 1,
    "als_rank": -1,
    "ease_score": 1,
    "ease_rank": -1,
    "cooc_score": 1,
    "cooc_rank": -1,
    "n_orders": 1,
    "bought_before": 1,
    "item_pop_recent": 1,
    "item_pop_total": 1,
    "pop_rank": -1,
    "share_of_user_orders": 1,
    "decayed_share": 1,
    "repeat_rank": -1,
    "item_share_recent": 1,
}
#: ``ranker_kind_`` of each learned ``ranker``.
RANKER_KINDS = {
    "classifier": "gradient_boosting",
    "lightgbm": "lightgbm_binary",
    "lambdarank": "lambdarank",
}
#: ``ranker_kind_`` values whose ranker is a LightGBM model (predicted through its booster).
LIGHTGBM_KINDS = frozenset({"lightgbm_binary", "lambdarank"})
#: The values of :class:`~recsys.models.hybrid.HybridModel`'s ``repeat_first``.
REPEAT_FIRST = ("never", "always", "auto")
#: ``repeat_first="auto"`` runs its test on at least this many ``label_days`` of history (120
#: days by default); on less, the customer's own purchases come first without it. The probe
#: then learns on one window (a third of the history below 90 days): its NDCG varied 0.26-0.33
#: between fits at Ta-Feng's first cut, where t, which counts only the buyers' paired
#: differences as noise, ranged -10.5 to +3.6 over seeds and BLAS kernels. Young shops
#: measured (Online Retail opened at five dates, Ta-Feng at two; 4 cuts at 30-97 days of
#: history x 3 seeds each): own purchases first ahead of the learned order in recall@10 at 78
#: of 84 fits and on every shop's means, and never below the test's means (six shops;
#: benchmarks/RESULTS.md, thirty-fifth session).
REPEAT_FIRST_MIN_WINDOWS = 4
#: The values of :class:`~recsys.models.hybrid.HybridModel`'s ``discover_order``.
DISCOVER_ORDERS = ("learned", "auto")
#: The calibration (isotonic, raw score -> probability of purchase) learns on at most about this
#: many candidate pairs: whole (window, customer) groups of the calibration customers, drawn
#: at random. Ta-Feng's calibration customers have 1.7 M pairs, whose ranker scores alone were
#: 4.6 s of a 60 s fit; a curve through a few thousand purchases is as well placed from a
#: sample (benchmarks/RESULTS.md, forty-first session).
CALIBRATION_PAIRS = 300_000


@dataclass(frozen=True)
class WindowPairs:
    """The ranker's training pairs of one label window (:meth:`RankerLearning.window_pairs`)."""

    user: NDArray[np.intp]
    group: NDArray[np.int64]  # (window, customer): the query a ranking objective orders
    x: NDArray[np.float32]
    y: NDArray[np.int8]
    customers: int
    sampled: int  # customers in the window's sample, whether their pairs were built or not
    n_label: int


@dataclass(frozen=True)
class Probed:
    """What the probe ranker's tests found on the newest window (:meth:`RankerLearning.gate`)."""

    #: the repeat-first test: NDCG@10 learned, own purchases first, and the paired t
    gate: tuple[float, float, float]
    #: the discover order's mix (:func:`~recsys.models.orders.discover_choice`: its order and
    #: weight) and numbers
    discover: tuple[str, float]
    discover_stats: dict[str, float]


@dataclass
class Learned:
    """What :meth:`RankerLearning.fit` learned."""

    #: the generators at the newest cut (``None``: the history is too short to cut one)
    state: GeneratorState | None
    #: the fit's numbers (windows, customers, pairs, the tests'), as ``train_stats_`` keeps them
    stats: dict[str, float] = field(default_factory=dict)
    #: why no ranker was learned (the fixed blend ranks), or ``None``
    fallback_reason: str | None = None
    #: the learned pair scorer (``None``: the fixed blend)
    ranker: Any = None
    #: whether the customer's own purchases come first (``repeat_first``)
    repeat_first: bool = False
    #: the order mixed into the discover order and its weight (``discover_order``)
    discover: tuple[str, float] = ("popularity", 0.0)
    #: the calibration's pairs: features, their (window, customer) groups and labels
    calibration: tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.int8]] | None = None


@dataclass(frozen=True)
class RankerLearning:
    """The learning parameters of :class:`~recsys.models.hybrid.HybridModel` (the same
    names and meanings; see there), and the steps of a ranker's fit."""

    label_days: float
    train_windows: int
    ranker: str
    max_iter: int
    learning_rate: float
    negative_rate: float
    calibration_share: float
    min_positives: int
    buyers_only: bool
    max_ranker_customers: int
    decayed_features: bool
    monotone: bool
    repeat_first: str
    discover_order: str
    seed: int

    def fit(
        self,
        ev: EventArrays,
        build: StateBuilder,
        as_of_day: float,
        settings: GeneratorSettings,
        previous_choice: RepeatChoice | None = None,
        *,
        test_order: bool = True,
    ) -> Learned:
        """Learn the ranker on ``train_windows`` label windows before ``as_of_day``.

        Parameters
        ----------
        ev
            The events of the customers the ranker learns from.
        build
            Each cut's generators (from every customer's events).
        as_of_day
            The training data's ``as_of``, in days since the epoch.
        settings
            The generators' settings.
        previous_choice
            The serving version's repeat-first choice
            (:meth:`~recsys.models.hybrid.HybridModel.hold_choice`).
        test_order
            Run the order tests (see
            :meth:`~recsys.models.hybrid.HybridModel.without_order_test`).

        Returns
        -------
        Learned
            The generators at the newest cut whether a ranker was learned or not (``None``
            when the history is too short to cut), and the ranker or why there is none.
        """
        first_day = float(ev.day[ev.purchase].min())
        label_days = self.label_window(first_day, as_of_day)
        cuts = self.window_cuts(first_day, as_of_day)
        newest = cuts[-1]
        if (
            label_days <= 0
            or not ev.before(newest).purchase.any()
            or not (~(ev.day < newest) & ev.purchase).any()
        ):
            return Learned(None, fallback_reason="history too short to hold out a label window")
        rng = np.random.default_rng(self.seed)
        calib_users = rng.random(build.n_users) < self.calibration_share
        windows = []
        state: GeneratorState | None = None
        for w, cut_day in enumerate(cuts):
            # oldest first, each ALS warm-started from the previous (older) cut's factors:
            # a later cut's factors have seen an older window's labels, never the reverse
            state = build(cut_day, cut_day, settings, state)
            windows.append(
                self.window_pairs(ev, state, cut_day, label_days, settings, w, calib_users)
            )
        assert state is not None
        n_customers = max(wp.customers for wp in windows)
        # one window (the default) is taken as it is: its features are 2.0 M × 24 float32 on
        # Ta-Feng (3.4 M before af8e9fb), and a copy of them cost a fifth of a gigabyte and
        # its time
        pair_user = joined([wp.user for wp in windows])
        group = joined([wp.group for wp in windows])
        y = joined([wp.y for wp in windows])
        n_pos = int(y.sum())
        stats = {
            "label_days": float(label_days),
            "windows": float(len(windows)),
            "customers": float(n_customers),
            "ranker_customers": float(max(wp.sampled for wp in windows)),
            "pairs": float(len(y)),
            "positives": float(n_pos),
            "candidate_recall": float(n_pos / max(sum(wp.n_label for wp in windows), 1)),
        }
        learned = Learned(state, stats)
        if n_pos < self.min_positives or n_pos == len(y):
            learned.fallback_reason = (
                f"{n_pos} labelled purchases among {len(y)} candidate pairs "
                f"(at least {self.min_positives} and some negatives needed to learn a ranker)"
            )
            return learned

        # each window's features stay where they are: the ranker and the calibration read
        # their rows of them (selected), and a copy of all of them was 0.55 GB at 10^6 events
        xs = [wp.x for wp in windows]
        in_calib = calib_users[pair_user]
        # a history too short for a probe on two windows: own purchases first, untested (an
        # evaluation's fit, which runs no test, serves the learned order as it always does)
        history_days = as_of_day - first_day
        young = (
            self.repeat_first == "auto"
            and test_order
            and history_days < REPEAT_FIRST_MIN_WINDOWS * self.label_days
        )
        # the probe tests the repeat-first order and the discover order alike; a young shop
        # serves own purchases first without the repeat-first test, but its probe still
        # tests the discover order
        test = (
            ((self.repeat_first == "auto" and not young) or self.discover_order == "auto")
            and len(windows) >= 2
            and test_order
        )
        threads = run_threads()  # the training run's threads (1 outside one)
        tested: Probed | None = None
        if test and threads >= 2:
            # the probe and the final ranker learn at once, each on one thread: they share
            # nothing but the windows they read, and their draws are their own streams
            probe = partial(self.gate, windows, calib_users, 1)
            with openmp_threads(1), beside(probe, name="recsys-probe") as probe_result:
                ranker = self.learn(xs, y, group, in_calib, rng)
                tested = probe_result()
        else:
            tested = self.gate(windows, calib_users, threads) if test else None
            # learning alone (no probe beside it: the evaluation's fit), the ranker takes
            # the run's threads; a LightGBM ranker learns the same trees on any number
            ranker = self.learn(xs, y, group, in_calib, rng, threads=threads)
        gate = None if tested is None else tested.gate
        discover = ("popularity", 0.0)
        if self.discover_order == "auto" and tested is not None:
            discover = tested.discover
            stats.update(tested.discover_stats)
            log.info(
                "hybrid: newest window's new purchases NDCG@10 %.4f in the learned order: %s",
                tested.discover_stats.get("discover_learned_ndcg", float("nan")),
                f"{discover[0]} mixed in, weight {discover[1]:g}"
                if discover[1]
                else "the learned order",
            )
        first = self.repeat_first == "always"
        if young:
            first = True
            stats.update(gate=0.0, gate_young=1.0)
            log.info(
                "hybrid: %.0f days of history, under %.0f (%d label windows): own purchases "
                "first, no repeat-first test",
                history_days,
                REPEAT_FIRST_MIN_WINDOWS * self.label_days,
                REPEAT_FIRST_MIN_WINDOWS,
            )
        elif self.repeat_first == "auto":
            says_first = gate is not None and gate[2] > REPEAT_FIRST_T
            # None: one window, or the older ones taught no probe (nothing to hold against)
            first = says_first if gate is None else held_choice(gate[2], previous_choice)
            self._record_gate(stats, gate, held=first != says_first)
        if isinstance(ranker, str):
            learned.fallback_reason = ranker
            return learned
        in_curve = calibration_sample(in_calib, group, self.seed)
        stats["calibration_pairs"] = float(in_curve.sum())
        learned.ranker, learned.repeat_first, learned.discover = ranker, first, discover
        learned.calibration = (selected(xs, in_curve), group[in_curve], y[in_curve])
        return learned

    def label_window(self, first_purchase_day: float, as_of_day: float) -> float:
        """The length in days of the ranker's label windows for a history from
        ``first_purchase_day`` to ``as_of_day``: ``label_days``, or a third of a shorter
        history (the newest window then starts at :meth:`newest_cut`)."""
        return min(self.label_days, (as_of_day - first_purchase_day) / 3.0)

    def newest_cut(self, first_purchase_day: float, as_of_day: float) -> float:
        """The day the newest label window starts (days since the epoch): ``as_of_day``
        minus :meth:`label_window`, at the midnight UTC before it when that is
        ``label_days`` in whole days."""
        label_days = self.label_window(first_purchase_day, as_of_day)
        newest = as_of_day - label_days
        if label_days == self.label_days and float(label_days).is_integer():
            # whole-day windows start at midnight UTC, as the evaluations' cuts do: a run later
            # the same day learns from the same windows, and a final fit's windows are cut
            # where the rolling-origin evaluation's fits (at midnight) cut theirs
            newest = float(np.floor(newest))
        return newest

    def window_cuts(self, first_purchase_day: float, as_of_day: float) -> list[float]:
        """The days (since the epoch) the ranker's label windows start, oldest first: the
        newest at :meth:`newest_cut`, each older one a :meth:`label_window` before the next,
        up to ``train_windows``, and only where a window's length of history precedes it.

        A history shorter than ``3 * label_days`` has windows a third of its length, so the
        second window has exactly its own length of history before it. Counted in floating
        point that was decided by rounding (88.0 days fell 1.2e-12 days short, 88.5 did
        not), and a warm start one day later kept a ranker learned on one window where a
        full run learned on two; the count is taken with a tolerance of 1e-9 windows.

        Parameters
        ----------
        first_purchase_day
            The first purchase of the training data, in days since the epoch.
        as_of_day
            The training data's ``as_of``, in days since the epoch.

        Returns
        -------
        list of float
            At least one day (the newest window), at most ``train_windows``, each
            :meth:`label_window` days after the one before.
        """
        label_days = self.label_window(first_purchase_day, as_of_day)
        newest = self.newest_cut(first_purchase_day, as_of_day)
        if label_days <= 0:
            return [newest]
        room = (newest - first_purchase_day) / label_days - 1.0  # older windows that fit
        older = min(self.train_windows - 1, max(0, int(np.floor(room + 1e-9))))
        return [newest - w * label_days for w in range(older, -1, -1)]

    @staticmethod
    def _record_gate(
        stats: dict[str, float], gate: tuple[float, float, float] | None, *, held: bool
    ) -> None:
        """Keep the repeat-first test's numbers in ``stats`` and log its choice (``held``:
        the serving version's choice kept against the test)."""
        if gate is None:
            stats["gate"] = 0.0
            return
        stats.update(
            gate=1.0,
            gate_learned_ndcg=gate[0],
            gate_repeat_first_ndcg=gate[1],
            gate_t=gate[2],
            gate_held=float(held),
        )
        says_first = gate[2] > REPEAT_FIRST_T
        order = "own purchases first" if says_first != held else "learned order"
        log.info(
            "hybrid: newest window NDCG@10 %.4f learned, %.4f own purchases first (t = %.2f): %s%s",
            gate[0],
            gate[1],
            gate[2],
            order,
            " (held: the serving version's order; the mean t of its test and this one does "
            "not ask for the change)"
            if held
            else "",
        )

    def learn(
        self,
        xs: list[NDArray[np.float32]],
        y: NDArray[np.int8],
        group: NDArray[np.int64],
        in_calib: NDArray[np.bool_],
        rng: np.random.Generator,
        *,
        threads: int = 1,
    ) -> Any:
        """Fit the ranker on the pairs of customers outside the calibration split (its
        negatives sampled, ``buyers_only`` applied); a string says why it cannot learn.

        ``xs`` are the windows' features, whose rows ``y``, ``group`` and ``in_calib`` follow
        end to end. ``threads``: see :meth:`fit_scorer`."""
        fit_mask = ~in_calib & ((y == 1) | (rng.random(len(y)) < self.negative_rate))
        if self.buyers_only:
            # rank among customers who did buy: a customer with no purchase in the window
            # says nothing about which item comes first, only that nothing did (which the
            # calibration, fitted on every held-out customer, still sees)
            buyer = np.zeros(int(group.max()) + 1, dtype=bool)
            buyer[group[y == 1]] = True
            fit_mask &= buyer[group]
        if y[fit_mask].sum() < self.min_positives // 2 or y[in_calib].sum() == 0:
            return "too few labelled purchases on one side of the calibration split"
        fit_x = selected(xs, fit_mask)
        # a feature none of these pairs has (no prices in the data, no EASE, or a few pairs
        # that happen to lack it) is constant for the ranker: scikit-learn's binning cannot
        # take a column that is all NaN in the rows it is fitted on
        fit_x[:, np.isnan(fit_x).all(axis=0)] = 0.0
        with openmp_threads(1):
            return self.fit_scorer(fit_x, y[fit_mask], group[fit_mask], threads=threads)

    def gate(
        self, windows: list[WindowPairs], calib_users: NDArray[np.bool_], threads: int
    ) -> Probed | None:
        """``repeat_first="auto"``'s and ``discover_order="auto"``'s test: a ranker learned on
        every window but the newest, and the same ranker behind the customer's own purchases,
        each scored by NDCG@10 on the newest window's buyers, and the discover orders on
        their never-bought candidates (:func:`~recsys.models.orders.discover_choice`). Returns
        the repeat-first numbers (learned, repeat first, the paired t statistic of the
        buyers' differences) and the discover choice, or ``None`` when the older windows
        cannot teach a ranker.

        The newest window is later than every pair the probe learned from, as the served
        lists are later than the final ranker's: a ranker that only fits its own windows'
        mood (Ta-Feng's short, seasonal windows) loses this test where it would lose after
        the cut.
        """
        older, newest = windows[:-1], windows[-1]
        user = joined([wp.user for wp in older])
        probe = self.learn(
            [wp.x for wp in older],
            joined([wp.y for wp in older]),
            joined([wp.group for wp in older]),
            calib_users[user],
            # its own stream: the final ranker's negatives are drawn as without the gate
            np.random.default_rng([self.seed, 2]),
        )
        if isinstance(probe, str):
            return None
        # the newest window's buyers, each of their candidates once
        buyer = np.zeros(int(newest.group.max()) + 1, dtype=bool)
        buyer[newest.group[newest.y == 1]] = True
        keep = buyer[newest.group]
        x, y, group = newest.x[keep], newest.y[keep], newest.group[keep]
        lightgbm = RANKER_KINDS[self.ranker] in LIGHTGBM_KINDS
        learned = ranker_scores(probe, probe.booster_ if lightgbm else None, x, threads)
        from recsys.evaluation.metrics import grouped_ndcg_each

        by_ranker = grouped_ndcg_each(group, learned, y)
        by_first = grouped_ndcg_each(group, repeat_first_scores(x, learned), y)
        t = paired_t(by_first - by_ranker)
        new = never_bought(x)
        mix, stats = discover_choice(group[new], x[new], y[new], learned[new])
        return Probed((float(by_ranker.mean()), float(by_first.mean()), t), mix, stats)

    def window_pairs(
        self,
        ev: EventArrays,
        state: GeneratorState,
        cut_day: float,
        label_days: float,
        settings: GeneratorSettings,
        window: int,
        calib_users: NDArray[np.bool_],
    ) -> WindowPairs:
        """The candidate pairs of one label window: the customers with events before
        ``cut_day``, their features from ``state`` and whether they bought the item within
        ``label_days`` after it.

        With ``buyers_only`` only the pairs the ranker and its calibration read are built:
        the calibration customers' (``calib_users``) and those of customers who bought in
        the window. Another customer's pairs are all negatives of a customer who bought
        nothing, which neither reads (on Ta-Feng those were about half of every window's
        pairs, and building pairs is most of a fit).
        """
        pre = ev.before(cut_day)
        post = ~(ev.day < cut_day) & (ev.day < cut_day + label_days) & ev.purchase
        users = np.unique(pre.user)
        n_customers = len(users)
        n_users, n_items = state.n_users, state.n_items
        if 0 < self.max_ranker_customers < n_customers:
            # its own stream: the split and negative sampling draw as without a bound
            pick = np.random.default_rng([self.seed, 1, window]).choice(
                n_customers, size=self.max_ranker_customers, replace=False
            )
            users = users[np.sort(pick)]
        sampled = len(users)
        label = sp.csr_matrix(
            (np.ones(int(post.sum())), (ev.user[post], ev.item[post])), shape=(n_users, n_items)
        )
        label.sum_duplicates()
        n_label = int(label[users].nnz)
        if self.buyers_only:
            users = users[calib_users[users] | (np.diff(label.indptr)[users] > 0)]
        # the history a user would have sent at the cut: every weighted event before it
        seen = pre.weight > 0
        hist = sp.csr_matrix(
            (pre.weight[seen], (pre.user[seen], pre.item[seen])),
            shape=(n_users, n_items),
            dtype=np.float32,
        )

        def chunk(start: int) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float32]]:
            u = users[start : start + CHUNK]
            rows, items, feats, _ = state.pairs(u, hist[u], cut_day, settings)
            mask_features(feats, self.decayed_features)
            return u[rows], items, feats

        rows_l, items_l, feats_l = zip(
            *each_chunk(chunk, range(0, len(users), CHUNK), run_threads()),
            strict=True,
        )
        pair_user = np.concatenate(rows_l)
        pair_item = np.concatenate(items_l)
        y = (np.asarray(label[pair_user, pair_item]).ravel() > 0).astype(np.int8)
        return WindowPairs(
            user=pair_user,
            # pairs come grouped by user (users ascending, rows sorted within a chunk)
            group=pair_user.astype(np.int64) + window * n_users,
            x=np.concatenate(feats_l),
            y=y,
            customers=n_customers,
            sampled=sampled,
            n_label=n_label,
        )

    def fit_scorer(
        self,
        x: NDArray[np.float32],
        y: NDArray[np.int8],
        group: NDArray[np.int64],
        *,
        threads: int = 1,
    ) -> Any:
        """Fit the pair scorer (``ranker``) on rows grouped by (window, customer).

        A LightGBM ranker learns on ``threads`` threads, and learns the same trees on any
        number (deterministic mode over column-wise histograms); the scikit-learn
        classifier learns on one."""
        signs = [MONOTONE.get(name, 0) if self.monotone else 0 for name in FEATURES]
        if self.ranker in ("lightgbm", "lambdarank"):
            try:
                from lightgbm import LGBMClassifier, LGBMRanker
            except ImportError as exc:  # pragma: no cover - a declared dependency
                raise ModelError(f"hybrid: ranker {self.ranker!r} needs lightgbm: {exc}") from None
            # the trees of the scikit-learn classifier below, and its defaults where it leaves
            # them (255 bins from a 200,000-row sample, no row or column sampling)
            trees: dict[str, Any] = {
                "n_estimators": self.max_iter,
                "learning_rate": self.learning_rate,
                "num_leaves": 31,
                "min_child_samples": 40,
                "reg_lambda": 1.0,
                "subsample_for_bin": 200_000,
                "random_state": self.seed,
                "n_jobs": 1,
                "verbose": -1,
                "monotone_constraints": signs,
            }
            if threads > 1:
                # column-wise, threads split the histograms' features and sum each feature's
                # bins in row order, as one thread does (row- or column-wise): the trees are
                # one thread's, bit for bit (tests/models/test_hybrid.py)
                trees.update(n_jobs=threads, deterministic=True, force_col_wise=True)
            if self.ranker == "lightgbm":
                return LGBMClassifier(objective="binary", **trees).fit(x, y)
            sizes = np.diff(np.flatnonzero(np.r_[True, group[1:] != group[:-1], True]))
            return LGBMRanker(objective="lambdarank", **trees).fit(x, y, group=sizes)
        # "classifier": check_params (at the start of fit) allows no other
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=31,
            min_samples_leaf=40,
            l2_regularization=1.0,
            monotonic_cst=signs,
            early_stopping=False,
            random_state=self.seed,
        )
        return model.fit(x, y)


def ranker_scores(
    ranker: Any, booster: Any | None, x: NDArray[np.float32], threads: int
) -> NDArray[np.float64]:
    """A learned ranker's raw scores of ``x`` on ``threads`` threads: through its LightGBM
    ``booster`` when it has one, else its own ``decision_function``."""
    if booster is not None:
        return np.asarray(booster.predict(x, raw_score=True, num_threads=threads), dtype=np.float64)
    with openmp_threads(threads):
        return np.asarray(ranker.decision_function(x), dtype=np.float64)


def calibration_sample(
    in_calib: NDArray[np.bool_], group: NDArray[np.integer], seed: int
) -> NDArray[np.bool_]:
    """The pairs the calibration learns on: ``in_calib`` where it has at most
    :data:`CALIBRATION_PAIRS`, else whole groups of it (each customer's candidates in one
    window stay together, as the served order reads them), drawn with their own stream so
    the ranker's draws do not move."""
    n = int(in_calib.sum())
    if n <= CALIBRATION_PAIRS:
        return in_calib
    drawn = np.random.default_rng([seed, 3]).random(int(group.max()) + 1)
    return in_calib & (drawn[group] < CALIBRATION_PAIRS / n)


def joined(parts: list[NDArray[Any]]) -> NDArray[Any]:
    """``np.concatenate(parts)``; a single part itself, not a copy (it is only read)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def selected(parts: list[NDArray[Any]], mask: NDArray[np.bool_]) -> NDArray[Any]:
    """``np.concatenate(parts)[mask]`` without the concatenation: only the chosen rows are
    copied."""
    out = np.empty((int(mask.sum()), *parts[0].shape[1:]), dtype=parts[0].dtype)
    at = start = 0
    for part in parts:
        mine = mask[start : start + len(part)]
        n = int(mine.sum())
        np.compress(mine, part, axis=0, out=out[at : at + n])
        at += n
        start += len(part)
    return out


def mask_features(x: NDArray[np.float32], decayed_features: bool) -> None:
    """Zero the :data:`DECAYED_FEATURES` columns of ``x`` in place unless
    ``decayed_features``."""
    if not decayed_features:
        x[:, _DECAYED_COLS] = 0.0
