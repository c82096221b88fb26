"""Baselines a real model has to beat.

:class:`RepeatModel` ("repeat") recommends what the customer already buys: on retail data
where most purchases are re-orders, this one-line idea beats every learned model on recall of
all items (see ``/work/shared/data/README.md``), so every evaluation should include it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.errors import ArtifactError, RecsysError
from recsys.models.base import (
    NONE,
    Constraint,
    InvalidParameterError,
    Recommender,
    load_csr,
    save_csr,
)


class _FallbackName(Constraint):
    """The registry name of any model but ``repeat`` (which would fall back on itself)."""

    def accepts(self, value: object) -> bool:
        """Whether ``value`` names a registered model other than ``repeat``."""
        return isinstance(value, str) and value in _fallback_names()

    def describe(self) -> str:
        """``"one of 'als', 'bpr', ..."``."""
        return "one of " + ", ".join(repr(n) for n in _fallback_names())


def _fallback_names() -> list[str]:
    # the registry imports this module: look it up when asked, not at import time
    from recsys.models import MODELS

    return sorted(n for n in MODELS if n != RepeatModel.name)


class _ParamTable(Constraint):
    """A table of constructor arguments (string keys; the values are the fallback's to check)."""

    def accepts(self, value: object) -> bool:
        """Whether ``value`` is a mapping with string keys."""
        return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)

    def describe(self) -> str:
        """``"a table of parameters"``."""
        return "a table of the fallback model's parameters"


class RepeatModel(Recommender):
    """The customer's own purchases, most-ordered first; a fallback model breaks ties and fills.

    An item's score is ``orders + tie`` where ``orders`` is the number of distinct orders the
    customer bought it in (:attr:`TrainingData.purchase_counts`, net of returns) and ``tie`` in
    ``[0, 1)`` is the item's rank under the fallback model, scaled. Any item bought at least
    once therefore outranks every item never bought, items bought equally often are ordered by
    the fallback, and the rest of the list is the fallback's own ranking.

    Parameters
    ----------
    fallback
        Registry name of the model that breaks ties and fills the list (not ``"repeat"``).
    fallback_params
        Constructor arguments of the fallback; ``None`` uses its defaults (EASE's default is
        λ = 500).

    Attributes
    ----------
    purchase_counts_ : scipy.sparse.csr_matrix
        ``users × items`` distinct-order counts from the training data.
    fallback_ : Recommender
        The fitted fallback model.

    Notes
    -----
    Repeat counts come from the training data: a user unknown to it (index ``-1``) gets the
    fallback's list only, and a purchase newer than training counts once the model is refitted.
    """

    name: ClassVar[str] = "repeat"
    parameter_constraints: ClassVar[dict[str, tuple[Constraint, ...]]] = {
        "fallback": (_FallbackName(),),
        "fallback_params": (_ParamTable(), NONE),
    }

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        """Check ``fallback`` and ``fallback_params``, then the fallback's own parameters.

        The fallback's arguments are checked by the fallback class (the default ``ease`` when
        ``fallback`` is not given), a name it does not take included, and an error names them
        under ``fallback_params`` (``fallback_params.regularization``).

        Parameters
        ----------
        params
            Some or all of the constructor's arguments.

        Raises
        ------
        InvalidParameterError
            For the first value that is not allowed.
        """
        super().check_params(params)
        fallback_params = params.get("fallback_params")
        if not fallback_params:
            return
        from recsys.models import MODELS

        default = inspect.signature(cls).parameters["fallback"].default
        fallback_cls = MODELS[params.get("fallback", default)]
        accepted = inspect.signature(fallback_cls).parameters
        for key, value in fallback_params.items():
            if key not in accepted:
                raise InvalidParameterError(
                    cls.name,
                    f"fallback_params.{key}",
                    value,
                    f"not a parameter of {fallback_cls.name} "
                    f"(its parameters: {', '.join(sorted(accepted)) or 'none'})",
                )
        try:
            fallback_cls.check_params(fallback_params)
        except InvalidParameterError as exc:
            raise InvalidParameterError(
                cls.name, f"fallback_params.{exc.param}", exc.value, exc.allowed
            ) from None

    def __init__(self, *, fallback: str = "ease", fallback_params: dict[str, Any] | None = None):
        self.fallback = fallback
        self.fallback_params = fallback_params

    @classmethod
    def contract_factory(cls) -> RepeatModel:
        """A small configuration that fits the contract suite's tiny data."""
        return cls(fallback="ease", fallback_params={"regularization": 1.0})

    def _make_fallback(self) -> Recommender:
        """The unfitted fallback (its name and arguments were checked by :meth:`check_params`)."""
        from recsys.models import model_class

        return model_class(self.fallback)(**(self.fallback_params or {}))

    def fit(self, data: TrainingData) -> Self:
        """Keep the purchase counts and fit the fallback; return ``self``.

        Raises
        ------
        InvalidParameterError
            For an argument outside :attr:`parameter_constraints`, the fallback's included.
        """
        self._validate_params()
        data.require_customers(self.name)
        fallback = self._make_fallback().fit(data)
        counts = sp.csr_matrix(data.purchase_counts, dtype=np.float32, copy=True)
        counts.data = np.maximum(counts.data, 0.0)  # net of returns; never below zero
        counts.eliminate_zeros()
        self.purchase_counts_ = counts
        self.fallback_ = fallback
        return self

    def score(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        *,
        now: int | None = None,
    ) -> NDArray[np.float32]:
        """Order counts plus the fallback's scaled rank; ``NaN`` where neither has a score."""
        self._check_fitted("purchase_counts_", "fallback_")
        users = np.asarray(users, dtype=np.intp)
        base = np.asarray(self.fallback_.score(users, history, now=now), dtype=np.float64)
        missing = np.isnan(base)
        n_items = base.shape[1]
        # rank 0 = the fallback's worst item; NaN ranks lowest and then counts for nothing
        ranks = np.argsort(np.argsort(np.where(missing, -np.inf, base), axis=1, kind="stable"))
        tie = np.where(missing, 0.0, ranks / max(n_items, 1))
        counts = np.zeros_like(base)
        known = np.flatnonzero(users >= 0)
        if known.size:
            counts[known] = self.purchase_counts_[users[known]].toarray()
        scores = counts + tie
        scores[missing & (counts == 0)] = np.nan
        return scores.astype(np.float32)

    def save(self, directory: Path) -> None:
        """Write params (JSON), the counts (``.npz``) and the fallback (``fallback/``)."""
        directory = self._write_params(directory, "purchase_counts_", "fallback_")
        save_csr(directory / "purchase_counts.npz", self.purchase_counts_)
        self.fallback_.save(directory / "fallback")

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by :meth:`save`."""
        from recsys.models import model_class

        directory = Path(directory)
        model = cls._from_params(directory, "a repeat model")
        try:
            fallback_cls = model_class(model.fallback)
        except RecsysError as exc:
            raise ArtifactError(f"{directory}: not a repeat model: {exc}") from None
        model.purchase_counts_ = load_csr(directory / "purchase_counts.npz")
        model.fallback_ = fallback_cls.load(directory / "fallback")
        return model
