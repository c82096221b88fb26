"""EASE: an item-item linear model with a closed-form solution (Steck, WWW 2019).

``B = I − P · diag(1 / diag(P))`` with ``P = (XᵀX + λI)⁻¹`` and ``diag(B) = 0``; a user's
scores are ``history · B``. The dense ``n_items × n_items`` inverse bounds the catalogue size
it can serve, so the model refuses catalogues above ``max_items`` instead of running out of
memory half-way. The default bound is 15,000 items, not memory's: the Cholesky inverse of the
scipy wheel's OpenBLAS (0.3.30, 32-bit indices) kills the process with a segmentation fault
from about 16,300 items (measured on 2026-11-30 on an identity-like 16,300 and 16,500 matrix, and
on Ta-Feng's 18,210-item catalogue; 15,000 ran without fault), and a refusal is a notice where
a crash takes every other model down with it.

The weights are :func:`recsys.models.kernels.ease_weights`, the same kernel the hybrid's EASE
generator calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.errors import ArtifactError, ModelTooLargeError
from recsys.models.base import (
    BOOLEAN,
    COUNT,
    POSITIVE,
    Constraint,
    Recommender,
    load_arrays,
    save_arrays,
)
from recsys.models.kernels import ease_weights


class EASEModel(Recommender):
    """Embarrassingly shallow autoencoder.

    Parameters
    ----------
    regularization
        The L2 penalty λ on the item-item weights (Steck's experiments use a few hundred).
    binary
        Fit and score on whether a user interacted with an item rather than the weight (EASE
        is defined on binary data; large purchase weights would dwarf λ).
    max_items
        Largest catalogue accepted; the dense inverse needs ``8 · n_items²`` bytes (see the
        module docstring for why the default stays below 16,000).

    Attributes
    ----------
    weights_ : numpy.ndarray
        The ``n_items × n_items`` float32 matrix ``B`` (zero diagonal).
    """

    name: ClassVar[str] = "ease"
    parameter_constraints: ClassVar[dict[str, tuple[Constraint, ...]]] = {
        # strictly positive: λ = 0 leaves XᵀX singular for any item bought with the same
        # customers as another, and the inverse fails after the whole Gram is built
        "regularization": (POSITIVE,),
        "binary": (BOOLEAN,),
        "max_items": (COUNT,),
    }

    def __init__(
        self, *, regularization: float = 500.0, binary: bool = True, max_items: int = 15_000
    ) -> None:
        self.regularization = regularization
        self.binary = binary
        self.max_items = max_items

    @classmethod
    def contract_factory(cls) -> EASEModel:
        """A small configuration that fits the contract suite's tiny data."""
        return cls(regularization=1.0)

    def fit(self, data: TrainingData) -> Self:
        """Solve for ``B``; return ``self``.

        Raises
        ------
        ModelTooLargeError
            When the catalogue has more than ``max_items`` items.
        ModelError
            When the data has no customer (guests only).
        InvalidParameterError
            For a constructor argument outside :attr:`parameter_constraints`.
        """
        self._validate_params()
        data.require_customers(self.name)
        n_items = data.n_items
        if n_items > self.max_items:
            gib = 8 * n_items**2 / 2**30
            raise ModelTooLargeError(
                f"ease: {n_items} items is more than max_items={self.max_items} "
                f"(the dense item-item inverse would need {gib:.1f} GiB); "
                "use als, or raise max_items (beyond about 16,000 items the inverse crashes "
                "with the scipy wheel's OpenBLAS)"
            )
        self.weights_ = ease_weights(
            data.interactions, regularization=self.regularization, binary=self.binary
        )
        return self

    def _prepare(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
        if self.binary:
            m.data = (m.data > 0).astype(np.float32)
        return m

    def score(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        *,
        now: int | None = None,
    ) -> NDArray[np.float32]:
        """``history · B``; a ``NaN`` row for an empty history (known user or not)."""
        self._check_fitted("weights_")
        x = self._prepare(history)
        scores = np.asarray(x @ self.weights_, dtype=np.float32)
        scores[np.diff(x.indptr) == 0] = np.nan
        return scores

    def save(self, directory: Path) -> None:
        """Write params (JSON) and ``B`` (``.npz``)."""
        directory = self._write_params(directory, "weights_")
        save_arrays(directory / "weights.npz", weights=self.weights_)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by :meth:`save`."""
        model = cls._from_params(directory, "an EASE model")
        arrays = load_arrays(Path(directory) / "weights.npz")
        try:
            model.weights_ = arrays["weights"].astype(np.float32, copy=False)
        except KeyError as exc:
            raise ArtifactError(f"{directory}: not an EASE model: {exc}") from None
        return model
