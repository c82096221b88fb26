"""Non-personalised rankings: what is popular, and what is trending.

Both give every user the same scores, unknown users included: they are the fallback when a
personalised model has nothing to say, so they never return a ``NaN`` row. Time is measured
from the training data's ``as_of``, never from the wall clock, so a retrain on the same data
gives the same ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.data.schema import EVENT_TYPE_PATTERN, MICROS_PER_DAY
from recsys.errors import ArtifactError
from recsys.models.base import (
    NONE,
    POSITIVE,
    Constraint,
    Interval,
    Recommender,
    load_arrays,
    load_json,
    ranking_order,
    save_arrays,
    save_json,
    top_k_of_order,
)

#: Event weights used when a model is given none: a purchase says more than a view.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {"view": 1.0, "cart": 3.0, "purchase": 10.0}


class EventWeights(Constraint):
    """A table of event type -> finite number (``{view = 1.0, purchase = 10.0}``).

    Any event-type name the store accepts (:data:`~recsys.data.schema.EVENT_TYPE_PATTERN`)
    may be weighted, custom ones included; a negative weight is allowed (a ``return`` may
    count against an item).
    """

    def accepts(self, value: object) -> bool:
        """Whether ``value`` maps event-type names to finite numbers."""
        return isinstance(value, dict) and all(
            isinstance(k, str) and EVENT_TYPE_PATTERN.match(k) and _finite_number(v)
            for k, v in value.items()
        )

    def describe(self) -> str:
        """What a weights table looks like."""
        return "a table of event type -> number (e.g. {view = 1.0, purchase = 10.0})"


def _finite_number(value: object) -> bool:
    return Interval("real", None, None).accepts(value)


#: Separator of category path levels (see :class:`recsys.data.schema.CatalogItem`).
CATEGORY_SEPARATOR = " > "


def category_mask(categories: list[str], category: str) -> NDArray[np.bool_]:
    """Items whose category path is ``category`` or lies under it.

    ``"Home"`` matches ``"Home"`` and ``"Home > Kitchen"`` but not ``"Homeware"``.
    """
    prefix = category.strip()
    below = prefix + CATEGORY_SEPARATOR
    return np.fromiter(
        (c == prefix or c.startswith(below) for c in categories), dtype=bool, count=len(categories)
    )


def category_table(categories: Sequence[str]) -> tuple[list[str], NDArray[np.int32]]:
    """The distinct categories (in order of first appearance) and each item's index among
    them: 10^6 items share a few thousand categories, and a string per item cost ~60 bytes
    of every server worker's memory."""
    code_of: dict[str, int] = {}
    codes = np.fromiter(
        (code_of.setdefault(str(c), len(code_of)) for c in categories),
        dtype=np.int32,
        count=len(categories),
    )
    return list(code_of), codes


def _event_weights(data: TrainingData, weights: dict[str, float] | None) -> NDArray[np.float64]:
    table = DEFAULT_EVENT_WEIGHTS if weights is None else weights
    types = data.events.event_type
    out = np.zeros(len(types), dtype=np.float64)
    for event_type, weight in table.items():
        out[types == event_type] = weight
    out[np.asarray(data.event_item) < 0] = 0.0
    return out


class _ItemRanking(Recommender):
    """Shared machinery: one score per item, served to everyone, filterable by category."""

    personalised: ClassVar[bool] = False

    item_scores_: NDArray[np.float32]
    listed_: NDArray[np.bool_]
    #: The distinct categories, and each item's index among them (:func:`category_table`).
    category_names_: list[str]
    category_codes_: NDArray[np.int32]
    #: Every scored item, best first (:func:`~recsys.models.base.ranking_order`), computed on
    #: first use after a fit or a load.
    _order: NDArray[np.intp] | None = None

    def _store(self, data: TrainingData, scores: NDArray[Any], listed: NDArray[np.bool_]) -> None:
        self.item_scores_ = np.asarray(scores, dtype=np.float32)
        self.listed_ = np.asarray(listed, dtype=bool)
        self.category_names_, self.category_codes_ = category_table(data.item_category)
        self._order = None

    @property
    def item_category_(self) -> list[str]:
        """Each item's category path."""
        return [self.category_names_[c] for c in self.category_codes_.tolist()]

    def score(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        *,
        now: int | None = None,
    ) -> NDArray[np.float32]:
        """The same row of item scores for every user (never ``NaN``)."""
        self._check_fitted("item_scores_")
        return np.tile(self.item_scores_, (len(users), 1))

    def recommend_lists(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        k: int,
        *,
        excludes: Sequence[sp.csr_matrix | None],
        now: int | None = None,
    ) -> list[tuple[NDArray[np.intp], NDArray[np.float32]]]:
        """The head of the one ranking every user shares, less each user's excluded items.

        The lists of :func:`~recsys.models.base.top_k` on :meth:`score`'s rows, without those
        rows (see :meth:`Recommender.recommend_lists`).
        """
        self._check_fitted("item_scores_")
        if self._order is None:
            self._order = ranking_order(self.item_scores_)
        return [
            top_k_of_order(self._order, self.item_scores_, len(users), k, exclude=exclude)
            for exclude in excludes
        ]

    def popular_items(
        self, k: int, category: str | None = None
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """The ``k`` best items, optionally within a category path.

        Parameters
        ----------
        k
            How many at most.
        category
            A category path prefix (``"Home"`` includes ``"Home > Kitchen"``); ``None`` for all.

        Returns
        -------
        tuple of numpy.ndarray
            Item indices and their scores, best first; shorter than ``k`` when fewer items
            qualify (no padding).
        """
        self._check_fitted("item_scores_")
        mask = self.listed_.copy()
        if category is not None:
            # matched once per distinct category, not per item
            mask &= category_mask(self.category_names_, category)[self.category_codes_]
        candidates = np.flatnonzero(mask)
        order = np.lexsort((candidates, -self.item_scores_[candidates]))[: max(k, 0)]
        chosen = candidates[order].astype(np.intp)
        return chosen, self.item_scores_[chosen]

    def save(self, directory: Path) -> None:
        """Write params, the distinct categories (JSON), and the item scores and category
        codes (``.npz``)."""
        directory = self._write_params(directory, "item_scores_")
        save_json(directory / "category_names.json", self.category_names_)
        save_arrays(
            directory / "scores.npz",
            scores=self.item_scores_,
            listed=self.listed_,
            category_codes=self.category_codes_,
        )

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by :meth:`save`."""
        directory = Path(directory)
        model = cls._from_params(directory, f"a {cls.name} model")
        arrays = load_arrays(directory / "scores.npz")
        try:
            # as stored: no copy, the workers share the memory-mapped arrays
            model.item_scores_ = arrays["scores"].astype(np.float32, copy=False)
            model.listed_ = arrays["listed"].astype(bool, copy=False)
            model._order = None
        except KeyError as exc:
            raise ArtifactError(f"{directory}: not a {cls.name} model: {exc}") from None
        n = len(model.item_scores_)
        if "category_codes" in arrays:
            names = load_json(directory / "category_names.json")
            codes = np.asarray(arrays["category_codes"])
            if (
                not isinstance(names, list)
                or codes.shape != (n,)
                or codes.dtype.kind not in "iu"
                or (n and not 0 <= int(codes.min()) <= int(codes.max()) < len(names))
            ):
                raise ArtifactError(f"{directory}: not one known category per item")
            model.category_names_ = [str(c) for c in names]
            model.category_codes_ = codes.astype(np.int32, copy=False)
        else:  # a version written before the codes: one category string per item
            categories = load_json(directory / "categories.json")
            if not isinstance(categories, list) or len(categories) != n:
                raise ArtifactError(f"{directory}/categories.json: not one category per item")
            model.category_names_, model.category_codes_ = category_table(categories)
        return model


class PopularModel(_ItemRanking):
    """Time-decayed popularity: the weighted, decayed sum of each item's events.

    Parameters
    ----------
    half_life_days
        An event this many days before ``as_of`` counts half; ``None`` for no decay.
    weights
        Weight per event type (default :data:`DEFAULT_EVENT_WEIGHTS`); other types count 0.

    Attributes
    ----------
    item_scores_ : numpy.ndarray
        float32 popularity per item.
    """

    name: ClassVar[str] = "popular"
    parameter_constraints: ClassVar[dict[str, tuple[Constraint, ...]]] = {
        "half_life_days": (POSITIVE, NONE),  # None: no decay
        "weights": (EventWeights(), NONE),  # None: DEFAULT_EVENT_WEIGHTS
    }

    def __init__(
        self, *, half_life_days: float | None = 30.0, weights: dict[str, float] | None = None
    ) -> None:
        self.half_life_days = half_life_days
        self.weights = weights

    def fit(self, data: TrainingData) -> Self:
        """Sum decayed event weights per item; return ``self``.

        Raises
        ------
        InvalidParameterError
            For a constructor argument outside :attr:`parameter_constraints`.
        """
        self._validate_params()
        w = _event_weights(data, self.weights)
        if self.half_life_days is not None:
            age_days = np.maximum(data.as_of - data.events.ts, 0) / MICROS_PER_DAY
            w = w * np.exp2(-age_days / self.half_life_days)
        items = np.asarray(data.event_item)
        keep = (items >= 0) & (w != 0)
        scores = np.bincount(items[keep], weights=w[keep], minlength=data.n_items)
        self._store(data, scores, scores > 0)
        return self


class TrendingModel(_ItemRanking):
    """Items whose recent activity outruns their usual rate.

    With ``r`` the weighted events of the last ``window_days`` before ``as_of`` and ``b``
    those of the ``baseline_days`` before that window, the score is the smoothed growth ratio
    ``(r + smoothing) / (b · window_days / baseline_days + smoothing)``; the smoothing keeps a
    single view of a never-seen item from topping the list. :meth:`popular_items` lists only
    items with recent activity.

    Parameters
    ----------
    window_days
        The recent window.
    baseline_days
        The longer period the window is compared with.
    smoothing
        Pseudo-count added to both sides (in event-weight units).
    weights
        Weight per event type (default :data:`DEFAULT_EVENT_WEIGHTS`).

    Attributes
    ----------
    item_scores_ : numpy.ndarray
        float32 growth ratio per item (1 = as usual).
    """

    name: ClassVar[str] = "trending"
    parameter_constraints: ClassVar[dict[str, tuple[Constraint, ...]]] = {
        "window_days": (POSITIVE,),
        "baseline_days": (POSITIVE,),  # the expected rate divides by it
        # > 0: without a pseudo-count an item with no baseline scores r / 0
        "smoothing": (POSITIVE,),
        "weights": (EventWeights(), NONE),
    }

    def __init__(
        self,
        *,
        window_days: float = 7.0,
        baseline_days: float = 28.0,
        smoothing: float = 10.0,
        weights: dict[str, float] | None = None,
    ) -> None:
        self.window_days = window_days
        self.baseline_days = baseline_days
        self.smoothing = smoothing
        self.weights = weights

    def fit(self, data: TrainingData) -> Self:
        """Compare each item's recent and baseline activity; return ``self``.

        Raises
        ------
        InvalidParameterError
            For a constructor argument outside :attr:`parameter_constraints`.
        """
        self._validate_params()
        w = _event_weights(data, self.weights)
        age_days = (data.as_of - data.events.ts) / MICROS_PER_DAY
        items = np.asarray(data.event_item)
        valid = (items >= 0) & (w != 0) & (age_days >= 0)
        recent_mask = valid & (age_days < self.window_days)
        base_mask = (
            valid
            & (age_days >= self.window_days)
            & (age_days < self.window_days + self.baseline_days)
        )
        recent = np.bincount(items[recent_mask], weights=w[recent_mask], minlength=data.n_items)
        base = np.bincount(items[base_mask], weights=w[base_mask], minlength=data.n_items)
        expected = base * self.window_days / self.baseline_days
        scores = (recent + self.smoothing) / (expected + self.smoothing)
        self._store(data, scores, recent > 0)
        return self
