"""What the matrix-factorisation models (ALS, BPR) share.

Both learn ``user_factors_`` and ``item_factors_`` with one of implicit's CPU trainers and score
a user as ``user vector · item factors``. They differ only in where a user's vector comes from:
ALS folds a changed history in, BPR cannot and has vectors only for users it was trained on.
So a subclass supplies :meth:`FactorRecommender.user_vectors` (which also makes it a
:class:`recsys.retrieval.index.FactorModel`, so training builds an approximate top-k index for
it) and this class does the scoring, the fitting boilerplate and the ``factors.npz``
persistence.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.errors import ArtifactError, ModelError
from recsys.models.base import NO_ITEM, Recommender, load_arrays, save_arrays, top_k

#: File of a factor model's version folder holding ``user_factors`` and ``item_factors``.
FACTORS_FILE = "factors.npz"

#: Scores per block of users (``rows × n_items``, about 4 MiB of ``float32``): the product of
#: one block is ranked while it is in cache, and no ``users × items`` batch is held.
SCORE_BLOCK_ELEMENTS = 1 << 20
#: Fewest users per block, whatever the catalogue: each block reads every item factor once,
#: so a block of 2 users (4 MiB at 650k items) made the product memory-bound. Scoring 1,024
#: users at 650k items took 17.3 s in 2-user blocks against 3.4 s in 25-user ones
#: (``benchmarks/RESULTS.md``, "Twelfth session").
SCORE_BLOCK_MIN_ROWS = 32


class FactorRecommender(Recommender):
    """Base of models scored as dot products of learned user and item factors.

    Attributes
    ----------
    user_factors_ : numpy.ndarray
        ``n_users × dim`` float32.
    item_factors_ : numpy.ndarray
        ``n_items × dim`` float32.
    """

    #: How a load error names the model ("not an ALS model").
    artifact_noun: ClassVar[str]

    user_factors_: NDArray[np.float32]
    item_factors_: NDArray[np.float32]

    #: Factors the next fit starts from (set by :meth:`warm_start`; ``None``: random).
    _initial: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None

    def warm_start(
        self,
        previous: FactorRecommender,
        users: NDArray[np.intp],
        items: NDArray[np.intp],
        *,
        seed: int | None = 0,
    ) -> Self:
        """Start the next :meth:`fit` from ``previous``'s factors instead of random ones.

        Parameters
        ----------
        previous
            A fitted model of the same kind and dimension (the current version's).
        users, items
            For each user and item of the data the next fit will see, its index in
            ``previous`` (``-1``: new since then). A new one starts as implicit starts every
            factor (uniform in ``[0, 0.01)``), so it learns from its own rows like in a cold fit.
        seed
            Seed of the new users' and items' initial factors.

        Returns
        -------
        Self
            ``self``, for chaining with :meth:`fit`.

        Raises
        ------
        ModelError
            ``previous`` is not fitted or its factors do not have the dimension of this model.
        """
        old_users = getattr(previous, "user_factors_", None)
        old_items = getattr(previous, "item_factors_", None)
        if old_users is None or old_items is None:
            raise ModelError(f"{self.name}: cannot warm-start from a model that is not fitted")
        rng = np.random.default_rng(seed)
        self._initial = (
            mapped_rows(old_users, np.asarray(users, dtype=np.intp), rng),
            mapped_rows(old_items, np.asarray(items, dtype=np.intp), rng),
        )
        return self

    def _warm(self) -> bool:
        """Whether the next fit starts from :meth:`warm_start`'s factors."""
        return self._initial is not None

    @abstractmethod
    def user_vectors(self, users: NDArray[np.intp], history: sp.csr_matrix) -> NDArray[np.float32]:
        """Latent factors of a batch of users (``NaN`` rows for users with nothing to go on).

        Parameters
        ----------
        users
            User indices, ``-1`` for unknown users.
        history
            ``len(users) × n_items`` history rows.

        Returns
        -------
        numpy.ndarray
            ``len(users) × dim`` float32.
        """

    def score(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        *,
        now: int | None = None,
    ) -> NDArray[np.float32]:
        """``user_vectors · item_factorsᵀ``; a ``NaN`` row where a user has no vector."""
        self._check_fitted("item_factors_")
        vectors = self.user_vectors(np.asarray(users, dtype=np.intp), history)
        out = np.empty((len(vectors), self.item_factors_.shape[0]), dtype=np.float32)
        for lo, hi, block in self._score_blocks(vectors):
            out[lo:hi] = block
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
        """Each block of users' scores, ranked for every list while it is in cache.

        The same products as :meth:`score` (:meth:`_score_blocks`), so the lists equal
        :func:`~recsys.models.base.top_k` of :meth:`score`'s rows bit for bit; only one block
        of ``users × items`` scores exists at a time (see :meth:`Recommender.recommend_lists`).
        """
        self._check_fitted("item_factors_")
        vectors = self.user_vectors(np.asarray(users, dtype=np.intp), history)
        width = max(0, min(k, self.item_factors_.shape[0]))
        lists = [
            (
                np.full((len(vectors), width), NO_ITEM, dtype=np.intp),
                np.full((len(vectors), width), -np.inf, dtype=np.float32),
            )
            for _ in excludes
        ]
        for lo, hi, block in self._score_blocks(vectors):
            for (items, values), exclude in zip(lists, excludes, strict=True):
                rows = None if exclude is None else sp.csr_matrix(exclude)[lo:hi]
                items[lo:hi], values[lo:hi] = top_k(block, k, exclude=rows)
        return lists

    def _score_blocks(
        self, vectors: NDArray[np.float32]
    ) -> Iterator[tuple[int, int, NDArray[np.float32]]]:
        """``(lo, hi, scores of vectors[lo:hi])`` block by block (:data:`SCORE_BLOCK_ELEMENTS`).

        :meth:`score` and :meth:`recommend_lists` both score through here: a BLAS product's
        last bit can depend on the shape it is computed in (a one-row product is a
        matrix-vector call), so the two must multiply the same blocks to rank the same. Only
        rows with a vector are multiplied; the others are ``NaN``.
        """
        n_items = self.item_factors_.shape[0]
        step = max(SCORE_BLOCK_MIN_ROWS, SCORE_BLOCK_ELEMENTS // max(n_items, 1))
        has_vector = ~np.isnan(vectors[:, 0]) if vectors.shape[1] else np.zeros(len(vectors), bool)
        for lo in range(0, len(vectors), step):
            hi = min(lo + step, len(vectors))
            block = np.full((hi - lo, n_items), np.nan, dtype=np.float32)
            known = has_vector[lo:hi]
            if known.any():
                block[known] = vectors[lo:hi][known] @ self.item_factors_.T
            yield lo, hi, block

    def _fit_implicit(self, make: Callable[[], Any], matrix: sp.csr_matrix) -> None:
        """Fit the implicit estimator ``make()`` builds on ``matrix`` and keep its factors.

        implicit runs its own thread pool; a multi-threaded BLAS under it oversubscribes the
        cores (implicit warns that fitting can get ~10x slower). Limiting BLAS to one thread
        around construction (where implicit checks and warns) and fit avoids both.
        """
        from threadpoolctl import threadpool_limits

        init = self._take_initial(matrix)
        with threadpool_limits(1, "blas"):
            model = make()
            if init is not None:
                # implicit starts from whatever factors it finds (random only when unset);
                # its BPR keeps a bias column, so the saved width is the one it expects
                model.user_factors, model.item_factors = init[0].copy(), init[1].copy()
            model.fit(matrix, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def _take_initial(
        self, matrix: sp.csr_matrix
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]] | None:
        """The factors :meth:`warm_start` left for this fit (``None``: a cold fit), checked
        against ``matrix``; one fit uses them, a refit without ``warm_start`` is cold again.

        Raises
        ------
        ModelError
            The matrix has no users (guests only), or the warm-start factors do not fit it.
        """
        if matrix.shape[0] == 0:
            raise ModelError(
                f"{self.name}: needs customers, and the training data has none (guests only)"
            )
        init, self._initial = self._initial, None
        if init is not None:
            user_init, item_init = init
            if (user_init.shape[0], item_init.shape[0]) != matrix.shape or (
                user_init.shape[1] != item_init.shape[1]
            ):
                raise ModelError(
                    f"{self.name}: warm-start factors {user_init.shape} and "
                    f"{item_init.shape} do not fit the data {matrix.shape}"
                )
        return init

    # -- persistence -------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write params (JSON) and factors (``factors.npz``), then any subclass state."""
        directory = self._write_params(directory, "item_factors_")
        save_arrays(
            directory / FACTORS_FILE,
            user_factors=self.user_factors_,
            item_factors=self.item_factors_,
        )
        self._save_state(directory)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by :meth:`save`."""
        model = cls._from_params(directory, cls.artifact_noun)
        arrays = load_arrays(Path(directory) / FACTORS_FILE)
        try:
            model.user_factors_ = arrays["user_factors"].astype(np.float32, copy=False)
            model.item_factors_ = arrays["item_factors"].astype(np.float32, copy=False)
        except KeyError as exc:
            raise ArtifactError(f"{directory}: not {cls.artifact_noun}: {exc}") from None
        model._load_state(Path(directory))
        return model

    def _save_state(self, directory: Path) -> None:
        """Write what a subclass keeps besides the factors (nothing by default)."""

    def _load_state(self, directory: Path) -> None:
        """Read what :meth:`_save_state` wrote (nothing by default)."""


def mapped_rows(
    old: NDArray[np.float32], index: NDArray[np.intp], rng: np.random.Generator
) -> NDArray[np.float32]:
    """Rows of ``old`` at ``index``; where ``index`` is ``-1`` (or beyond ``old``), the
    uniform ``[0, 0.01)`` start implicit gives every factor of a cold fit.

    Parameters
    ----------
    old
        A previous fit's factors, one row per user or item.
    index
        For each row of the result, its row in ``old`` (``-1``: new since then).
    rng
        Draws the new rows' factors.

    Returns
    -------
    numpy.ndarray
        ``len(index) × old.shape[1]`` float32 factors.
    """
    out = (rng.random((len(index), old.shape[1]), dtype=np.float32) * 0.01).astype(np.float32)
    known = (index >= 0) & (index < old.shape[0])
    out[known] = old[index[known]]
    return out
