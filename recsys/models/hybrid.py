"""The hybrid model: candidates from several generators, re-ranked by a learned classifier.

Stage 1 proposes, for every user, the union of (see :data:`~recsys.models.features.GENERATORS`)
the items they bought before (their most-ordered ``n_bought``), the ALS top ``n_als``, the EASE
top ``n_ease`` (above ``max_ease_items`` items skipped, or with ``ease_most_bought`` solved on
the ``max_ease_items`` most bought items), the basket
co-occurrence top ``n_cooc`` of their items and the ``n_popular`` most popular items: about
100-200 candidates a user.

Stage 2 scores each candidate pair with a gradient-boosted classifier over the features of
:data:`~recsys.models.features.FEATURES`: each generator's score and rank, how many orders
held the item, days since its last purchase and that divided by the user's usual interval
for it, its time-decayed share of the user's orders (TIFU-KNN's personal item frequency:
the last order weighs most) and its rank among the user's items by it, the user's order
count, tenure and recency, and the item's decayed popularity (count and share),
trend and price. Scikit-learn's ``HistGradientBoostingClassifier`` is used because it takes
``NaN`` natively (an item never bought has no interval, EASE may be off), needs no feature
scaling, and fits ~10⁵ rows in seconds on two cores, where ``GradientBoostingClassifier``
takes minutes. Its fitted trees are predicted by LightGBM's predictor
(:mod:`recsys.models.trees`: the same scores to the bit, a third of the time on a request).
That is the class's default; the shipped configuration (``training/configs/default.toml``)
learns LightGBM's LambdaRank instead (``ranker="lambdarank"``: a ranking objective over each
customer's candidates), on three label windows: ahead of the classifier on every mean of
Online Retail and Ta-Feng over 4 rolling cuts x 3 seeds (the config's comment gives them).

How the ranker learns (inside :meth:`HybridModel.fit`): the generators are built from the
events before an internal cut (``as_of`` minus ``label_days``, at midnight UTC before it when
``label_days`` is whole days), the label of a candidate pair
is "purchased within ``label_days`` of the cut", and the classifier learns when to repeat and
when to discover. With ``train_windows`` above 1 it learns from that many such cuts, one
``label_days`` apart, at once: one window is one month's mood (a holiday, a promotion), several
let it learn what holds across them, and the history before the older cuts is shorter, as the
customers' is at serving on a young shop. A share of the users (``calibration_share``) is held
out of that fit; an isotonic regression maps the classifier's raw score to the observed
purchase rate on them, so :meth:`HybridModel.probability` is a calibrated "probability of
buying within ``label_days``" (the offers module multiplies it by margin). Negatives are
subsampled for the classifier only, never for calibration, and (``buyers_only``) the classifier
sees only customers who bought something in the label window: which item comes first is learned
from those, while the isotonic fit on every held-out customer still learns how rarely anyone
buys at all (this raised recall and NDCG at both evaluation cuts, see
``benchmarks/RESULTS.md``). Finally the generators are rebuilt from *all* events for serving.
The ranker's learning (windows, pairs, the scorer's fit, the order tests' probe) is
:mod:`recsys.models.ranker`; this module serves what it learned.

The generators are built in :mod:`recsys.models.features` (ALS, EASE, co-occurrence,
popularity, repeat statistics) rather than by composing the registry's model classes, so that
the internal-cut and the serving copies compute every feature the same way and the per-pair
lookups stay vectorised; all are stored as one ``.npz``. The numerical work is the model
classes' own: ALS fitting and fold-in, EASE and co-occurrence are the kernels of
:mod:`recsys.models.kernels` that ``ALSModel``, ``EASEModel`` and ``CooccurrenceModel`` call.

The orders a list can be served in (the learned one, own purchases first, the discover order)
and the test that picks the discover order are :mod:`recsys.models.orders`; why an item is on
a list, with its "often bought with" partner, is :mod:`recsys.models.explained`.

With too few labelled purchases to learn from (tiny shops, tests), the ranker falls back to
a fixed blend of reciprocal generator ranks and the repeat signal, and says so in
``ranker_kind_`` and ``fallback_reason_``; its scores are then in [0, 1] but not calibrated
(``calibrated_`` is false).

Trust boundary: the classifier and calibrator have no format other than pickle, so they are
written with joblib, and their sha256 is recorded in ``hybrid.json``;
:func:`recsys.registry.load_joblib_checked` refuses a file whose hash differs before the
unpickler sees it. ``hybrid.json`` itself is covered by the registry manifest's hashes.
Everything else is ``.npz`` read with ``allow_pickle=False``.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.concurrency import each_chunk, run_threads
from recsys.data.interactions import TrainingData
from recsys.errors import ArtifactError, ModelError
from recsys.models.base import (
    BOOLEAN,
    COUNT,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    SEED,
    Constraint,
    Interval,
    Options,
    Recommender,
    csr_row_arrays,
    load_json,
    save_json,
    scored_once,
    top_k_coo,
)
from recsys.models.explained import (
    ExplainedLists,
    ItemReason,
    OwnedItems,
    best_owned_neighbour,
)
from recsys.models.factors import mapped_rows
from recsys.models.features import (
    FEATURE_COLUMN,
    FEATURES,
    MICROS_PER_DAY,
    EventArrays,
    Factors,
    GeneratorSettings,
    GeneratorState,
    LocalStates,
    StateBuilder,
)
from recsys.models.kernels import EaseStart
from recsys.models.orders import (
    DISCOVER_BY,
    DISCOVER_MIXES,
    RepeatChoice,
    ServedOrder,
    check_discover_by,
    discover_scores,
    repeat_first_scores,
)
from recsys.models.pair_keys import stats_keys
from recsys.models.ranker import (
    CHUNK,
    DISCOVER_ORDERS,
    LIGHTGBM_KINDS,
    RANKER_KINDS,
    REPEAT_FIRST,
    RankerLearning,
    mask_features,
    ranker_scores,
)
from recsys.models.trees import lightgbm_booster

if TYPE_CHECKING:
    from recsys.retrieval.index import ItemIndex

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_STATE_FILE = "state.npz"
_RANKER_FILE = "ranker.joblib"
_META_FILE = "hybrid.json"
#: Expanded (pair, neighbour) entries examined at once when looking for reason partners.
_PARTNER_BLOCK = 1 << 20
#: The generators' defaults: one source for :class:`HybridModel`'s parameters and the settings.
_DEFAULTS = GeneratorSettings()
#: ALS sweeps of a fit warm-started from another version (:meth:`HybridModel.warm_start`)
#: when ``als_warm_iterations`` is 0: ALSModel's ``warm_iterations`` default.
WARM_START_ALS_ITERATIONS = 3


@dataclass(frozen=True)
class _WarmStart:
    """What :meth:`HybridModel.warm_start` carries into the next fit."""

    previous: HybridModel
    user_factors: NDArray[np.float32]
    item_factors: NDArray[np.float32]
    ease: EaseStart | None = None
    #: why the EASE generator cannot start from ``previous`` (it then solves in full)
    ease_note: str | None = None


class HybridModel(Recommender):
    """Two-stage hybrid: multi-generator candidates, learned and calibrated re-ranking.

    Parameters
    ----------
    label_days
        Length of the internal label window (days before ``as_of``) the ranker learns from,
        and the horizon of :meth:`probability`.
    n_bought, n_als, n_ease, n_cooc, n_popular
        Candidates each generator contributes per user.
    factors
        ALS factors.
    als_regularization, als_alpha
        The ALS generator's L2 penalty and confidence scale (see
        :class:`~recsys.models.features.GeneratorSettings` for why they differ from
        :class:`~recsys.models.als.ALSModel`'s: another signal, the same kernel).
    als_warm_iterations
        ALS sweeps of the serving generators when they start from the factors the ranker's
        generators (learned up to the internal cut, the same users and items) ended with;
        ``0`` fits them from random factors with the full ALS iterations. Also the sweeps
        of a fit started from another version's factors (:meth:`warm_start`), where ``0``
        means :data:`WARM_START_ALS_ITERATIONS`.
    ease_lambda
        EASE L2 regularisation.
    max_ease_items
        Largest catalogue the EASE generator is built for (its cost is cubic in items).
    ease_most_bought
        Above ``max_ease_items`` items, solve the EASE generator on the ``max_ease_items``
        items most customers bought (:func:`~recsys.models.features.ease_subset`) instead of
        leaving it out; the other items have no EASE score.
    negative_rate
        Share of negative pairs kept for fitting the classifier.
    calibration_share
        Share of users held out to calibrate probabilities (the curve learns on about
        :data:`~recsys.models.ranker.CALIBRATION_PAIRS` of their candidate pairs at most).
    min_positives
        Fewer labelled purchases than this: use the fixed blend instead of a learned ranker.
    max_iter, learning_rate
        Gradient boosting iterations and learning rate.
    buyers_only
        Fit the classifier only on customers who bought in the label window (calibration
        still uses every held-out customer); no other customer's candidate pairs are built.
    max_ranker_customers
        The ranker learns from at most this many customers (with events before the internal
        cut), drawn at random with ``seed``; ``0`` takes every one. Building their candidate
        pairs and fitting the classifier is most of a fit's cost and grows with the customers,
        while the ranker needs only enough examples; ``train_stats_`` says how many it used.
        The serving generators always learn from every customer. Off by default: on Online
        Retail, 2,000 of its 4,059 customers lowered every rolling-origin mean by 0.4-2.6%
        (``benchmarks/RESULTS.md``); a bound is a trade of quality for cost.
    ranker
        ``"classifier"``: scikit-learn's ``HistGradientBoostingClassifier`` (pointwise);
        ``"lightgbm"``: the same pointwise classifier fitted by LightGBM (its binary
        objective, the same trees' size, leaves and regularisation; a fit 12-25 % cheaper),
        not the default: over 4 rolling cuts and 3 seeds it equals the classifier on Online
        Retail and is 1.5-6 % below it on Ta-Feng, with a wider seed spread
        (``benchmarks/RESULTS.md``, fifteenth session); ``"lambdarank"``: LightGBM's
        ``LGBMRanker`` with the LambdaRank objective, each customer's pairs in one label
        window a query. All three are predicted by LightGBM's predictor.
    decayed_features
        Give the ranker :data:`~recsys.models.ranker.DECAYED_FEATURES` (the time-decayed
        personal item frequency, the item's rank among the customer's by it, the item's share
        of recent popularity); off, those columns are 0 for every pair, and a constant column
        is never split on.
    train_windows
        Label windows of ``label_days`` the ranker learns from, back to back before ``as_of``,
        each with the generators rebuilt from the events before it; a window is used only
        when at least its own length of history precedes it (``train_stats_["windows"]``).
    monotone
        Constrain the ranker's score to move with each
        :data:`~recsys.models.ranker.MONOTONE` feature in its direction, all else equal
        (every ranker kind). The ranker learns from windows before
        the cut and ranks after it: the constraint keeps one window's quirks from reversing
        those directions. Over 4 rolling cuts and 3 seeds it raised Ta-Feng's NDCG@10 by 2.7 %
        (all items) and 10.8 % (new items) and left Online Retail within its seed spread, for
        a fit no slower (``benchmarks/RESULTS.md``, sixteenth session).
    repeat_first
        ``"never"``: the learned ranker orders every candidate. ``"always"``: the items the
        customer bought come first, most orders first, and the ranker orders the items
        with as many orders (and all the rest); lists without bought items are the
        ranker's either way. ``"auto"``: a test in the fit picks one of the two (with at
        least 2 ``train_windows``): a ranker learned on every window but the newest ranks
        the newest window's candidates both ways, and repeat first serves when its NDCG@10
        on the window's buyers is ahead by more than
        :data:`~recsys.models.orders.REPEAT_FIRST_T` standard errors (``train_stats_`` holds
        both means and the t statistic; ``repeat_first_`` the choice). On a history shorter
        than :data:`~recsys.models.ranker.REPEAT_FIRST_MIN_WINDOWS` ``label_days`` (a young
        shop) the test does not run and own purchases come first
        (``train_stats_["gate_young"]`` is 1). A training run hands its final fit the serving
        version's choice (:meth:`hold_choice`): a change of it then needs the two tests' mean
        t past the bar.
        Its evaluation's fit runs no test (:meth:`without_order_test`). The probe costs one
        more ranker fit on the older windows; inside
        :func:`~recsys.concurrency.prediction_threads` of 2 or more (a training run) it
        learns on its own thread beside the final ranker. A fit without the test learns a
        LightGBM ranker on those threads (the same trees as on one).
    discover_order
        The order of the candidates the customer never bought (the "discover" list, and their
        places in any list). ``"learned"``: the ranker's. ``"auto"``: the repeat-first test's
        probe (a ranker learned on every window but the newest) also scores the newest
        window's never-bought candidates with another order mixed in by reciprocal-rank
        fusion (:func:`~recsys.models.orders.discover_scores`, each mix of
        :data:`~recsys.models.orders.DISCOVER_MIXES`: the shop's recent popularity, or the
        rank by the EASE score when the fit has an EASE
        generator), and the mix whose NDCG@10 of the buyers' new purchases is best serves
        when it beats the learned order by more than :data:`DISCOVER_T` standard errors
        (``train_stats_`` holds every mix's NDCG and t, ``discover_by_`` and
        ``discover_weight_`` the choice). The slots the learned order gives the customer's
        purchases in a list do not move, and the scores keep their scale. The test needs 2
        ``train_windows`` and also runs on a young shop, where the repeat-first test does
        not (Ta-Feng's every rolling cut is one, and the mix is where it gains); a fit with
        :meth:`without_order_test` (a training run's evaluation) serves the learned order. It
        costs the probe, shared with the repeat-first test. A warm start keeps the choice
        with the ranker; a full run does not hold the serving version's choice.
    seed
        Seed of every random choice (ALS init, the ranker's customers, user split, negative
        sampling).

    Attributes
    ----------
    repeat_first_ : bool
        Whether the customer's own purchases come first (see ``repeat_first``).
    discover_weight_ : float
        The weight of the order mixed into the discover order (see ``discover_order``); 0 for
        the learned order.
    discover_by_ : str
        The order mixed in, one of :data:`DISCOVER_BY` ("popularity" when none is).
    """

    name: ClassVar[str] = "hybrid"
    #: Set by :meth:`warm_start`, taken by the next :meth:`fit`.
    _warm: _WarmStart | None = None
    #: Set by :meth:`hold_choice`, taken by the next :meth:`fit`.
    _previous_choice: RepeatChoice | None = None
    #: Set by :meth:`without_order_test`, taken by the next :meth:`fit`.
    _skip_order_test: bool = False
    #: An approximate index over the ALS generator's item factors (:meth:`use_index`).
    als_index_: ItemIndex | None = None
    #: The fitted ranker and its trees in LightGBM (:meth:`_tree_booster`); not saved.
    _booster_of: tuple[Any, Any] | None = None
    parameter_constraints: ClassVar[dict[str, tuple[Constraint, ...]]] = {
        "label_days": (POSITIVE,),
        # candidates per generator: 0 leaves a generator out of the candidates (its score
        # and rank are still features)
        "n_bought": (NON_NEGATIVE_INT,),
        "n_als": (NON_NEGATIVE_INT,),
        "n_ease": (NON_NEGATIVE_INT,),
        "n_cooc": (NON_NEGATIVE_INT,),
        "n_popular": (NON_NEGATIVE_INT,),
        "factors": (COUNT,),
        "als_regularization": (NON_NEGATIVE,),
        "als_alpha": (POSITIVE,),  # confidence is alpha · signal: 0 would learn nothing
        "als_warm_iterations": (NON_NEGATIVE_INT,),  # 0 = a cold fit
        "ease_lambda": (POSITIVE,),  # as EASEModel's regularization: 0 may be singular
        "max_ease_items": (NON_NEGATIVE_INT,),  # 0 = no EASE generator
        "ease_most_bought": (BOOLEAN,),
        # the classifier needs negatives (a share of 0 keeps none: one class, no fit)
        "negative_rate": (Interval("real", 0, 1, closed="right"),),
        # users on both sides of the split: a share of 0 or 1 leaves one side empty, and the
        # ranker always falls back
        "calibration_share": (Interval("real", 0, 1, closed="neither"),),
        # at least 2: half of it is the least the classifier's side must hold, and with
        # none there it would be fitted on one class
        "min_positives": (Interval("int", 2, None),),
        "max_iter": (COUNT,),
        "learning_rate": (POSITIVE,),
        "buyers_only": (BOOLEAN,),
        "max_ranker_customers": (NON_NEGATIVE_INT,),  # 0 = every customer
        "ranker": (Options(*RANKER_KINDS),),
        "decayed_features": (BOOLEAN,),
        "train_windows": (COUNT,),
        "monotone": (BOOLEAN,),
        "repeat_first": (Options(*REPEAT_FIRST),),
        "discover_order": (Options(*DISCOVER_ORDERS),),
        "seed": (SEED,),
    }

    def __init__(
        self,
        *,
        label_days: float = 30.0,
        n_bought: int = _DEFAULTS.n_bought,
        n_als: int = _DEFAULTS.n_als,
        n_ease: int = _DEFAULTS.n_ease,
        n_cooc: int = _DEFAULTS.n_cooc,
        n_popular: int = _DEFAULTS.n_popular,
        factors: int = _DEFAULTS.factors,
        als_regularization: float = _DEFAULTS.als_regularization,
        als_alpha: float = _DEFAULTS.als_alpha,
        als_warm_iterations: int = _DEFAULTS.als_warm_iterations,
        ease_lambda: float = _DEFAULTS.ease_lambda,
        max_ease_items: int = _DEFAULTS.max_ease_items,
        ease_most_bought: bool = _DEFAULTS.ease_most_bought,
        negative_rate: float = 0.3,
        calibration_share: float = 0.2,
        min_positives: int = 50,
        max_iter: int = 120,
        learning_rate: float = 0.1,
        buyers_only: bool = True,
        max_ranker_customers: int = 0,
        ranker: str = "classifier",
        decayed_features: bool = False,
        train_windows: int = 1,
        monotone: bool = True,
        repeat_first: str = "never",
        discover_order: str = "learned",
        seed: int = 0,
    ) -> None:
        self.label_days = label_days
        self.n_bought = n_bought
        self.n_als = n_als
        self.n_ease = n_ease
        self.n_cooc = n_cooc
        self.n_popular = n_popular
        self.factors = factors
        self.als_regularization = als_regularization
        self.als_alpha = als_alpha
        self.als_warm_iterations = als_warm_iterations
        self.ease_lambda = ease_lambda
        self.max_ease_items = max_ease_items
        self.ease_most_bought = ease_most_bought
        self.negative_rate = negative_rate
        self.calibration_share = calibration_share
        self.min_positives = min_positives
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.buyers_only = buyers_only
        self.max_ranker_customers = max_ranker_customers
        self.ranker = ranker
        self.decayed_features = decayed_features
        self.train_windows = train_windows
        self.monotone = monotone
        self.repeat_first = repeat_first
        self.discover_order = discover_order
        self.seed = seed

    # -- fitting ----------------------------------------------------------------------------

    def _settings(self) -> GeneratorSettings:
        return GeneratorSettings(
            n_bought=self.n_bought,
            n_als=self.n_als,
            n_ease=self.n_ease,
            n_cooc=self.n_cooc,
            n_popular=self.n_popular,
            factors=self.factors,
            als_regularization=self.als_regularization,
            als_alpha=self.als_alpha,
            als_warm_iterations=self.als_warm_iterations,
            ease_lambda=self.ease_lambda,
            max_ease_items=self.max_ease_items,
            ease_most_bought=self.ease_most_bought,
            seed=self.seed,
        )

    def fit(self, data: TrainingData) -> Self:
        """Learn the ranker on an internal time split, then build the generators on all data.

        Raises
        ------
        InvalidParameterError
            For a constructor argument outside :attr:`parameter_constraints`.
        ModelError
            When the data has no customer (guests only).
        """
        self._validate_params()
        data.require_customers(self.name)
        ev = EventArrays.from_training_data(data)
        states = LocalStates(ev, data.n_users, data.n_items, threads=run_threads())
        return self._fit_events(ev, data.as_of / MICROS_PER_DAY, states)

    def fit_sampled(self, sample: EventArrays, as_of_day: float, states: StateBuilder) -> Self:
        """Learn as :meth:`fit` does, with the generators built elsewhere (the Spark engine).

        ``states`` builds every :class:`~recsys.models.features.GeneratorState` (each label
        window's and the final one) from all the customers' events; the ranker learns from
        the candidates, features and labels of the customers in ``sample`` only (their events,
        in the states' index space). The model is the one :meth:`fit` learns when ``sample``
        holds every customer and ``states`` builds what :meth:`fit` builds.

        Parameters
        ----------
        sample
            The events of a sample of customers.
        as_of_day
            The training data's ``as_of`` in days since the epoch.
        states
            See :class:`StateBuilder`.

        Returns
        -------
        Self
            The fitted model.
        """
        self._validate_params()
        if self._warm is not None:
            raise ModelError(f"{self.name}: a warm start needs the whole data (use fit)")
        return self._fit_events(sample, as_of_day, states)

    def _fit_events(self, ev: EventArrays, as_of_day: float, build: StateBuilder) -> Self:
        """:meth:`fit`'s work on ``ev``, each generator state from ``build``."""
        self.als_index_ = None  # built over the previous fit's factors
        settings = self._settings()
        self.ranker_: Any = None
        self.calibrator_: Any = None
        # the ranker's feature columns when they are not all of FEATURES (a version trained
        # by an earlier release: see load)
        self.ranker_columns_: NDArray[np.intp] | None = None
        self.calibrated_ = False
        self.ranker_kind_ = "fixed_blend"
        self.repeat_first_ = False
        self.discover_weight_ = 0.0
        self.discover_by_ = "popularity"
        self.fallback_reason_: str | None = None
        self.train_stats_: dict[str, float] = {}
        cut_state: Factors | None = None
        warm, self._warm = self._warm, None
        previous_choice, self._previous_choice = self._previous_choice, None
        skip_test, self._skip_order_test = self._skip_order_test, False
        if warm is not None:
            self._carry_ranker(warm.previous)
            cut_state = warm
            settings = replace(
                settings,
                als_warm_iterations=self.als_warm_iterations or WARM_START_ALS_ITERATIONS,
            )
        elif not ev.purchase.any():
            self.fallback_reason_ = "no purchases in the training data"
        else:
            cut_state = self._fit_ranker(
                ev, build, as_of_day, settings, previous_choice, test_order=not skip_test
            )
        if self.fallback_reason_:
            log.info("hybrid: using the fixed blend: %s", self.fallback_reason_)
        notes: list[str] = [warm.ease_note] if warm is not None and warm.ease_note else []
        self.state_ = build(
            None,
            as_of_day,
            settings,
            cut_state,
            warm.ease if warm is not None else None,
            notes,
        )
        self.warm_note_ = "; ".join(notes) or None
        self.as_of_day_ = as_of_day
        return self

    def warm_start(
        self,
        previous: HybridModel,
        users: NDArray[np.intp],
        items: NDArray[np.intp],
        *,
        seed: int | None = 0,
    ) -> Self:
        """Start the next :meth:`fit` from ``previous`` (the current version's hybrid).

        The next fit keeps ``previous``'s ranker and calibration, and learns no ranker.
        It rebuilds every generator on its data, so candidates and features see every new
        event. The generators' ALS starts from ``previous``'s factors, mapped through the
        two vocabularies, and runs ``als_warm_iterations`` sweeps (or
        :data:`WARM_START_ALS_ITERATIONS` when that is 0). Its EASE generator corrects
        ``previous``'s solution for the rows that changed since
        (:func:`~recsys.models.kernels.ease_update`).

        This is for a nightly run after a small change of the data. The ranker learned which
        candidate features predict a purchase; that changes slowly, while refitting it is
        most of a full fit. A periodic full run relearns it.

        Parameters
        ----------
        previous
            A fitted hybrid with the same parameters.
        users, items
            For each user and item of the data the next fit will see, its index in
            ``previous`` (``-1``: new since then; it starts as a cold ALS fit starts it).
        seed
            Seed of the new users' and items' initial factors.

        Returns
        -------
        Self
            ``self``, for chaining with :meth:`fit`.

        Raises
        ------
        ModelError
            ``previous`` is not fitted, has other parameters (its ranker would read other
            candidates and features), or was trained by a release with other features.
        """
        state = getattr(previous, "state_", None)
        if state is None:
            raise ModelError(f"{self.name}: cannot warm-start from a model that is not fitted")
        mine, theirs = self.get_params(), previous.get_params()
        differ = sorted(k for k, v in mine.items() if theirs.get(k) != v)
        if differ:
            raise ModelError(
                f"{self.name}: the previous model has other parameters ({', '.join(differ)}), "
                "so its ranker does not fit these candidates"
            )
        if previous.ranker_columns_ is not None:
            raise ModelError(
                f"{self.name}: the previous model's ranker reads an earlier release's features"
            )
        rng = np.random.default_rng(seed)
        items = np.asarray(items, np.intp)
        ease, ease_note = None, None
        if state.ease is not None:
            if state.ease_diagonal is None or state.ease_rows is None:
                ease_note = (
                    "EASE generator solved in full: the previous version kept no diag(P) and rows"
                )
            else:
                # previous's EASE may be over its most bought items: an item's index in it
                column = state.ease_columns
                ease_of = (
                    items
                    if column is None
                    else np.where(items >= 0, column[np.maximum(items, 0)], -1)
                )
                ease = EaseStart(state.ease, state.ease_diagonal, ease_of, state.ease_rows)
        self._warm = _WarmStart(
            previous=previous,
            user_factors=mapped_rows(state.user_factors, np.asarray(users, np.intp), rng),
            item_factors=mapped_rows(state.item_factors, items, rng),
            ease=ease,
            ease_note=ease_note,
        )
        return self

    def hold_choice(self, previous: RepeatChoice | None) -> Self:
        """Let the next :meth:`fit`'s ``repeat_first="auto"`` test change ``previous`` (the
        serving version's choice, :meth:`saved_choice`) only when the mean of its
        t and ``previous``'s passes :data:`~recsys.models.orders.REPEAT_FIRST_T`
        (:func:`~recsys.models.orders.held_choice`).

        ``train_stats_["gate_held"]`` is 1 when the fit kept ``previous``'s choice against
        its own test. Other ``repeat_first`` values, and a fit whose test cannot run, ignore
        it.

        Returns
        -------
        Self
            ``self``, for chaining with :meth:`fit`.
        """
        self._previous_choice = previous
        return self

    def without_order_test(self) -> Self:
        """Let the next :meth:`fit` skip the ``repeat_first="auto"`` and
        ``discover_order="auto"`` tests (and their probe ranker): it serves the learned
        order, and :meth:`in_order` gives the others
        (:meth:`order_choices`).

        A training run's evaluation scores every order of its fit and keeps the metrics of
        the order the final fit's tests choose, so its own tests would choose nothing.

        Returns
        -------
        Self
            ``self``, for chaining with :meth:`fit`.
        """
        self._skip_order_test = True
        return self

    def in_order(
        self, first: bool, discover_weight: float | None = None, discover_by: str = "popularity"
    ) -> Self:
        """This fitted model serving the customer's own purchases first (``first``) or in
        the learned order, and its never-bought candidates with the order ``discover_by``
        (one of :data:`DISCOVER_BY`) mixed in at ``discover_weight`` (0: the learned order;
        ``None``: as this fit serves them): a shallow copy that shares every learned array.

        A training run's evaluation scores every order of one fit (:meth:`order_choices`,
        :meth:`without_order_test`), so that the promotion gate reads the order the final
        fit serves.
        """
        other = copy.copy(self)
        other.repeat_first_ = bool(first)
        if discover_weight is not None:
            check_discover_by(discover_by)
            # weight 0 is the learned order, whatever would have been mixed in
            other.discover_by_ = discover_by if discover_weight else "popularity"
            other.discover_weight_ = float(discover_weight)
        return other

    def order_choices(self) -> tuple[ServedOrder, ...]:
        """Every order this fit's tests choose among, the one it serves first: own purchases
        first or not (``repeat_first="auto"``) by the learned discover order or each mix of
        :data:`DISCOVER_MIXES` (``discover_order="auto"``; EASE's only when the fit has an
        EASE generator). Empty when no test chooses (neither is ``"auto"``, or the ranker
        was not learned).

        The orders with one mix follow each other (first or not), and inside
        :func:`~recsys.models.base.shared_scoring` a batch's discover order for a mix is
        computed once for both (:meth:`recommend_lists`).
        """
        served = self.served_order()
        if served is None:
            return ()
        firsts = [served.first]
        if self.repeat_first == "auto":
            firsts.append(not served.first)
        mixes = [(served.discover_by, served.discover_weight)]
        if self.discover_order == "auto":
            with_ease = self.state_.ease is not None
            mixes += [
                mix
                for mix in (("popularity", 0.0), *DISCOVER_MIXES)
                if mix != mixes[0] and (with_ease or mix[0] != "ease")
            ]
        orders = [ServedOrder(first, weight, by) for by, weight in mixes for first in firsts]
        return tuple(orders) if len(orders) > 1 else ()

    def served_order(self) -> ServedOrder | None:
        """The order this fit serves; ``None`` when it is not fitted or ranks with the fixed
        blend (which has no order to choose)."""
        if getattr(self, "ranker_", None) is None:
            return None
        return ServedOrder(
            bool(self.repeat_first_), float(self.discover_weight_), str(self.discover_by_)
        )

    def repeat_choice(self) -> RepeatChoice | None:
        """What this fit's ``repeat_first="auto"`` test chose, as :meth:`saved_choice` reads
        it back once saved; ``None`` when ``repeat_first`` is not ``"auto"``, or the fit
        ranks with the fixed blend (whose order has no choice) or has not run."""
        if self.repeat_first != "auto" or getattr(self, "ranker_", None) is None:
            return None
        return RepeatChoice.of_stats(bool(self.repeat_first_), self.train_stats_)

    @classmethod
    def saved_choice(
        cls, directory: Path, *, params: Mapping[str, Any] | None = None
    ) -> RepeatChoice | None:
        """The choice of the hybrid saved in ``directory`` (:meth:`save`); ``None`` when it
        was not chosen by a test (``repeat_first`` was not ``"auto"``, or the folder holds no
        hybrid or one from before the test existed).

        ``params``: the constructor arguments of the model that would hold the choice
        (:meth:`get_params`); a hybrid saved with others gives ``None``. Its test measured
        another model (another ranker, other windows), and a shop that changes its config
        should not need two runs for the change to reach the order.
        """
        try:
            meta = load_json(directory / _META_FILE)
            if meta["params"].get("repeat_first") != "auto" or "repeat_first" not in meta:
                return None
            if params is not None and meta["params"] != json.loads(
                json.dumps(dict(params), default=repr)
            ):
                return None
            return RepeatChoice.of_stats(bool(meta["repeat_first"]), meta.get("train_stats") or {})
        except (ArtifactError, KeyError, TypeError, ValueError, AttributeError):
            return None

    @property
    def is_warm_started(self) -> bool:
        """Whether the next :meth:`fit` starts from another version (:meth:`warm_start`)."""
        return self._warm is not None

    def _carry_ranker(self, previous: HybridModel) -> None:
        """Rank with ``previous``'s ranker and calibration (a warm start's fit)."""
        self.ranker_ = previous.ranker_
        self.calibrator_ = previous.calibrator_
        self.calibrated_ = previous.calibrated_
        self.ranker_kind_ = previous.ranker_kind_
        self.repeat_first_ = previous.repeat_first_
        self.discover_weight_ = previous.discover_weight_
        self.discover_by_ = previous.discover_by_
        self.fallback_reason_ = previous.fallback_reason_
        self.train_stats_ = dict(previous.train_stats_)

    def _learning(self) -> RankerLearning:
        """This model's learning parameters (:mod:`recsys.models.ranker`): the same names."""
        return RankerLearning(**{f.name: getattr(self, f.name) for f in fields(RankerLearning)})

    def _fit_ranker(
        self,
        ev: EventArrays,
        build: StateBuilder,
        as_of_day: float,
        settings: GeneratorSettings,
        previous_choice: RepeatChoice | None = None,
        *,
        test_order: bool = True,
    ) -> GeneratorState | None:
        """Learn the ranker (:meth:`RankerLearning.fit`) and calibrate it through the order
        this model serves; return the generators learned at the newest cut (``None`` when
        the history is too short to cut), whether the ranker was learned or not."""
        learned = self._learning().fit(
            ev, build, as_of_day, settings, previous_choice, test_order=test_order
        )
        self.train_stats_ = learned.stats
        self.fallback_reason_ = learned.fallback_reason
        if learned.ranker is None or learned.calibration is None:
            return learned.state
        from sklearn.isotonic import IsotonicRegression

        self.ranker_ = learned.ranker
        self.ranker_kind_ = RANKER_KINDS[self.ranker]
        self.repeat_first_ = learned.repeat_first
        self.discover_by_, self.discover_weight_ = learned.discover
        x, group, y = learned.calibration
        calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        calibrator.fit(self._raw(x, group), y)
        self.calibrator_ = calibrator
        self.calibrated_ = True
        return learned.state

    def label_window(self, first_purchase_day: float, as_of_day: float) -> float:
        """:meth:`RankerLearning.label_window` of this model's parameters."""
        return self._learning().label_window(first_purchase_day, as_of_day)

    def newest_cut(self, first_purchase_day: float, as_of_day: float) -> float:
        """:meth:`RankerLearning.newest_cut` of this model's parameters."""
        return self._learning().newest_cut(first_purchase_day, as_of_day)

    def window_cuts(self, first_purchase_day: float, as_of_day: float) -> list[float]:
        """:meth:`RankerLearning.window_cuts` of this model's parameters."""
        return self._learning().window_cuts(first_purchase_day, as_of_day)

    # -- scoring ----------------------------------------------------------------------------

    def _predict_rows(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        """The learned ranker's raw scores of ``x``, on this thread and one OpenMP thread."""
        # a LightGBM ranker's booster itself: the scikit-learn wrapper's checks cost more than
        # its trees on a request's ~150 rows; the raw score is the log-odds (LambdaRank: its
        # score). scikit-learn's trees are handed to LightGBM too (the same scores to the bit,
        # a third of the time: recsys.models.trees)
        booster = (
            self.ranker_.booster_ if self.ranker_kind_ in LIGHTGBM_KINDS else self._tree_booster()
        )
        return ranker_scores(self.ranker_, booster, x, 1)

    def _tree_booster(self) -> Any | None:
        """The scikit-learn ranker's trees in LightGBM, built once per fitted ranker."""
        built = self._booster_of
        if built is None or built[0] is not self.ranker_:
            built = (self.ranker_, lightgbm_booster(self.ranker_))
            self._booster_of = built  # two threads building at once build the same
        return built[1]

    def _raw(
        self, x: NDArray[np.float32], rows: NDArray[np.integer] | None = None
    ) -> NDArray[np.float64]:
        """Ranker score of feature rows (higher = more likely bought); ``rows`` says whose
        candidate each row is (needed with a discover order, ``discover_weight_``)."""
        return self._in_served_order(rows, x, self._learned_raw(x))

    def _in_served_order(
        self,
        rows: NDArray[np.integer] | None,
        x: NDArray[np.float32],
        learned: NDArray[np.float64],
        discovered: dict[tuple[str, float], NDArray[np.float64]] | None = None,
    ) -> NDArray[np.float64]:
        """:meth:`_learned_raw`'s scores of ``x`` (the candidates of customers ``rows``) in
        the order this model serves: the never-bought candidates in the discover order
        (``discover_by_``, ``discover_weight_``), then with ``repeat_first_`` the customer's
        own purchases first. ``discovered``: the discover orders of ``learned`` computed so
        far, by mix; the one computed here is added."""
        if self.ranker_ is None or not len(x):
            return learned
        mix = (self.discover_by_, self.discover_weight_)
        if mix[1] > 0:
            if rows is None:
                raise ValueError("a discover order needs the customer of each row")
            found = None if discovered is None else discovered.get(mix)
            if found is None:
                found = discover_scores(rows, x, learned, mix[1], mix[0])
                if discovered is not None:
                    discovered[mix] = found
            learned = found
        if self.repeat_first_:
            return repeat_first_scores(x, learned)
        return learned

    def _learned_raw(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        """The ranker's (or the fixed blend's) score of feature rows, before ``repeat_first_``."""
        if len(x) == 0:
            return np.empty(0)
        if self.ranker_ is not None:
            rows = x if self.ranker_columns_ is None else x[:, self.ranker_columns_]
            # a big batch inside prediction_threads (training's evaluation and stored lists)
            # predicts on its threads; anything else (every serving request) on one, where
            # threads cost more than they save and would oversubscribe the workers
            threads = run_threads() if len(rows) >= PARALLEL_PREDICT_ROWS else 1
            if threads == 1:
                return self._predict_rows(rows)
            return self._predict_parallel(rows, threads)

        # fixed blend: reciprocal ranks of the personal generators plus the repeat signal,
        # scaled to [0, 1]; ranks equal to the list length mean "not proposed"
        def rr(col: str, n: int) -> NDArray[np.float64]:
            r = x[:, FEATURE_COLUMN[col]].astype(np.float64)
            return np.where(r < n, 1.0 / (1.0 + r), 0.0)

        n_orders = x[:, FEATURE_COLUMN["n_orders"]].astype(np.float64)
        blend = (
            2.0 * n_orders / (1.0 + n_orders)
            + rr("als_rank", self.n_als)
            + rr("ease_rank", self.n_ease)
            + rr("cooc_rank", self.n_cooc)
            + 0.2 * rr("pop_rank", self.n_popular)
        )
        return blend / 5.2

    def _predict_parallel(self, x: NDArray[np.float32], threads: int) -> NDArray[np.float64]:
        """:meth:`_predict_rows` on ``threads`` threads, each on its own rows."""
        # each thread predicts its own rows with one OpenMP thread: scikit-learn's OpenMP
        # threads meet at a barrier after every tree, and on a busy machine (a training
        # job beside serving workers) a descheduled thread held the other at each one,
        # three times slower than one thread; separate rows wait for nothing
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads, thread_name_prefix="recsys-predict") as pool:
            parts = pool.map(self._predict_rows, np.array_split(x, threads))
            return np.concatenate(list(parts))

    def _proba(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.calibrator_ is not None and len(raw):
            return isotonic_predict(self.calibrator_, raw)
        return np.clip(raw, 0.0, 1.0)

    def _now_day(self, now: int | None) -> float:
        return self.as_of_day_ if now is None else now / MICROS_PER_DAY

    def _pairs(
        self, users: NDArray[np.intp], history: sp.csr_matrix, now: int | None
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float32], NDArray[np.uint8]]:
        self._check_fitted("state_")
        users = np.asarray(users, dtype=np.intp)
        hist = sp.csr_matrix(history)
        now_day = self._now_day(now)
        settings = self._settings()

        def chunk(
            start: int,
        ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float32], NDArray[np.uint8]]:
            sl = slice(start, start + CHUNK)
            # a request's rows are one chunk: its history as it is (pairs only reads it), not
            # a sliced copy
            rows = hist if len(users) <= CHUNK else hist[sl]
            r, i, x, s = self.state_.pairs(users[sl], rows, now_day, settings, self.als_index_)
            mask_features(x, self.decayed_features)
            return r + start, i, x, s

        # an index's searches set their library's threads process-wide: its batches stay on
        # one thread here (they search in one multi-threaded batch of their own)
        threads = run_threads() if self.als_index_ is None else 1
        parts = each_chunk(chunk, range(0, len(users), CHUNK), threads)
        if not parts:
            z = np.empty(0, np.intp)
            return z, z, np.empty((0, len(FEATURES)), np.float32), np.empty(0, np.uint8)
        out_r, out_i, out_x, out_s = zip(*parts, strict=True)
        return (
            np.concatenate(out_r),
            np.concatenate(out_i),
            np.concatenate(out_x),
            np.concatenate(out_s),
        )

    def score(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        *,
        now: int | None = None,
    ) -> NDArray[np.float32]:
        """Ranker scores of every candidate item; ``NaN`` for items no generator proposed.

        A user unknown to training with an empty history gets only the popular candidates
        (scored), so the caller may still prefer its own fallback; see the module docstring.
        """
        self._check_fitted("state_")
        rows, items, x, _ = self._pairs(users, history, now)
        out = np.full((len(users), self.state_.n_items), np.nan, dtype=np.float32)
        out[rows, items] = self._raw(x, rows)
        return out

    def recommend_lists(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        k: int,
        *,
        excludes: Sequence[sp.csr_matrix | None],
        now: int | None = None,
    ) -> list[tuple[NDArray[np.intp], NDArray[np.float32]]]:
        """:meth:`score`'s top lists, ranked from the candidate pairs without a dense row.

        Inside :func:`~recsys.models.base.shared_scoring`, this fit in its other order
        (:meth:`in_order`) reads the same batch's pairs and ranker scores instead of
        computing them again.
        """
        self._check_fitted("state_")

        def learned() -> tuple[
            NDArray[np.intp],
            NDArray[np.intp],
            NDArray[np.float32],
            NDArray[np.float64],
            dict[tuple[str, float], NDArray[np.float64]],
        ]:
            rows, items, x, _ = self._pairs(users, history, now)
            # the last: the batch's discover orders by mix, filled as the fit's orders ask
            # for them (one computation per mix; nothing else writes the value)
            return rows, items, x, self._learned_raw(x), {}

        # everything the pairs and the learned scores read (the fit, its parameters, the
        # batch); the served order is applied after, so in_order copies share the key
        key = (
            self.state_,
            self.ranker_,
            self.ranker_columns_,
            self.als_index_,
            repr(sorted(self.get_params().items())),
            users,
            history,
            now,
        )
        rows, items, x, raw, discovered = scored_once(key, learned)
        raw = self._in_served_order(rows, x, raw, discovered)
        shape = (len(users), self.state_.n_items)
        return [top_k_coo(rows, items, raw, shape, k, exclude=exclude) for exclude in excludes]

    def probability(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        *,
        now: int | None = None,
    ) -> NDArray[np.float32]:
        """Calibrated probability that the user buys the item within ``label_days``.

        Isotonic calibration on held-out users makes it monotone (non-decreasing) in
        :meth:`score`. ``NaN`` for non-candidates. After the fixed-blend fallback
        (``calibrated_`` false) it is the blend score in [0, 1], not a probability.
        """
        self._check_fitted("state_")
        rows, items, x, _ = self._pairs(users, history, now)
        out = np.full((len(users), self.state_.n_items), np.nan, dtype=np.float32)
        out[rows, items] = self._proba(self._raw(x, rows))
        return out

    def calibrate(self, raw: NDArray[np.floating]) -> NDArray[np.float64]:
        """Map raw :meth:`score` values to calibrated probabilities (see :meth:`probability`)."""
        self._check_fitted("state_")
        return self._proba(np.asarray(raw, dtype=np.float64).ravel())

    def explain(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        k: int,
        *,
        exclude: sp.csr_matrix | None = None,
        now: int | None = None,
    ) -> list[list[ItemReason]]:
        """Top-``k`` items per user with the generators that proposed them and reason flags.

        ``due_for_repurchase``: bought in at least two orders and the days since the last one
        reached the user's usual interval for it. ``often_bought_with``: the user's item
        (index) with the strongest basket co-occurrence with this one, when there is one (ties:
        the lowest index).
        """
        lists = self.explain_arrays(users, history, k, exclude=exclude, now=now)
        out: list[list[ItemReason]] = [[] for _ in range(lists.n_rows)]
        for r, reason in zip(lists.rows.tolist(), lists.reasons(), strict=True):
            out[r].append(reason)
        return out

    def explain_arrays(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        k: int,
        *,
        exclude: sp.csr_matrix | None = None,
        now: int | None = None,
    ) -> ExplainedLists:
        """:meth:`explain`'s lists as arrays, one entry per listed item (row by row, in rank
        order), without an :class:`ItemReason` per item: the stored lists of a training
        (:func:`recsys.precompute.precompute`) read 24,701 Ta-Feng customers' 2.4 M items, and
        building and reading one object per item was about a fifth of that stage."""
        self._check_fitted("state_")
        users = np.asarray(users, dtype=np.intp)
        rows, items, x, src = self._pairs(users, history, now)
        n, m = len(users), self.state_.n_items
        raw = self._raw(x, rows)
        # ranked from the candidate pairs alone: a dense users × items score matrix and pair
        # index were 1.7 GB per batch of 2,048 customers at 69k items
        top, _ = top_k_coo(rows, items, raw, (n, m), k, exclude=exclude)
        # every listed (row, item) at once, row by row in rank order
        sel_row, sel_rank = np.nonzero(top >= 0)
        sel_item = top[sel_row, sel_rank]
        p = _pair_positions(rows, items, m, sel_row, sel_item)
        f = x[p]
        sel_raw = raw[p]
        hist = sp.csr_matrix(history)
        sel_row = sel_row.astype(np.intp, copy=False)
        sel_item = sel_item.astype(np.intp, copy=False)

        def partners_of(entries: NDArray[np.intp]) -> NDArray[np.int64]:
            return self._partners(users, hist, sel_row[entries], sel_item[entries])

        return ExplainedLists(
            n_rows=n,
            rows=sel_row,
            items=sel_item,
            scores=sel_raw,
            # the calibrator maps each value on its own, so one call equals one call per item
            probabilities=self._proba(sel_raw),
            sources=src[p],
            bought_before=f[:, FEATURE_COLUMN["bought_before"]] > 0,
            due_for_repurchase=(f[:, FEATURE_COLUMN["n_orders"]] >= 2)
            & (f[:, FEATURE_COLUMN["due_ratio"]] >= 1.0),
            partners_of=partners_of,
        )

    def _cooc_by_item(self) -> sp.csr_matrix:
        """The co-occurrence transpose (row ``i`` = items whose baskets held ``i``), built once
        per fitted or loaded state rather than on every :meth:`explain` call."""
        cooc = self.state_.cooc
        cached: tuple[sp.csr_matrix, sp.csr_matrix] | None = getattr(self, "_by_item_cache", None)
        if cached is None or cached[0] is not cooc:
            by_item = sp.csr_matrix(cooc.T.tocsr())
            by_item.sort_indices()
            cached = (cooc, by_item)
            self._by_item_cache = cached
        return cached[1]

    def _partners(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        rows: NDArray[np.intp],
        items: NDArray[np.intp],
    ) -> NDArray[np.int64]:
        """Per ``(rows[p], items[p])``: the user's item most co-bought with the item, or -1.

        A user's items are their history row's and (known users) their purchase stats'; the
        strongest co-occurrence weight wins, ties go to the lowest item index.
        """
        n, m = len(users), self.state_.n_items
        out = np.full(len(rows), -1, dtype=np.int64)
        if len(rows) == 0:
            return out
        # each user's items as sorted unique keys row * m + item: the owned lists (the cheaper
        # side of a pair when the candidate has many neighbours) and the dense mask below
        parts = [stats_keys(history, m)]
        known = np.flatnonzero((users >= 0) & (users < self.state_.n_users))
        if len(known):
            _, st_items, st_ptr = csr_row_arrays(self.state_.stats, users[known])
            parts.append(np.repeat(known.astype(np.int64), np.diff(st_ptr)) * m + st_items)
        owned = OwnedItems(np.unique(np.concatenate(parts)), n, m)
        by_item = self._cooc_by_item()
        counts = by_item.indptr[items + 1] - by_item.indptr[items]  # not an items-long diff
        # bound the expanded (pair, neighbour) arrays: about _PARTNER_BLOCK entries at a time
        # (the owned-list path expands no more than the neighbour rows it replaces)
        ends = np.cumsum(counts)
        start = 0
        while start < len(rows):
            limit = ends[start] - counts[start] + _PARTNER_BLOCK
            stop = max(int(np.searchsorted(ends, limit, "right")), start + 1)
            out[start:stop] = best_owned_neighbour(
                by_item, owned, rows[start:stop], items[start:stop]
            )
            start = stop
        return out

    # -- persistence ------------------------------------------------------------------------

    def index_vectors(self) -> NDArray[np.float32] | None:
        """The ALS generator's item factors, for an approximate index (:meth:`use_index`);
        ``None`` when the model proposes no ALS candidates."""
        self._check_fitted("state_")
        return self.state_.item_factors if self.n_als > 0 else None

    def use_index(self, index: ItemIndex | None) -> None:
        """Take the ALS generator's candidates from ``index`` (built over
        :meth:`index_vectors`) instead of scoring every item.

        The version keeps the index as its own file: training builds it from
        ``[ann] min_items`` items and the engine hands it over when it loads the version.
        Above :data:`~recsys.models.features.SPARSE_ABOVE_ITEMS` items a request then touches
        no catalogue-long array; the ALS lists are as exact as the index's recall (see
        :meth:`~recsys.models.features.GeneratorState.pairs`). A refit drops it.

        Raises
        ------
        ModelError
            The index does not hold the generator's items and factor length.
        """
        self._check_fitted("state_")
        if index is not None:
            vectors = self.state_.item_factors
            if (index.n_items, index.dim) != vectors.shape:
                raise ModelError(
                    f"hybrid: an index of {index.n_items} × {index.dim} vectors for an ALS "
                    f"generator of {vectors.shape[0]} × {vectors.shape[1]}"
                )
        self.als_index_ = index

    def index_queries(self, users: NDArray[np.intp]) -> tuple[NDArray[np.float32], int]:
        """The ALS generator's query vectors of known ``users`` (their stored factors: a live
        request folds in only a customer the fit did not know) and the items it asks the
        index for, for :meth:`~recsys.retrieval.index.ItemIndex.keep_answers`."""
        self._check_fitted("state_")
        vectors = np.ascontiguousarray(self.state_.user_factors[users], dtype=np.float32)
        return vectors, min(self._settings().n_als, self.state_.n_items)

    def warm_up(self) -> None:
        """The ALS generator's item Gram matrix (the fold-in of a customer with live events
        or none in the version), the candidates' tie order and the ranker's trees in
        LightGBM, built before the first such request rather than on it."""
        state = getattr(self, "state_", None)
        if state is not None:
            state._item_gram(self.als_regularization)
            _ = state.tie_rank  # the order of equally scored candidates (a sort of the items)
        if getattr(self, "ranker_", None) is not None and self.ranker_kind_ not in LIGHTGBM_KINDS:
            self._tree_booster()  # 11 ms for the 10^6-item shop's 120 trees

    def save(self, directory: Path) -> None:
        """Write ``state.npz``, ``hybrid.json`` and (when learned) ``ranker.joblib``."""
        self._check_fitted("state_")
        from recsys.registry import sha256_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.state_.save(directory / _STATE_FILE)
        ranker_sha = None
        if self.ranker_ is not None:
            import joblib

            joblib.dump(
                {"ranker": self.ranker_, "calibrator": self.calibrator_}, directory / _RANKER_FILE
            )
            ranker_sha = sha256_file(directory / _RANKER_FILE)
        save_json(
            directory / _META_FILE,
            {
                "params": self.get_params(),
                "features": self._ranker_features(),
                "ranker_kind": self.ranker_kind_,
                "repeat_first": self.repeat_first_,
                "discover_weight": self.discover_weight_,
                "discover_by": self.discover_by_,
                "fallback_reason": self.fallback_reason_,
                "calibrated": self.calibrated_,
                "ranker_sha256": ranker_sha,
                "as_of_day": self.as_of_day_,
                "train_stats": self.train_stats_,
            },
        )

    def _ranker_features(self) -> list[str]:
        """The names of the columns the ranker reads, in its order."""
        if self.ranker_columns_ is None:
            return list(FEATURES)
        return [FEATURES[int(c)] for c in self.ranker_columns_]

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by :meth:`save`; the ranker only after its sha256 matched.

        A model saved by an earlier release whose features are a subset of this release's
        :data:`~recsys.models.features.FEATURES` loads, and its ranker reads its own columns.
        """
        from recsys.registry import load_joblib_checked

        directory = Path(directory)
        meta = load_json(directory / _META_FILE)
        try:
            model = cls(**meta["params"])
            features = [str(f) for f in meta["features"]]
            unknown = [f for f in features if f not in FEATURE_COLUMN]
            if unknown:
                raise ArtifactError(
                    f"{directory / _META_FILE}: features {unknown} are not computed by this "
                    f"release (it has {list(FEATURES)}); retrain the model"
                )
            # a version trained by an earlier release, with fewer features, keeps serving after
            # an upgrade: its ranker is given its own columns (a release adds features, and a
            # server that refused the current version would answer nothing until a retrain)
            model.ranker_columns_ = (
                None
                if features == list(FEATURES)
                else np.array([FEATURE_COLUMN[f] for f in features], dtype=np.intp)
            )
            model.ranker_kind_ = meta["ranker_kind"]
            # absent from a version trained before repeat_first existed: it ranked by the
            # ranker alone
            model.repeat_first_ = bool(meta.get("repeat_first", False))
            # absent from a version trained before discover_order existed: the learned order
            model.discover_weight_ = float(meta.get("discover_weight", 0.0))
            # absent from a version trained before the EASE mix existed: popularity's weight
            model.discover_by_ = str(meta.get("discover_by", "popularity"))
            if model.discover_by_ not in DISCOVER_BY:
                raise ArtifactError(
                    f"{directory / _META_FILE}: discover_by {model.discover_by_!r} is not an "
                    f"order of this release (it has {list(DISCOVER_BY)}); retrain the model"
                )
            model.fallback_reason_ = meta["fallback_reason"]
            model.calibrated_ = bool(meta["calibrated"])
            model.as_of_day_ = float(meta["as_of_day"])
            model.train_stats_ = dict(meta["train_stats"])
            sha = meta["ranker_sha256"]
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"{directory / _META_FILE}: incomplete: {exc}") from None
        model.ranker_ = None
        model.calibrator_ = None
        if sha is not None:
            blob = load_joblib_checked(directory / _RANKER_FILE, sha)
            try:
                model.ranker_ = blob["ranker"]
                model.calibrator_ = blob["calibrator"]
            except (KeyError, TypeError) as exc:
                raise ArtifactError(f"{directory / _RANKER_FILE}: not a hybrid ranker") from exc
        elif model.ranker_kind_ != "fixed_blend":
            raise ArtifactError(f"{directory / _META_FILE}: learned ranker without a sha256")
        model.state_ = GeneratorState.load(directory / _STATE_FILE)
        return model


def isotonic_predict(calibrator: Any, raw: NDArray[np.floating]) -> NDArray[np.float64]:
    """``calibrator.predict(raw)`` of a fitted ``IsotonicRegression(out_of_bounds="clip")``,
    with scikit-learn's arithmetic (its scipy ``interp1d`` calls ``numpy.interp`` for float64
    thresholds): the same bits, without the input checks that were most of a live request's
    calibration of a hundred items. Any other calibrator is asked of its ``predict``."""
    from sklearn.isotonic import IsotonicRegression

    x = getattr(calibrator, "X_thresholds_", None)
    if (
        type(calibrator) is not IsotonicRegression
        or calibrator.out_of_bounds != "clip"
        or x is None
        or x.dtype != np.float64
    ):
        return np.asarray(calibrator.predict(raw), dtype=np.float64)
    y = np.asarray(calibrator.y_thresholds_, dtype=np.float64)
    t = np.clip(np.asarray(raw, dtype=np.float64).reshape(-1), calibrator.X_min_, calibrator.X_max_)
    if len(y) == 1:
        return y.repeat(t.shape)
    return np.interp(t, x, y)  # what interp1d delegates to for float64 thresholds


def _pair_positions(
    rows: NDArray[np.intp],
    items: NDArray[np.intp],
    n_items: int,
    sel_row: NDArray[np.intp],
    sel_item: NDArray[np.intp],
) -> NDArray[np.intp]:
    """Where each selected ``(row, item)`` is among the candidate pairs (every one is one)."""
    keys = rows.astype(np.int64) * n_items + items
    order = np.argsort(keys, kind="stable")
    want = sel_row.astype(np.int64) * n_items + sel_item
    found = order[np.searchsorted(keys[order], want)]
    return found.astype(np.intp)


#: Pairs from which :meth:`HybridModel._raw` predicts on the threads of
#: :func:`~recsys.concurrency.prediction_threads`, each thread its share of the rows on one
#: OpenMP thread (predictions of rows are independent, so the scores are the same). 150,000
#: pairs, 120 trees, Ta-Feng's ranker, medians of 3: 0.84 s on 2 such threads against 1.02 s
#: on one while another process kept one core busy, where 2 OpenMP threads took 1.47 s (they
#: wait for each other after every tree); on a quiet machine 0.43 s, as 2 OpenMP threads.
PARALLEL_PREDICT_ROWS = 20_000

__all__ = ["HybridModel"]
