"""The one interface every model answers.

A model is fitted on :class:`~recsys.data.interactions.TrainingData` and then scores users
from their *history row* (their weighted interactions, with any live events folded in), so the
same call serves training-time evaluation and live requests. Indices are internal: the
vocabularies in the training data map them to and from the shop's string ids.

Conventions (the scikit-learn estimator contract):

- no logic in ``__init__``; every constructor argument is kept under its own name;
- learned state ends in ``_``; ``fit`` returns ``self``; using a model before ``fit`` raises
  :class:`~recsys.errors.NotFittedError`;
- ``score`` returns ``NaN`` for items it cannot score, and a row of ``NaN`` for a user it knows
  nothing about (unknown index ``-1`` and an empty history): the caller falls back;
- every constructor argument declares the values it accepts in
  :attr:`Recommender.parameter_constraints` (scikit-learn's ``_parameter_constraints`` idea),
  so :meth:`Recommender.check_params` can refuse a bad value in a training config before any
  data is read, and ``fit`` refuses it the same way for a direct caller.
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Self, TypeVar, runtime_checkable

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.errors import ArtifactError, ConfigError, NotFittedError
from recsys.models import kernels

#: Index padding in :meth:`Recommender.recommend` results when fewer than ``k`` items scored.
NO_ITEM = -1

#: Largest seed numpy's legacy ``RandomState`` (implicit) and scikit-learn's ``random_state``
#: accept; a larger one fails inside the library, minutes into a run.
MAX_SEED = 2**32 - 1


# -- parameter constraints -----------------------------------------------------------------------


class InvalidParameterError(ConfigError):
    """A model's constructor argument has a value the model cannot be fitted with.

    A :class:`~recsys.errors.ConfigError`, so the command line prints it as one line; callers
    that know where the value came from (a config file and its key) re-word it with
    :attr:`param`, :attr:`value` and :attr:`allowed`.

    Parameters
    ----------
    model
        Registry name of the model (``"als"``).
    param
        The argument, dotted when it lies inside another (``"fallback_params.regularization"``).
    value
        The refused value.
    allowed
        What is allowed, as a phrase (``"must be an integer >= 1"``).
    """

    def __init__(self, model: str, param: str, value: object, allowed: str) -> None:
        self.model = model
        self.param = param
        self.value = value
        self.allowed = allowed
        super().__init__(f"{model}: {param} = {value!r}: {allowed}")


class Constraint(ABC):
    """One kind of value a model parameter accepts; a parameter lists one or more."""

    @abstractmethod
    def accepts(self, value: object) -> bool:
        """Whether ``value`` satisfies this constraint."""

    @abstractmethod
    def describe(self) -> str:
        """The accepted values as a noun phrase (``"an integer >= 1"``), for error messages."""


def _is_int(value: object) -> bool:
    # bool is an int subclass, but ``factors = true`` in a config is a mistake, not 1
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _is_real(value: object) -> bool:
    # an int is a fine float (TOML's ``regularization = 500``); a bool is not
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


class Interval(Constraint):
    """An integer or a finite number within bounds.

    Parameters
    ----------
    kind
        ``"int"``: integers only (a float, even ``3.0``, is refused: counts are not
        measured); ``"real"``: any finite number, integers included. Booleans never count.
    low, high
        The bounds; ``None`` for unbounded.
    closed
        Which bounds belong to the interval.
    """

    def __init__(
        self,
        kind: Literal["int", "real"],
        low: float | None,
        high: float | None,
        *,
        closed: Literal["both", "left", "right", "neither"] = "both",
    ) -> None:
        self.kind = kind
        self.low = low
        self.high = high
        self.closed = closed

    def accepts(self, value: object) -> bool:
        """Whether ``value`` is of the interval's kind and lies within it."""
        x: float
        if self.kind == "int":
            if not _is_int(value):
                return False
            x = int(value)  # type: ignore[call-overload]  # exact, however large
        else:
            if not _is_real(value):
                return False
            try:
                x = float(value)  # type: ignore[arg-type]
            except OverflowError:  # an int beyond any float
                return False
            if not math.isfinite(x):  # NaN and inf are TOML literals; no parameter means them
                return False
        low_in = self.closed in ("both", "left")
        high_in = self.closed in ("both", "right")
        above_low = self.low is None or x > self.low or (low_in and x == self.low)
        below_high = self.high is None or x < self.high or (high_in and x == self.high)
        return above_low and below_high

    def describe(self) -> str:
        """``"an integer >= 1"``, ``"a number > 0"``, ``"a number in [0, 1)"``..."""
        noun = "an integer" if self.kind == "int" else "a number"
        low_in = self.closed in ("both", "left")
        high_in = self.closed in ("both", "right")
        if self.low is not None and self.high is not None:
            return (
                f"{noun} in {'[' if low_in else '('}{_num(self.low)}, "
                f"{_num(self.high)}{']' if high_in else ')'}"
            )
        if self.low is not None:
            return f"{noun} {'>=' if low_in else '>'} {_num(self.low)}"
        if self.high is not None:
            return f"{noun} {'<=' if high_in else '<'} {_num(self.high)}"
        return f"{'an' if self.kind == 'int' else 'a finite'} {noun.split()[-1]}"


def _num(x: float) -> str:
    """A bound as written in a config: ``1`` rather than ``1.0``."""
    return str(int(x)) if float(x).is_integer() else repr(x)


class Options(Constraint):
    """One of a fixed set of strings (``source = "basket"``)."""

    def __init__(self, *values: str) -> None:
        self.values = values

    def accepts(self, value: object) -> bool:
        """Whether ``value`` is one of the strings."""
        return isinstance(value, str) and value in self.values

    def describe(self) -> str:
        """``"one of 'basket', 'session'"``."""
        return "one of " + ", ".join(repr(v) for v in self.values)


class Boolean(Constraint):
    """``true`` or ``false``, not a number that reads as one."""

    def accepts(self, value: object) -> bool:
        """Whether ``value`` is a boolean."""
        return isinstance(value, bool | np.bool_)

    def describe(self) -> str:
        """``"a boolean (true or false)"``."""
        return "a boolean (true or false)"


class NoneValue(Constraint):
    """``None`` (a library caller's "off"; TOML has no way to write it)."""

    def accepts(self, value: object) -> bool:
        """Whether ``value`` is ``None``."""
        return value is None

    def describe(self) -> str:
        """``"None"``."""
        return "None"


#: Shorthands for the constraints most parameters use.
COUNT = Interval("int", 1, None)  # sizes, iterations, factors
NON_NEGATIVE_INT = Interval("int", 0, None)  # counts where 0 means "off" or "all"
POSITIVE = Interval("real", 0, None, closed="neither")  # rates, scales, lengths of time
NON_NEGATIVE = Interval("real", 0, None)  # ridge / L2 penalties
PROBABILITY = Interval("real", 0, 1)
SEED = Interval("int", 0, MAX_SEED)
BOOLEAN = Boolean()
NONE = NoneValue()


def allowed_phrase(constraints: Sequence[Constraint]) -> str:
    """``"must be an integer >= 1 or None"``: what a parameter with ``constraints`` accepts."""
    return "must be " + " or ".join(c.describe() for c in constraints)


class Recommender(ABC):
    """Base class of every model."""

    #: Registry name (``"als"``, ``"ease"``...): how configs and manifests refer to the model.
    name: ClassVar[str]

    #: Constructor argument -> the constraints its value must satisfy one of. Every argument
    #: has an entry (a test checks), so :meth:`check_params` covers every value a config
    #: can give.
    parameter_constraints: ClassVar[dict[str, tuple[Constraint, ...]]] = {}

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        """Check constructor arguments against :attr:`parameter_constraints`, without data.

        Training calls it for every configured model before anything is read, so a bad value
        (``factors = -3``) fails in a second rather than at the model's fit, minutes into the
        run; :meth:`fit` calls it too (:meth:`_validate_params`) for direct callers.

        Parameters
        ----------
        params
            Some or all of the constructor's arguments (an omitted one takes its default,
            which is valid). Names the constructor does not take are not this method's
            business: the constructor refuses them with a ``TypeError``.

        Raises
        ------
        InvalidParameterError
            For the first value that satisfies none of its constraints (in ``params`` order).
        """
        for key, value in params.items():
            constraints = cls.parameter_constraints.get(key)
            if constraints is not None and not any(c.accepts(value) for c in constraints):
                raise InvalidParameterError(cls.name, key, value, allowed_phrase(constraints))

    def _validate_params(self) -> None:
        """:meth:`check_params` on this model's own arguments (the first thing ``fit`` does)."""
        type(self).check_params(self.get_params())

    # -- the protocol ------------------------------------------------------------------------

    @abstractmethod
    def fit(self, data: TrainingData) -> Self:
        """Learn from the training data; return ``self``."""

    @abstractmethod
    def score(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        *,
        now: int | None = None,
    ) -> NDArray[np.float32]:
        """Scores of every item for a batch of users.

        Parameters
        ----------
        users
            User indices, ``-1`` for a user not in the training vocabulary.
        history
            One row per user (``len(users) × n_items``): the user's weighted interactions,
            including events newer than training. Models that learn per-user state may use it
            to fold a user in without retraining.
        now
            The time of the request in microseconds (UTC); defaults to the training data's
            ``as_of``. Time-aware models (buy-again, trending) measure recency from it.

        Returns
        -------
        numpy.ndarray
            ``float32`` array ``len(users) × n_items``; higher is better; ``NaN`` = no score.
        """

    def recommend(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        k: int,
        *,
        exclude: sp.csr_matrix | None = None,
        now: int | None = None,
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """Top-``k`` items per user, best first.

        ``exclude`` (same shape as ``history``) marks items that must not be returned. Rows
        with fewer than ``k`` scored items are padded with :data:`NO_ITEM` and ``-inf``. The
        lists are those of :func:`top_k` on :meth:`score`'s rows (ties to the lower index),
        whether a model builds them from its dense rows or, more cheaply, without them
        (:meth:`recommend_lists`).
        """
        return self.recommend_lists(users, history, k, excludes=(exclude,), now=now)[0]

    def recommend_lists(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        k: int,
        *,
        excludes: Sequence[sp.csr_matrix | None],
        now: int | None = None,
    ) -> list[tuple[NDArray[np.intp], NDArray[np.float32]]]:
        """One top-``k`` list per user for each exclusion matrix, scoring the users once.

        The evaluation asks for every customer's list with and without their earlier
        purchases; a model that scores densely scores each batch once for both.

        Parameters
        ----------
        users, history, now
            As in :meth:`score`.
        k
            List length (at most the catalogue's size).
        excludes
            One entry per list wanted: ``None`` or a ``len(users) × n_items`` matrix whose
            stored entries must not be returned.

        Returns
        -------
        list of tuple of numpy.ndarray
            Per entry of ``excludes``, what :meth:`recommend` returns with that exclusion.

        Notes
        -----
        This default builds :meth:`score`'s dense ``users × items`` rows. A model that can rank
        without them (one global order, a sparse row, factors block by block) overrides this
        method, and its lists must equal :func:`top_k` of :meth:`score` (the contract tests
        check it).
        """
        scores = self.score(users, history, now=now)
        return [top_k(scores, k, exclude=exclude) for exclude in excludes]

    def warm_up(self) -> None:
        """Build now what the model keeps between requests and would otherwise build on the
        first one that needs it. Serving calls it after loading a version and before the new
        version answers, so no customer's request pays for it. Nothing by default."""

    def fit_report(self) -> dict[str, Any] | None:
        """What the last :meth:`fit` decided from the data beyond its parameters (a choice a
        test made), for the run's manifest; ``None`` (nothing) by default."""
        return None

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted state under ``directory`` (arrays as ``.npz``, the rest as JSON)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by :meth:`save`."""

    # -- helpers for implementations ---------------------------------------------------------

    def _check_fitted(self, *attributes: str) -> None:
        for attr in attributes:
            if getattr(self, attr, None) is None:
                raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (recorded in the manifest)."""
        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.name != "self" and p.kind is not p.VAR_KEYWORD
        ]
        return {n: getattr(self, n) for n in names}

    def _write_params(self, directory: Path, *fitted: str) -> Path:
        """Start :meth:`save`: check the ``fitted`` attributes, create ``directory`` and write
        the constructor arguments to ``params.json``; return ``directory`` as a path."""
        self._check_fitted(*fitted)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_json(directory / "params.json", self.get_params())
        return directory

    @classmethod
    def _from_params(cls, directory: Path, what: str) -> Self:
        """Start :meth:`load`: a new, unfitted model built from ``params.json``.

        Raises
        ------
        ArtifactError
            When the file cannot be read or its arguments do not fit the constructor; the
            message says the folder is not ``what`` ("a BPR model").
        """
        directory = Path(directory)
        params: Any = load_json(directory / "params.json")
        try:
            return cls(**params)
        except TypeError as exc:
            raise ArtifactError(f"{directory}: not {what}: {exc}") from None


class ItemSimilarity(ABC):
    """Item-to-item models ("often viewed with", "bought together") add this."""

    @abstractmethod
    def similar_items(
        self, items: NDArray[np.intp], k: int
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """The ``k`` most related items of each item, best first, padded with ``-1``/``-inf``."""


#: The last batch scored inside :func:`shared_scoring` (its key and value), ``None`` outside.
_SHARED_SCORING: ContextVar[list[tuple[tuple[object, ...], Any]] | None] = ContextVar(
    "recsys_shared_scoring", default=None
)

_T = TypeVar("_T")


@contextmanager
def shared_scoring() -> Iterator[None]:
    """Within the block, one fit used several ways scores each batch once.

    An evaluation scores a model and its variants (the same fit used another way, e.g.
    :meth:`~recsys.models.hybrid.HybridModel.in_order`) on one batch after the other: a model
    that names what its scoring of a batch depends on (:func:`scored_once`) computes it for
    the first and hands the others the same arrays. Only the last batch is kept, so the
    block holds one batch's scores at most; outside it nothing is kept (a serving process
    remembers no request). Nested blocks share the outer one's.
    """
    if _SHARED_SCORING.get() is not None:
        yield
        return
    token = _SHARED_SCORING.set([])
    try:
        yield
    finally:
        _SHARED_SCORING.reset(token)


def scored_once(key: tuple[object, ...], compute: Callable[[], _T]) -> _T:
    """``compute()``; inside :func:`shared_scoring`, the value last computed under an equal
    ``key``, if that was the last batch scored.

    ``key`` holds everything the value depends on: fitted state and input arrays compare by
    identity (the block keeps them alive, so an identity is not reused), numbers and strings
    by value. The caller must not write into the value: another model reads it too.
    """
    kept = _SHARED_SCORING.get()
    if kept is None:
        return compute()
    if kept and _same_key(kept[0][0], key):
        value: _T = kept[0][1]
        return value
    value = compute()
    kept[:] = [(key, value)]
    return value


def _same_key(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    return len(a) == len(b) and all(
        x is y or (type(x) is type(y) and isinstance(x, int | float | str) and x == y)
        for x, y in zip(a, b, strict=True)
    )


@runtime_checkable
class Explains(Protocol):
    """A model that says why it chose each item (the hybrid): its top lists carry reasons."""

    def explain(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        k: int,
        *,
        exclude: sp.csr_matrix | None = None,
        now: int | None = None,
    ) -> list[list[Any]]:
        """Top-``k`` items per user, each with ``item``, ``score``, ``sources`` and ``reasons``."""
        ...


@runtime_checkable
class ExplainsArrays(Protocol):
    """A model that explains (:class:`Explains`) and also returns its explained lists as
    arrays, one entry per listed item (the hybrid's
    :class:`~recsys.models.explained.ExplainedLists`): what the stored lists read, without an
    object per item."""

    def explain_arrays(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        k: int,
        *,
        exclude: sp.csr_matrix | None = None,
        now: int | None = None,
    ) -> Any:
        """:meth:`Explains.explain`'s lists: ``rows``, ``items``, ``scores``, ``sources``,
        ``bought_before``, ``due_for_repurchase``, ``often_bought_with`` arrays,
        ``reason(e)``, entry ``e`` as the object ``explain`` lists, and ``prefetch(entries)``,
        which readies the reasons of those entries in one search (a request reads about
        ``k`` of them)."""
        ...


@runtime_checkable
class PurchaseProbabilities(Protocol):
    """A model that gives the probability that a customer buys each of its candidate items
    (the hybrid): what the offers rank promotions by.

    ``calibrated_`` says whether the values are calibrated probabilities or a fallback
    score in [0, 1]. (A data member: check with ``isinstance``, not :func:`implements`.)
    """

    calibrated_: bool

    def probability(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        *,
        now: int | None = None,
    ) -> NDArray[np.float32]:
        """``users × items`` probabilities, ``NaN`` for items that are not candidates."""
        ...


def implements(model: object, protocol: type) -> bool:
    """``isinstance(model, protocol)`` for a protocol of methods only (:class:`Explains`,
    :class:`ExplainsArrays`), answered once per class.

    ``isinstance`` against a runtime-checkable protocol collects the protocol's members on
    every call: 5.7 µs on Python 3.11 for a model without them, and a customer's stored list
    cost 10-14 % less without it (``benchmarks/RESULTS.md``, eighteenth session). Methods
    belong to the class, so the class's answer is every instance's.
    """
    key = (type(model), protocol)
    known = _IMPLEMENTS.get(key)
    if known is None:
        known = _IMPLEMENTS[key] = issubclass(type(model), protocol)
    return known


#: :func:`implements`'s answers by (class, protocol).
_IMPLEMENTS: dict[tuple[type, type], bool] = {}


@runtime_checkable
class ItemRanking(Protocol):
    """A non-personal model with one score per item (popular, trending)."""

    def popular_items(
        self, k: int, category: str | None = None
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """The ``k`` best items (optionally within a category path) and their scores."""
        ...


def candidate_depth(k: int, n_items: int) -> int:
    """How many items a model that explains is asked for to answer a list of ``k``: enough
    spares for the business rules to filter. The precomputed lists must hold at least this
    many for the ``k`` they serve (one formula for both)."""
    return min(n_items, max(4 * k + 20, 100))


#: Bytes of scores :func:`top_k` ranks at a time: a few rows that stay in the CPU's cache
#: while they are masked, partitioned and compared (whole ``2,048 × 69,419`` batches cost
#: several copies of half a gigabyte each; benchmarks/RESULTS.md, issue 13).
TOP_K_CHUNK_BYTES = 1 << 20


def top_k(
    scores: NDArray[np.floating], k: int, *, exclude: sp.csr_matrix | None = None
) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """Indices and values of the ``k`` largest scores per row, best first.

    Parameters
    ----------
    scores
        ``n × m`` scores (ranked as ``float32``); ``NaN`` (and ``±inf``) are never chosen.
    k
        List length; the result has ``min(k, m)`` columns.
    exclude
        ``n × m`` sparse matrix whose stored entries are never chosen.

    Returns
    -------
    tuple of numpy.ndarray
        Item indices (``intp``) and their scores (``float32``), padded with :data:`NO_ITEM`
        and ``-inf`` where a row has fewer than ``k`` items to choose.

    Notes
    -----
    Equal scores are listed lower index first, also across the cut after the ``k``-th item:
    a defined order that the models' sparse paths (:func:`top_k_coo`,
    :func:`top_k_of_order`) reproduce. The rows are ranked a few at a time
    (:data:`TOP_K_CHUNK_BYTES`), so no copy or index array of the whole ``n × m`` is made.
    """
    scores = np.asarray(scores)
    n, m = scores.shape
    k = max(0, min(k, m))
    out_idx = np.full((n, k), NO_ITEM, dtype=np.intp)
    out_val = np.full((n, k), -np.inf, dtype=np.float32)
    if k == 0 or n == 0:
        return out_idx, out_val
    excl = None if exclude is None else sp.csr_matrix(exclude)
    step = max(1, TOP_K_CHUNK_BYTES // (4 * m))
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        # negated, so that the smallest come first and a blocked item is +inf; this is the
        # only copy of the rows, and it is a few rows long
        neg = np.negative(scores[lo:hi], dtype=np.float32)
        # two reductions (NaN propagates) are cheaper than a mask, and dense rows are mostly
        # finite
        if not (np.isfinite(neg.min()) and np.isfinite(neg.max())):
            neg[~np.isfinite(neg)] = np.inf
        if excl is not None:
            start, stop = excl.indptr[lo], excl.indptr[hi]
            if stop > start:
                rows = np.repeat(np.arange(hi - lo), np.diff(excl.indptr[lo : hi + 1]))
                neg[rows, excl.indices[start:stop]] = np.inf
        _rank_chunk(neg, k, out_idx[lo:hi], out_val[lo:hi])
    return out_idx, out_val


def _rank_chunk(
    neg: NDArray[np.float32], k: int, out_idx: NDArray[np.intp], out_val: NDArray[np.float32]
) -> None:
    """Write the ``k`` smallest finite entries of each row of ``neg`` (negated scores; ``+inf``
    = not choosable) into ``out_idx`` / ``out_val`` (scores again), ties to the lower index."""
    kth = np.partition(neg, k - 1, axis=1)[:, k - 1]
    # a row with fewer than k choosable entries takes all of them, and never a +inf
    kth[kth == np.inf] = np.finfo(np.float32).max
    # every entry at or before the k-th value; of those equal to it, the row needs only
    # `need`, and the flat positions come in index order, so the first `need` are the lowest
    # (np.flatnonzero on the chunk is several times faster than a 2-D np.nonzero)
    flat = np.flatnonzero(neg <= kth[:, None])
    row, col = np.divmod(flat, neg.shape[1])
    val = neg[row, col]
    tied = val == kth[row]
    need = k - np.bincount(row[~tied], minlength=len(neg))
    tie_rank = _rank_within(row[tied], len(neg))
    keep = ~tied
    keep[np.flatnonzero(tied)[tie_rank < need[row[tied]]]] = True
    row, col, val = row[keep], col[keep], val[keep]
    order = np.lexsort((col, val, row))
    row, col, val = row[order], col[order], val[order]
    slot = _rank_within(row, len(neg))
    out_idx[row, slot] = col
    out_val[row, slot] = -val


def _rank_within(sorted_rows: NDArray[np.intp], n_rows: int) -> NDArray[np.intp]:
    """Position of each entry among the entries of its row (``sorted_rows`` ascending)."""
    starts = np.searchsorted(sorted_rows, np.arange(n_rows))
    return np.arange(len(sorted_rows)) - starts[sorted_rows]


def top_k_coo(
    rows: NDArray[np.integer],
    cols: NDArray[np.integer],
    values: NDArray[np.floating],
    shape: tuple[int, int],
    k: int,
    *,
    exclude: sp.csr_matrix | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """:func:`top_k` of a score matrix given by its entries; every other entry is ``NaN``.

    A model that scores few items per user (buy-again: the items each customer bought)
    ranks them here without an ``n × m`` row.

    Parameters
    ----------
    rows, cols, values
        The scored entries (one per ``(row, col)`` pair); ``values`` are ranked as ``float32``.
    shape
        ``(n, m)`` of the score matrix they stand for.
    k, exclude
        As in :func:`top_k`.

    Returns
    -------
    tuple of numpy.ndarray
        What :func:`top_k` returns for the dense matrix (same order, same ties, same padding).
    """
    n, m = shape
    k = max(0, min(k, m))
    out_idx = np.full((n, k), NO_ITEM, dtype=np.intp)
    out_val = np.full((n, k), -np.inf, dtype=np.float32)
    if k == 0 or n == 0:
        return out_idx, out_val
    row = np.asarray(rows, dtype=np.intp)
    col = np.asarray(cols, dtype=np.intp)
    val = np.asarray(values).astype(np.float32)
    keep = np.isfinite(val)
    if exclude is not None and exclude.nnz:
        coo = sp.coo_matrix(exclude)
        blocked = coo.row.astype(np.int64) * m + coo.col
        keep &= ~np.isin(row.astype(np.int64) * m + col, blocked)
    row, col, val = row[keep], col[keep], val[keep]
    if len(row) < kernels.PACKED_SORT_MIN:
        order = np.lexsort((col, -val, row))
    else:
        # the lexsort's order: the pairs usually come sorted by (row, col) (a model's
        # candidate pairs), and then equal (row, value) entries are in column order already
        pair = row.astype(np.int64) * m + col
        by_pair = None if np.all(pair[1:] > pair[:-1]) else np.argsort(pair, kind="stable")
        del pair
        order = kernels.order_within_rows(row, val, by_pair)
    row, col, val = row[order], col[order], val[order]
    slot = _rank_within(row, n)
    first = slot < k
    out_idx[row[first], slot[first]] = col[first]
    out_val[row[first], slot[first]] = val[first]
    return out_idx, out_val


def top_k_of_order(
    order: NDArray[np.intp],
    values: NDArray[np.float32],
    n_rows: int,
    k: int,
    *,
    exclude: sp.csr_matrix | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """:func:`top_k` of ``n_rows`` copies of one score row, from that row's ranking.

    Popular and trending give every user the same scores: each list is the head of one
    global order less the user's excluded items, found without a row per user.

    Parameters
    ----------
    order
        The items with a finite score, best first, ties to the lower index (as
        :func:`top_k` ranks them).
    values
        The score of every item (``float32``; ``len(values)`` is the catalogue's size).
    n_rows, k, exclude
        Rows wanted, list length and exclusions, as in :func:`top_k`.

    Returns
    -------
    tuple of numpy.ndarray
        What :func:`top_k` returns for ``np.tile(values, (n_rows, 1))``.
    """
    m = len(values)
    k = max(0, min(k, m))
    out_idx = np.full((n_rows, k), NO_ITEM, dtype=np.intp)
    out_val = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if k == 0 or n_rows == 0:
        return out_idx, out_val
    size = len(order)
    rank = np.full(m, size, dtype=np.int64)
    rank[order] = np.arange(size)
    if exclude is not None and exclude.nnz:
        coo = sp.coo_matrix(exclude)
        pos = rank[coo.col]
        listed = pos < size
        # each row's blocked positions in the order, sorted and without repeats
        key = np.unique(coo.row[listed].astype(np.int64) * (size + 1) + pos[listed])
        b_row, b_pos = key // (size + 1), key % (size + 1)
    else:
        b_row = b_pos = np.empty(0, np.int64)
    # The j-th free position of a row is j + t, t = the row's blocked positions b_i (i-th of
    # the row) with b_i - i <= j: b_i - i is the free positions before b_i, non-decreasing.
    within = _rank_within(b_row, n_rows)
    gap = b_row * (size + 1) + (b_pos - within)
    j = np.arange(k)
    query = (np.arange(n_rows)[:, None] * (size + 1) + j[None, :]).ravel()
    row_start = np.searchsorted(b_row, np.arange(n_rows))
    t = np.searchsorted(gap, query, side="right") - np.repeat(row_start, k)
    pos = (np.tile(j, n_rows) + t).reshape(n_rows, k)
    found = pos < size
    out_idx[found] = order[pos[found]]
    out_val[found] = values[out_idx[found]]
    return out_idx, out_val


def ranking_order(values: NDArray[np.floating]) -> NDArray[np.intp]:
    """Indices of the finite ``values`` (ranked as ``float32``), best first, ties to the
    lower index: the order :func:`top_k` lists them in (see :func:`top_k_of_order`)."""
    v = np.asarray(values).astype(np.float32)
    finite = np.flatnonzero(np.isfinite(v))
    return finite[np.lexsort((finite, -v[finite]))].astype(np.intp)


def save_arrays(path: Path, **arrays: NDArray[Any]) -> None:
    """Save arrays to ``.npz`` (no pickle: object arrays are refused)."""
    for key, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {key!r} has dtype object; it cannot be stored without pickle")
    np.savez(path, **arrays)  # type: ignore[arg-type]


#: Arrays at least this large are memory-mapped rather than read (see :func:`load_arrays`).
MMAP_MIN_BYTES = 1 << 20


def load_arrays(path: Path) -> dict[str, NDArray[Any]]:
    """Load a ``.npz`` written by :func:`save_arrays`, never unpickling.

    Large members (``MMAP_MIN_BYTES`` and up; :func:`save_arrays` stores them uncompressed) are
    memory-mapped copy-on-write instead of read: the server's workers then share one copy of
    a model's factors through the page cache, and a write (erasing a customer's vector, a
    fold-in) copies only the page it touches, privately.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
        with np.load(path, allow_pickle=False) as data:
            out: dict[str, NDArray[Any]] = {}
            for info in infos:
                key = info.filename.removesuffix(".npy")
                mapped = _mmap_member(path, info) if info.file_size >= MMAP_MIN_BYTES else None
                out[key] = data[key] if mapped is None else mapped
            return out
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        # a truncated or bit-flipped .npz surfaces as a zip error, not an OSError
        raise ArtifactError(f"{path}: cannot read arrays: {exc}") from None


def _mmap_member(path: Path, info: zipfile.ZipInfo) -> NDArray[Any] | None:
    """A stored (uncompressed) ``.npy`` member of a zip, memory-mapped; ``None`` if it cannot be
    (compressed, or an object array: those are read, and refused, the usual way)."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with path.open("rb") as f:
        # the local header's name and extra lengths may differ from the central directory's
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"member {info.filename}: bad local header")
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
    if dtype.hasobject:
        return None
    mapped = np.memmap(
        path, dtype=dtype, mode="c", offset=offset, shape=shape, order="F" if fortran else "C"
    )
    return mapped.view(np.ndarray)


def csr_row_arrays(
    matrix: sp.csr_matrix, rows: NDArray[np.integer] | Sequence[int]
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    """The ``(data, indices, indptr)`` of ``matrix[rows]`` for a CSR matrix and non-negative
    row numbers (repeats allowed), by slicing its arrays: no matrix object is built.

    The same rows as scipy's fancy indexing, each row's entries in their stored order. A
    serving request gathers one or a few rows, where scipy's indexing cost about 90-140 µs a
    call (its checks and the new matrix) against 7 µs for the slices: scipy's overheads on
    one-row matrices were about a quarter of a 10^5-item live list's time.

    Parameters
    ----------
    matrix
        Any CSR matrix.
    rows
        Row numbers in ``[0, matrix.shape[0])``, in the order wanted.

    Returns
    -------
    data, indices, indptr
        Of ``matrix``'s dtypes; ``indptr`` has ``len(rows) + 1`` entries. For one row,
        ``data`` and ``indices`` are views of ``matrix``'s: copy them before writing.
    """
    rows = np.asarray(rows, dtype=np.intp)
    indptr = matrix.indptr
    if len(rows) == 1:  # a request's one customer: views, no gather
        r = int(rows[0])
        if not 0 <= r < matrix.shape[0]:
            raise IndexError(f"row {r} is not in [0, {matrix.shape[0]})")
        start, stop = int(indptr[r]), int(indptr[r + 1])
        return (
            matrix.data[start:stop],
            matrix.indices[start:stop],
            np.array([0, stop - start], dtype=indptr.dtype),
        )
    if len(rows) and (rows.min() < 0 or rows.max() >= matrix.shape[0]):
        raise IndexError(f"row numbers must lie in [0, {matrix.shape[0]})")
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    out_ptr = np.zeros(len(rows) + 1, dtype=indptr.dtype)
    np.cumsum(lengths, out=out_ptr[1:])
    # each kept entry's position in ``matrix``: its position in the output shifted by how far
    # its row moved
    pos = np.arange(int(out_ptr[-1]), dtype=np.intp) + np.repeat(
        (starts - out_ptr[:-1]).astype(np.intp, copy=False), lengths
    )
    return matrix.data[pos], matrix.indices[pos], out_ptr


def csr_rows(matrix: sp.csr_matrix, rows: NDArray[np.integer] | Sequence[int]) -> sp.csr_matrix:
    """``matrix[rows]``, a new matrix of copied rows, built from :func:`csr_row_arrays`
    (about half scipy's indexing time for a few rows: the rest is the new matrix's checks).
    ``matrix`` and ``rows`` as in :func:`csr_row_arrays`.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``len(rows) × matrix.shape[1]``, of ``matrix``'s dtype.
    """
    data, indices, indptr = csr_row_arrays(matrix, rows)
    # copies: scipy's in-place methods (sort_indices, eliminate_zeros) must not reach matrix
    return sp.csr_matrix(
        (data.copy(), indices.copy(), indptr), shape=(len(indptr) - 1, matrix.shape[1])
    )


def save_csr(path: Path, matrix: sp.csr_matrix) -> None:
    """Save a CSR matrix without pickle."""
    m = sp.csr_matrix(matrix)
    save_arrays(path, data=m.data, indices=m.indices, indptr=m.indptr, shape=np.array(m.shape))


def load_csr(path: Path) -> sp.csr_matrix:
    """Load a CSR matrix written by :func:`save_csr`."""
    a = load_arrays(path)
    try:
        return sp.csr_matrix((a["data"], a["indices"], a["indptr"]), shape=tuple(a["shape"]))
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a sparse matrix: {exc}") from None


def save_json(path: Path, data: Any) -> None:
    """Write JSON (UTF-8, sorted keys) for parameters and small state."""
    path.write_text(json.dumps(data, sort_keys=True, indent=1), encoding="utf-8")


def load_json(path: Path) -> Any:
    """Read JSON written by :func:`save_json`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read JSON: {exc}") from None
