"""Bayesian Personalised Ranking (Rendle et al. 2009) on implicit's CPU trainer.

BPR learns from which items a user interacted with, not how much. It has no closed-form
fold-in, so users unknown at training time get a ``NaN`` row and the caller falls back.
"""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.models.base import (
    BOOLEAN,
    COUNT,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    NONE,
    POSITIVE,
    SEED,
    Constraint,
)
from recsys.models.factors import FactorRecommender


class BPRModel(FactorRecommender):
    """Pairwise-ranking matrix factorisation.

    Parameters
    ----------
    factors
        Number of latent factors (implicit adds one column for the item bias).
    learning_rate
        SGD step size.
    regularization
        L2 penalty.
    iterations
        Training epochs.
    verify_negative_samples
        Re-draw a sampled negative the user actually interacted with (slower, better).
    random_state
        Seed (repeatable with one thread).
    num_threads
        Threads used while fitting; ``0`` means every core.

    Attributes
    ----------
    user_factors_, item_factors_ : numpy.ndarray
        float32 factors; scores are their dot products.
    """

    name: ClassVar[str] = "bpr"
    artifact_noun: ClassVar[str] = "a BPR model"
    parameter_constraints: ClassVar[dict[str, tuple[Constraint, ...]]] = {
        "factors": (COUNT,),
        "learning_rate": (POSITIVE,),  # 0 would leave the random start untouched
        "regularization": (NON_NEGATIVE,),
        "iterations": (COUNT,),
        "verify_negative_samples": (BOOLEAN,),
        "random_state": (SEED, NONE),
        "num_threads": (NON_NEGATIVE_INT,),  # 0 = every core
    }

    def __init__(
        self,
        *,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        verify_negative_samples: bool = True,
        random_state: int | None = 0,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.verify_negative_samples = verify_negative_samples
        self.random_state = random_state
        self.num_threads = num_threads

    @classmethod
    def contract_factory(cls) -> BPRModel:
        """A small configuration that fits the contract suite's tiny data."""
        return cls(factors=8, iterations=200, learning_rate=0.05, random_state=3)

    def fit(self, data: TrainingData) -> Self:
        """Train on which items each user interacted with; return ``self``.

        Raises
        ------
        InvalidParameterError
            For a constructor argument outside :attr:`parameter_constraints`.
        """
        self._validate_params()
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        positives = sp.csr_matrix(data.interactions, dtype=np.float32, copy=True)
        positives.data = (positives.data > 0).astype(np.float32)
        positives.eliminate_zeros()
        self._fit_implicit(
            lambda: BayesianPersonalizedRanking(
                factors=self.factors,
                learning_rate=self.learning_rate,
                regularization=self.regularization,
                iterations=self.iterations,
                verify_negative_samples=self.verify_negative_samples,
                random_state=self.random_state,
                num_threads=self.num_threads,
            ),
            positives,
        )
        return self

    def user_vectors(self, users: NDArray[np.intp], history: sp.csr_matrix) -> NDArray[np.float32]:
        """Learned factors of known users; ``NaN`` rows for users unknown at training time.

        ``history`` is not used: BPR cannot fold a user in, so live events only take effect at
        the next training run, and a known user keeps their learned factors whatever their
        live events; an approximate index built on ``item_factors_`` then ranks what
        :meth:`~FactorRecommender.score` ranks (the scores of the users with a vector, whose
        products :meth:`~FactorRecommender.score` alone computes). Parameters and result as in
        :meth:`FactorRecommender.user_vectors` (``dim`` includes implicit's item-bias column).
        """
        self._check_fitted("item_factors_")
        users = np.asarray(users, dtype=np.intp)
        known = self._known(users)
        out = np.full((len(users), self.item_factors_.shape[1]), np.nan, dtype=np.float32)
        out[known] = self.user_factors_[users[known]]
        return out

    def _known(self, users: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Which users have learned factors (an index of the training vocabulary)."""
        return (users >= 0) & (users < self.user_factors_.shape[0])
