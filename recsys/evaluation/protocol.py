"""The offline evaluation protocol: hold out the last month, score every model on it.

:func:`evaluate_models` is the one entry point, shared by ``recsys evaluate`` and the training
pipeline. The protocol, in order:

1. **Cut.** Every event before ``cut`` is training data; every *purchase* on or after it is
   the truth. The default cut is the start of the UTC day 30 days before the newest event.
2. **Train.** :func:`recsys.data.interactions.build_training_data` on the pre-cut events with
   ``as_of=cut``; each model is fitted on it (and timed).
3. **Users.** By default the customers who bought both before and after the cut (and survived
   the training filters): the ones a shop can personalise for *and* check against.
4. **Truth.** The distinct items each of those customers bought on or after the cut. Items the
   training data never saw stay in the denominators: no model can recommend them, and hiding
   them would flatter every model.
5. **Score.** Each model scores the *whole* catalogue for each user from their training
   interaction row, with ``now=cut``; the top ``k`` are compared with the truth
   (:mod:`recsys.evaluation.metrics`).
6. **New items.** The same metrics over items *new to the customer*: the truth minus what they
   bought before the cut, against the model's list with those items removed. Repeat buying
   dominates retail data; this column says whether a model helps anyone discover anything.

Beyond accuracy, each model gets catalogue coverage, novelty and the Gini coefficient of its
exposure, its fit time and its scoring time, and optionally the metrics per customer segment.

**A sample of customers on large shops.** Scoring costs up to one ``users × items`` row per
evaluated customer and model (less for a model that ranks without those rows through
:meth:`~recsys.models.base.Recommender.recommend_lists`, as popular, trending, buy-again, ALS
and BPR do); with ``max_users`` set, a shop with more eligible customers evaluates a seeded
sample of that many (:func:`sample_customers`: the same customers from run to run, as
far as they stay eligible), every model on the same ones, and each mean carries a 95 %
confidence interval (:func:`recsys.evaluation.metrics.mean_ci`). On Ta-Feng (13,598 eligible
customers, 22k items) the scoring of every evaluated model was 75 of the evaluation's 129 CPU
seconds (benchmarks/RESULTS.md, "Training cost against the catalogue").

A model that refuses the data (its ``fit`` raises :class:`~recsys.errors.ModelError`, as EASE
does on a catalogue too large for its dense item-item matrix, and the ``repeat`` baseline with
it) is skipped with a notice naming it and the reason, and the others are still measured: an
evaluation answers for every catalogue size, with the models that fit it.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import InteractionConfig, TrainingData
from recsys.data.schema import MICROS_PER_DAY, PURCHASE, CatalogItem, EventFrame, from_micros
from recsys.data.vocab import Vocabulary
from recsys.errors import ConfigError, DataError, ModelError
from recsys.evaluation import metrics as M
from recsys.evaluation.splits import Split, default_cut, time_split
from recsys.models.base import NO_ITEM, Recommender, shared_scoring
from recsys.models.kernels import shared_ease_solves

#: What :func:`evaluate_models` accepts per model: a fitted-or-not instance (it is refitted), a
#: zero-argument factory such as the class itself, or a registry name (``"als"``).
ModelSpec = Recommender | Callable[[], Recommender] | str

#: Users scored per batch: bounds the ``batch × n_items`` score matrix held in memory.
BATCH_USERS = 2048

#: Receives one-line notices (a skipped model).
Notify = Callable[[str], None]


def _ignore(message: str) -> None:
    """The default :data:`Notify`: the reasons are kept in ``EvaluationResult.skipped`` anyway."""


@dataclass(frozen=True)
class ModelResult:
    """One model's evaluation.

    Attributes
    ----------
    name
        The name it was given in the ``models`` mapping.
    all_items
        Mean ranking metrics over all purchased items (keys: :data:`metrics.RANKING_METRICS`).
    new_items
        The same over items new to each customer, for users who bought at least one.
    coverage, novelty, gini
        Catalogue coverage, mean self-information (bits) and Gini of exposure of the
        all-items lists.
    fit_seconds, score_seconds
        Wall-clock time to fit, and to score and rank every evaluated user.
    segments
        Per segment: ``{"users": n, "all": {...}, "new": {...}}``.
    all_items_ci95, new_items_ci95
        95 % confidence interval of each mean in ``all_items`` and ``new_items``
        (:func:`recsys.evaluation.metrics.mean_ci`).
    """

    name: str
    all_items: dict[str, float]
    new_items: dict[str, float]
    coverage: float
    novelty: float
    gini: float
    fit_seconds: float
    score_seconds: float
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)
    all_items_ci95: dict[str, tuple[float, float]] = field(default_factory=dict)
    new_items_ci95: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationResult:
    """The outcome of :func:`evaluate_models`.

    Attributes
    ----------
    cut
        The cut (microseconds UTC).
    k
        List length.
    n_users
        Customers scored on all items (the sample, when one was drawn).
    n_users_new
        Customers among them who bought at least one item new to them.
    n_items
        Size of the catalogue models chose from.
    n_train_events, n_test_purchases
        Events before the cut, and purchase events of the evaluated customers after it.
    models
        One :class:`ModelResult` per model that could be fitted, in the order given.
    skipped
        Model name -> why it was not measured (its ``fit`` refused the data).
    horizon
        Length of the test window (microseconds) after the cut; ``None``: every later purchase.
    n_users_eligible
        Customers the protocol would evaluate without a sample (``n_users`` when none was
        drawn).
    sample_seed
        The seed of :func:`sample_customers` when a sample was drawn, else ``None``.
    """

    cut: int
    k: int
    n_users: int
    n_users_new: int
    n_items: int
    n_train_events: int
    n_test_purchases: int
    models: list[ModelResult]
    skipped: dict[str, str] = field(default_factory=dict)
    horizon: int | None = None
    n_users_eligible: int = 0
    sample_seed: int | None = None

    @property
    def sampled(self) -> bool:
        """Whether the customers evaluated are a sample of the eligible ones."""
        return self.sample_seed is not None

    def __getitem__(self, name: str) -> ModelResult:
        for result in self.models:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``NaN`` becomes ``None``)."""
        from dataclasses import asdict

        data = asdict(self)
        data["cut_date"] = from_micros(self.cut).isoformat()
        return _nan_to_none(data)

    def to_json(self) -> str:
        """The result as a JSON document."""
        import json

        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    def to_markdown(self) -> str:
        """A Markdown table: one row per model (see :mod:`recsys.evaluation.report`)."""
        from recsys.evaluation.report import markdown_table

        return markdown_table(self)

    def plot(self, path: str | Path) -> Path:
        """Save a grouped bar chart of recall and NDCG, all vs new items, as an image."""
        from recsys.evaluation.report import plot_result

        return plot_result(self, path)


def evaluate_models(
    events: EventFrame,
    models: Mapping[str, ModelSpec],
    *,
    cut: int | None = None,
    k: int = 10,
    interaction_config: InteractionConfig | None = None,
    catalog: Iterable[CatalogItem] = (),
    users: Literal["both_periods", "test"] = "both_periods",
    segments: Mapping[str, str] | None = None,
    horizon: int | None = None,
    max_users: int | None = None,
    seed: int = 0,
    notify: Notify = _ignore,
    variants: Callable[[str, Recommender], Mapping[str, Recommender]] | None = None,
) -> EvaluationResult:
    """Fit each model on the events before ``cut`` and score it on the purchases after.

    Parameters
    ----------
    events
        The whole event log (training and test periods).
    models
        Name -> model: an instance (refitted here), a zero-argument factory (a class), or a
        registry name such as ``"ease"``.
    cut
        Microseconds UTC; defaults to :func:`recsys.evaluation.splits.default_cut`.
    k
        Length of each recommendation list.
    interaction_config
        How events become training weights (defaults to :class:`InteractionConfig`).
    catalog
        Catalogue items: they join the item vocabulary even if nobody interacted with them.
    users
        ``"both_periods"``: customers with purchases before and after the cut who are in the
        training data. ``"test"``: every customer who bought after the cut, including ones the
        models never saw (scored from an empty history; models that cannot score them return
        no items, which counts as misses).
    segments
        Optional customer id -> segment name; customers not listed fall in ``"(none)"``.
    horizon
        Only purchases before ``cut + horizon`` (microseconds) are the truth; ``None``: every
        purchase on or after the cut.
    max_users
        Evaluate at most this many customers: above it, the sample of :func:`sample_customers`
        with ``seed`` (every model on the same customers). ``None``: every eligible customer.
    seed
        Seed of that sample.
    notify
        Receives a one-line notice for each model skipped because it cannot fit the data.
    variants
        Receives each model's name and the model once fitted, and returns more models to
        score by name, without a fit of their own: the same fit used another way (e.g.
        :meth:`recsys.models.hybrid.HybridModel.in_order`). Their results follow their
        model's, with its fit seconds. Each batch goes to the model, then to its variants,
        inside :func:`~recsys.models.base.shared_scoring`: a variant's score seconds leave
        out what it read from its model's scoring.

    Returns
    -------
    EvaluationResult
        Skipped models are in ``skipped`` (name -> reason), not in ``models``.

    Raises
    ------
    DataError
        No event before or after the cut, or no customer to evaluate.
    ConfigError
        ``k`` is not positive, ``users`` is unknown, or a model name is not registered.
    """
    from recsys.data.interactions import build_training_data

    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    if users not in ("both_periods", "test"):
        raise ConfigError(f"users must be 'both_periods' or 'test', got {users!r}")
    if not models:
        raise ConfigError("no model to evaluate")
    if max_users is not None and max_users < 1:
        raise ConfigError(
            f"max_users must be at least 1 (or None for every customer), got {max_users}"
        )
    if cut is None:
        cut = default_cut(events)
    split = time_split(events, cut, horizon=horizon)
    if len(split.train) == 0:
        raise DataError(f"no event before the cut {from_micros(cut).date()}")
    if len(split.test) == 0:
        within = "" if horizon is None else f" (within {horizon / MICROS_PER_DAY:g} days)"
        after = (events.ts >= cut) & (events.event_type == PURCHASE)
        if horizon is not None:
            after &= events.ts < cut + horizon
        day = from_micros(cut).date()
        if after.any():  # guests bought: nobody the lists are for
            raise DataError(
                f"no customer's purchase on or after the cut {day}{within}: all "
                f"{int(after.sum()):,} are guests' (no customer id)"
            )
        raise DataError(f"no purchase on or after the cut {day}{within}")

    data = build_training_data(
        split.train, interaction_config or InteractionConfig(), as_of=cut, catalog=list(catalog)
    )
    holdout = Holdout.of_split(
        data,
        split,
        users=users,
        k=k,
        max_users=max_users,
        seed=seed,
        segments=segments,
        horizon=horizon,
    )
    if holdout.n_users == 0:
        who = "also bought before" if users == "both_periods" else "is in the training data"
        raise DataError(
            f"no customer to evaluate: nobody who bought on or after "
            f"{from_micros(cut).date()} {who}"
        )

    results = []
    skipped: dict[str, str] = {}
    # models that solve the same EASE problem on this data (EASEModel, the repeat baseline,
    # the hybrid's generator on a log without returns) solve it once: the later ones' fit
    # seconds leave it out
    with shared_ease_solves():
        for name, spec in models.items():
            model = _instantiate(name, spec)
            start = time.perf_counter()
            try:
                model.fit(data)
            except ModelError as exc:
                # a refusal is about this data (its size, its event types), not a bug: the other
                # models are still measured, and the reason travels with the result
                skipped[name] = str(exc)
                notify(f"notice: model {name!r} skipped: {exc}")
                continue
            fit_seconds = time.perf_counter() - start
            others = variants(name, model) if variants is not None else {}
            results.extend(holdout.measure([(name, model), *others.items()], fit_seconds))
    return holdout.result(results, skipped)


class Bought(NamedTuple):
    """Purchase lines: the customer and the product of each (two aligned arrays of ids)."""

    user_id: NDArray[Any]
    item_id: NDArray[Any]


class Holdout:
    """The customers a holdout evaluates, what they bought after the cut, and the measuring of
    a fitted model's lists on them: the steps 3 to 6 of the protocol (module docstring).

    :func:`evaluate_models` builds one from an event log; an engine that keeps its events
    elsewhere (the Spark engine) builds one from the purchases it collected, and measures its
    own fits with :meth:`measure`.
    """

    def __init__(
        self,
        data: Any,
        truth: _Truth,
        bought_before: sp.csr_matrix,
        *,
        cut: int,
        k: int,
        segments: Mapping[str, str] | None,
        n_train_events: int,
        horizon: int | None,
    ) -> None:
        self.data = data
        self.truth = truth
        self.bought_before = bought_before
        self.relevant_new = _new_only(truth.relevant, bought_before)
        self.history = _history_rows(data, truth.user_index)
        self.item_users = np.diff(sp.csc_matrix(data.interactions).indptr)
        self.segment_of = (
            np.array([segments.get(u, "(none)") for u in truth.user_ids], dtype=object)
            if segments is not None
            else None
        )
        self.cut, self.k, self.n_train_events, self.horizon = cut, k, n_train_events, horizon

    @classmethod
    def of(
        cls,
        data: Any,
        customers: Iterable[str],
        *,
        test: Bought,
        before: Bought,
        cut: int,
        k: int,
        max_users: int | None = None,
        seed: int = 0,
        segments: Mapping[str, str] | None = None,
        n_train_events: int,
        horizon: int | None = None,
        drawn_from: int | None = None,
    ) -> Holdout:
        """The holdout of ``customers`` (a sample of ``max_users`` of them, with ``seed``).

        Parameters
        ----------
        data
            The training data the models are fitted on (a
            :class:`~recsys.data.interactions.TrainingData`, or an engine's equivalent with
            its ``users``, ``items``, ``interactions``, ``n_users`` and ``n_items``).
        customers
            The eligible customers' ids.
        test
            The purchases on or after the cut (at least those of ``customers``).
        before
            The purchases before the cut (at least those of ``customers``), whatever the
            training filters kept: what each customer had bought, for the new-items metrics.
        cut, k, max_users, seed, segments, horizon
            As for :func:`evaluate_models`.
        n_train_events
            The number of events before the cut, for the result.
        drawn_from
            When given, ``customers`` is the sample already drawn
            (:func:`sample_customers` with ``max_users`` and ``seed``) from this many eligible
            customers: an engine that collects only the sample's purchases draws it first,
            and it is not drawn again.

        Returns
        -------
        Holdout
            Ready to :meth:`measure` models fitted on ``data``.
        """
        truth = _truth(
            test,
            data.items,
            data.users,
            customers,
            max_users=max_users if drawn_from is None else None,
            seed=seed,
            eligible=drawn_from,
        )
        return cls(
            data,
            truth,
            _bought_before(before, data.items, truth),
            cut=cut,
            k=k,
            segments=segments,
            n_train_events=n_train_events,
            horizon=horizon,
        )

    @classmethod
    def of_split(
        cls,
        data: TrainingData,
        split: Split,
        *,
        users: Literal["both_periods", "test"] = "both_periods",
        k: int = 10,
        max_users: int | None = None,
        seed: int = 0,
        segments: Mapping[str, str] | None = None,
        horizon: int | None = None,
    ) -> Holdout:
        """The holdout of an event log's :class:`~recsys.evaluation.splits.Split`, ``data``
        built from its training events; ``users`` and the other arguments as for
        :func:`evaluate_models`, which builds its holdout so."""
        if split.cut is None:
            raise ConfigError("a holdout is of a time split (one cut for every customer)")
        candidates = sorted(set(split.test.user_id.astype(str).tolist()))
        if users == "both_periods":
            bought = data.events.event_type == PURCHASE
            before = set(data.events.user_id[bought].astype(str).tolist())
            candidates = [u for u in candidates if u in before and u in data.users]
        purchased = split.train.event_type == PURCHASE
        return cls.of(
            data,
            candidates,
            test=Bought(split.test.user_id, split.test.item_id),
            before=Bought(split.train.user_id[purchased], split.train.item_id[purchased]),
            cut=split.cut,
            k=k,
            max_users=max_users,
            seed=seed,
            segments=segments,
            n_train_events=len(split.train),
            horizon=horizon,
        )

    @property
    def n_users(self) -> int:
        """The number of customers evaluated."""
        return self.truth.n_users

    def measure(
        self, named: list[tuple[str, Recommender]], fit_seconds: float
    ) -> list[ModelResult]:
        """Score fitted models (one model and its variants, which read its scoring of each
        batch: see :func:`evaluate_models`) on every evaluated customer.

        Parameters
        ----------
        named
            ``(name, model)`` pairs, each fitted on the holdout's ``data``.
        fit_seconds
            The seconds their fit took, for their results.

        Returns
        -------
        list of ModelResult
            One per pair, in order.
        """
        truth = self.truth
        ranked = _rank(
            [model for _, model in named],
            truth.user_index,
            self.history,
            self.bought_before,
            self.k,
            self.cut,
        )
        return [
            self._result(name, lists, new_lists, seconds, fit_seconds)
            for (name, _), (lists, new_lists, seconds) in zip(named, ranked, strict=True)
        ]

    def result(self, models: list[ModelResult], skipped: Mapping[str, str]) -> EvaluationResult:
        """The evaluation of ``models`` (measured here) and of the ``skipped`` ones."""
        return EvaluationResult(
            cut=self.cut,
            k=self.k,
            n_users=self.truth.n_users,
            n_users_new=int(np.count_nonzero(np.diff(self.relevant_new.indptr))),
            n_items=self.data.n_items,
            n_train_events=self.n_train_events,
            n_test_purchases=self.truth.n_purchases,
            models=models,
            skipped=dict(skipped),
            horizon=self.horizon,
            n_users_eligible=self.truth.n_eligible,
            sample_seed=self.truth.seed if self.truth.n_eligible > self.truth.n_users else None,
        )

    def _result(
        self,
        name: str,
        lists: NDArray[np.intp],
        new_lists: NDArray[np.intp],
        score_seconds: float,
        fit_seconds: float,
    ) -> ModelResult:
        """One model's result from its lists."""
        k, data = self.k, self.data
        per_user = M.ranking_metrics(lists, self.truth.relevant, k)
        per_user_new = M.ranking_metrics(new_lists, self.relevant_new, k)
        by_segment: dict[str, dict[str, Any]] = {}
        if self.segment_of is not None:
            for seg in sorted(set(self.segment_of.tolist())):
                mask = self.segment_of == seg
                by_segment[seg] = {
                    "users": int(mask.sum()),
                    "all": M.mean_metrics({m: v[mask] for m, v in per_user.items()}),
                    "new": M.mean_metrics({m: v[mask] for m, v in per_user_new.items()}),
                }
        return ModelResult(
            name=name,
            all_items=M.mean_metrics(per_user),
            new_items=M.mean_metrics(per_user_new),
            coverage=M.catalog_coverage(lists, data.n_items),
            novelty=M.novelty(lists, self.item_users, data.n_users),
            gini=M.gini(M.exposure(lists, data.n_items)),
            fit_seconds=fit_seconds,
            score_seconds=score_seconds,
            segments=by_segment,
            all_items_ci95={m: M.mean_ci(v) for m, v in per_user.items()},
            new_items_ci95={m: M.mean_ci(v) for m, v in per_user_new.items()},
        )


def sample_customers(ids: Iterable[str], n: int, *, seed: int = 0) -> list[str]:
    """A seeded sample of ``n`` customer ids (all of them when there are no more), sorted.

    The ``n`` ids whose keyed hash (BLAKE2b, the seed as key) is smallest: a bottom-``n`` sample,
    which is *consistent*: a customer sampled from a set stays sampled from any subset holding
    them, so two runs on overlapping customers evaluate mostly the same ones, and an id's
    fate does not depend on the order or the platform (unlike a generator's permutation).
    """
    unique = sorted(set(ids))
    if len(unique) <= n:
        return unique
    key = seed.to_bytes(8, "little", signed=True)
    ranks = np.array(
        [
            int.from_bytes(
                hashlib.blake2b(i.encode("utf-8"), digest_size=8, key=key).digest(), "little"
            )
            for i in unique
        ],
        dtype=np.uint64,
    )
    # ties (a 64-bit collision) go to the smaller id: the order of `unique`, stable
    keep = np.sort(np.argsort(ranks, kind="stable")[:n])
    return [unique[i] for i in keep.tolist()]


# -- the pieces ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Truth:
    user_ids: list[str]
    user_index: NDArray[np.intp]  # into the training user vocabulary, -1 if unseen
    relevant: sp.csr_matrix  # users × (training items + items first seen after the cut)
    n_purchases: int
    n_eligible: int  # customers before any sample
    seed: int

    @property
    def n_users(self) -> int:
        return len(self.user_ids)


def _truth(
    test: Bought,
    items: Vocabulary,
    users: Vocabulary,
    customers: Iterable[str],
    *,
    max_users: int | None,
    seed: int,
    eligible: int | None = None,
) -> _Truth:
    """The evaluated customers (a sample above ``max_users``) and the distinct items each
    bought on or after the cut; ``eligible``: how many ``customers`` were drawn from, when
    they are a sample already."""
    candidates = sorted(set(customers))
    if eligible is None:
        eligible = len(candidates)
    if max_users is not None:
        candidates = sample_customers(candidates, max_users, seed=seed)
    user_vocab = Vocabulary(candidates)
    test_items = np.asarray(test.item_id).astype(str)
    # items first seen after the cut get columns past the training catalogue
    wide = items.extend(sorted(set(test_items.tolist())))
    rows = user_vocab.indices(np.asarray(test.user_id).astype(str))
    keep = rows >= 0
    cols = wide.indices(test_items[keep])
    relevant = sp.csr_matrix(
        (np.ones(cols.size, dtype=np.float32), (rows[keep], cols)),
        shape=(len(user_vocab), len(wide)),
    )
    relevant.sum_duplicates()
    relevant.data[:] = 1.0
    return _Truth(
        user_ids=candidates,
        user_index=users.indices(candidates),
        relevant=relevant,
        n_purchases=int(keep.sum()),
        n_eligible=eligible,
        seed=seed,
    )


def _bought_before(before: Bought, items: Vocabulary, truth: _Truth) -> sp.csr_matrix:
    """``users × n_items`` binary matrix of what each customer bought before the cut."""
    user_vocab = Vocabulary(truth.user_ids)
    rows = user_vocab.indices(np.asarray(before.user_id).astype(str))
    cols = items.indices(np.asarray(before.item_id).astype(str))
    keep = (rows >= 0) & (cols >= 0)
    bought = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])),
        shape=(truth.n_users, len(items)),
    )
    bought.sum_duplicates()
    bought.data[:] = 1.0
    return bought


def _new_only(relevant: sp.csr_matrix, before: sp.csr_matrix) -> sp.csr_matrix:
    """The relevance matrix minus the items each customer had bought before."""
    wide = sp.csr_matrix((before.data, before.indices, before.indptr), shape=relevant.shape)
    new = sp.csr_matrix(relevant - relevant.multiply(wide))
    new.eliminate_zeros()
    return new


def _history_rows(data: TrainingData, user_index: NDArray[np.intp]) -> sp.csr_matrix:
    """Each evaluated user's training interaction row (empty for unseen users)."""
    known = user_index >= 0
    picker = sp.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (np.flatnonzero(known), user_index[known])),
        shape=(user_index.size, data.n_users),
    )
    return sp.csr_matrix(picker @ data.interactions, dtype=np.float32)


def _rank(
    models: list[Recommender],
    user_index: NDArray[np.intp],
    history: sp.csr_matrix,
    bought_before: sp.csr_matrix,
    k: int,
    now: int,
) -> list[tuple[NDArray[np.intp], NDArray[np.intp], float]]:
    """Each model's top-``k`` lists with and without previously bought items, and the
    seconds it took, scoring each batch once.

    Both lists come from one :meth:`~recsys.models.base.Recommender.recommend_lists` call: a
    model that ranks without dense rows (popular, trending, buy-again, ALS, BPR) does so, the
    others score the batch once for both. The models (one fit and its variants) take each
    batch in turn inside :func:`~recsys.models.base.shared_scoring`, so a variant that
    shares its model's scoring of the batch reads it instead of scoring again.
    """
    lists: list[list[NDArray[np.intp]]] = [[] for _ in models]
    new_lists: list[list[NDArray[np.intp]]] = [[] for _ in models]
    seconds = [0.0 for _ in models]
    with shared_scoring():
        for start in range(0, user_index.size, BATCH_USERS):
            stop = min(start + BATCH_USERS, user_index.size)
            # one set of slices for every model: the shared scoring knows a batch by them
            users, rows, before = (
                user_index[start:stop],
                history[start:stop],
                bought_before[start:stop],
            )
            for m, model in enumerate(models):
                began = time.perf_counter()
                (every, _), (new, _) = model.recommend_lists(
                    users, rows, k, excludes=(None, before), now=now
                )
                seconds[m] += time.perf_counter() - began
                lists[m].append(_pad(every, k))
                new_lists[m].append(_pad(new, k))
    return [(np.vstack(lists[m]), np.vstack(new_lists[m]), seconds[m]) for m in range(len(models))]


def _pad(lists: NDArray[np.intp], k: int) -> NDArray[np.intp]:
    """Widen to ``k`` columns with :data:`NO_ITEM` (a catalogue smaller than ``k``)."""
    if lists.shape[1] >= k:
        return lists
    out = np.full((lists.shape[0], k), NO_ITEM, dtype=np.intp)
    out[:, : lists.shape[1]] = lists
    return out


def _instantiate(name: str, spec: ModelSpec) -> Recommender:
    if isinstance(spec, Recommender):
        return spec
    if isinstance(spec, str):
        from recsys.models import model_class

        return model_class(spec)()
    if callable(spec):
        model = spec()
        if isinstance(model, Recommender):
            return model
    raise ConfigError(f"model {name!r}: expected a Recommender, a factory or a registry name")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value
