"""Implicit-feedback matrix factorisation by alternating least squares (Hu, Koren, Volinsky 2008).

Fitting (implicit's CPU solver) and folding a user in (the closed-form least-squares solve
implicit's ``recalculate_user`` runs, so a customer's newest events change their
recommendations without retraining) are the kernels of :mod:`recsys.models.kernels`, which the
hybrid's ALS generator calls too.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.models.base import (
    COUNT,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    NONE,
    POSITIVE,
    SEED,
    Constraint,
    load_csr,
    save_csr,
)
from recsys.models.factors import FactorRecommender
from recsys.models.kernels import als_fit, als_fold_in, als_item_gram


class ALSModel(FactorRecommender):
    """Weighted matrix factorisation for implicit feedback.

    The confidence of an observed interaction is ``alpha * weight`` (the weights of
    ``TrainingData.interactions``); unobserved pairs have confidence 1 and preference 0.

    Parameters
    ----------
    factors
        Number of latent factors.
    regularization
        L2 penalty on the factors.
    alpha
        Scale from interaction weight to confidence. The default 0.1 makes one purchase
        (weight 10 under the default :class:`~recsys.data.interactions.InteractionConfig`)
        a confidence of about 1; on the UCI Online Retail hold-out (purchases from
        2011-11-09 held out) ``alpha=1`` gave recall@10 0.181 against 0.266 for 0.1.
    iterations
        Number of ALS sweeps.
    random_state
        Seed of the initial factors (fits are repeatable with the same seed).
    num_threads
        Threads implicit's solver uses while fitting; ``0`` (the default) means every core
        OpenMP is allowed (the training pipeline's ``threads``). The factors do not depend
        on it: the conjugate-gradient solver computes each user's (each item's) row on its
        own from a Gram matrix computed once per sweep. One thread was the default until the
        thirteenth session; with every core (and that session's fewer ranker pairs) a Ta-Feng
        run's fit stage took 22.9-25.6 s against 28.4-28.6 s on 2 cores (benchmarks/RESULTS.md,
        "Thirteenth and fourteenth sessions").
    warm_iterations
        ALS sweeps of a fit that starts from a previous version's factors
        (:meth:`~recsys.models.factors.FactorRecommender.warm_start`): they start near the
        answer, so a few sweeps refine them where a cold fit needs ``iterations``.

    Attributes
    ----------
    user_factors_ : numpy.ndarray
        ``n_users × factors`` float32.
    item_factors_ : numpy.ndarray
        ``n_items × factors`` float32.
    train_ : scipy.sparse.csr_matrix
        The training interactions; a history row equal to the user's training row is scored
        with the learned factors, any other non-empty row is folded in.
    """

    name: ClassVar[str] = "als"
    artifact_noun: ClassVar[str] = "an ALS model"
    parameter_constraints: ClassVar[dict[str, tuple[Constraint, ...]]] = {
        "factors": (COUNT,),
        "regularization": (NON_NEGATIVE,),
        # confidence is alpha · weight: at 0 every interaction would weigh nothing
        "alpha": (POSITIVE,),
        "iterations": (COUNT,),
        "random_state": (SEED, NONE),
        "num_threads": (NON_NEGATIVE_INT,),  # 0 = every core
        # new users and items of a warm start need at least one sweep to get factors
        "warm_iterations": (COUNT,),
    }
    _gram: NDArray[np.float64] | None = None

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 0.1,
        iterations: int = 15,
        random_state: int | None = 0,
        num_threads: int = 0,
        warm_iterations: int = 3,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.warm_iterations = warm_iterations

    @classmethod
    def contract_factory(cls) -> ALSModel:
        """A small configuration that fits the contract suite's tiny data."""
        return cls(factors=4, iterations=20, regularization=0.05, random_state=7)

    def fit(self, data: TrainingData) -> Self:
        """Factorise ``data.interactions``; return ``self``.

        Raises
        ------
        InvalidParameterError
            For a constructor argument outside :attr:`parameter_constraints`.
        """
        self._validate_params()
        train = sp.csr_matrix(data.interactions, dtype=np.float32)
        init = self._take_initial(train)
        self.user_factors_, self.item_factors_ = als_fit(
            train,
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.warm_iterations if init is not None else self.iterations,
            seed=self.random_state,
            threads=self.num_threads,
            init=init,
        )
        self.train_ = train
        self._gram = None
        return self

    # -- scoring -----------------------------------------------------------------------------

    def user_vectors(self, users: NDArray[np.intp], history: sp.csr_matrix) -> NDArray[np.float32]:
        """Latent factors of a batch of users (``NaN`` rows for users with nothing to go on).

        A known user whose history row is empty or equal to their training row gets their
        learned factors; an unknown user (``-1``) or a known user whose history differs is
        folded in from the history row (:meth:`fold_in`); an unknown user with an empty
        history gets a ``NaN`` row, and so a ``NaN`` row of scores. Parameters and result as
        in :meth:`FactorRecommender.user_vectors`.
        """
        self._check_fitted("item_factors_")
        history = sp.csr_matrix(history)
        n_users = self.user_factors_.shape[0]
        out = np.full((len(users), self.item_factors_.shape[1]), np.nan, dtype=np.float32)
        fold: list[int] = []
        for row, user in enumerate(users):
            start, end = history.indptr[row], history.indptr[row + 1]
            known = 0 <= user < n_users
            if known and (start == end or self._same_as_training(int(user), history, row)):
                out[row] = self.user_factors_[user]
            elif start != end:
                fold.append(row)
        if fold:
            # every row folded (a live request's one row): no scipy row indexing
            out[fold] = self.fold_in(history if len(fold) == len(users) else history[fold])
        return out

    def fold_in(self, rows: sp.csr_matrix) -> NDArray[np.float32]:
        """Least-squares user factors for history rows, holding the item factors fixed.

        Solves ``(YᵀY + λI + Σ (c−1) yᵢyᵢᵀ) x = Σ c yᵢ`` with ``c = alpha · weight``: the same
        system implicit's ``AlternatingLeastSquares.recalculate_user`` solves
        (:func:`~recsys.models.kernels.als_fold_in`), with ``YᵀY + λI`` computed once per model
        rather than per call.
        """
        self._check_fitted("item_factors_")
        return als_fold_in(rows, self.item_factors_, self._item_gram(), alpha=self.alpha)

    def warm_up(self) -> None:
        """The item Gram matrix of the fold-in (``items × factors²`` flops: 0.4 s at 10^5
        items), computed before the first live request rather than on it."""
        if getattr(self, "item_factors_", None) is not None:
            self._item_gram()

    def _item_gram(self) -> NDArray[np.float64]:
        if getattr(self, "_gram", None) is None:
            self._gram = als_item_gram(self.item_factors_, self.regularization)
        assert self._gram is not None
        return self._gram

    def _same_as_training(self, user: int, history: sp.csr_matrix, row: int) -> bool:
        t0, t1 = self.train_.indptr[user], self.train_.indptr[user + 1]
        h0, h1 = history.indptr[row], history.indptr[row + 1]
        if t1 - t0 != h1 - h0:
            return False
        t_order = np.argsort(self.train_.indices[t0:t1])
        h_order = np.argsort(history.indices[h0:h1])
        return bool(
            np.array_equal(self.train_.indices[t0:t1][t_order], history.indices[h0:h1][h_order])
            and np.allclose(
                self.train_.data[t0:t1][t_order], history.data[h0:h1][h_order], rtol=1e-5
            )
        )

    # -- persistence (params and factors.npz: see FactorRecommender) -------------------------

    def _save_state(self, directory: Path) -> None:
        save_csr(directory / "train.npz", self.train_)

    def _load_state(self, directory: Path) -> None:
        self.train_ = load_csr(directory / "train.npz")
        self._gram = None
