"""EASE: an item-item linear model with a closed-form solution (Steck, WWW 2019).

``B = I − P · diag(1 / diag(P))`` with ``P = (XᵀX + λI)⁻¹`` and ``diag(B) = 0``; a user's
scores are ``history · B``. The dense ``n_items × n_items`` inverse bounds the catalogue size
it can serve, so the model refuses catalogues above ``max_items`` instead of running out of
memory half-way. The default bound is 15,000 items, not memory's: the Cholesky inverse of the
scipy wheel's OpenBLAS (0.3.30, 32-bit indices) kills the process with a segmentation fault
from about 16,300 items (measured on 2026-11-30 on an identity-like 16,300 and 16,500 matrix, and
on Ta-Feng's 18,210-item catalogue; 15,000 ran without fault), and a refusal is a notice where
a crash takes every other model down with it.

The weights are :func:`recsys.models.kernels.ease_solution`, the same kernel the hybrid's EASE
generator calls. A warm start (:meth:`EASEModel.warm_start`) corrects the current version's
solution for the rows that changed since (:func:`recsys.models.kernels.ease_update`) instead of
solving again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.errors import ArtifactError, ModelError, ModelTooLargeError
from recsys.models.base import (
    BOOLEAN,
    COUNT,
    POSITIVE,
    Constraint,
    Recommender,
    load_arrays,
    save_arrays,
)
from recsys.models.kernels import EaseStart, ease_input_rows, ease_solve_from


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
    diagonal_ : numpy.ndarray or None
        ``diag(P)``, which with ``B`` gives ``P`` back for a warm start (``None``: a version
        written before it was kept).
    rows_ : scipy.sparse.csr_matrix or None
        The input rows the weights were solved from
        (:func:`~recsys.models.kernels.ease_input_rows`): a warm start finds from them which
        rows changed since (``None``: a version written before they were kept).
    warm_note_ : str or None
        After a warm-started fit, whether the weights were corrected or solved in full, and
        why (``None`` after a cold fit).
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

    #: What :meth:`warm_start` set for the next :meth:`fit`.
    _start: EaseStart | None = None
    diagonal_: NDArray[np.float64] | None = None
    rows_: sp.csr_matrix | None = None
    warm_note_: str | None = None

    def warm_start(self, previous: EASEModel, items: NDArray[np.intp]) -> Self:
        """Make the next :meth:`fit` correct ``previous``'s solution for the rows that changed
        since, instead of solving again (:func:`~recsys.models.kernels.ease_update`; it solves
        in full when the correction fails its check or would not pay).

        Parameters
        ----------
        previous
            The current version's model.
        items
            For each item of the data the next fit will see, its index in ``previous``
            (``-1``: new since then).

        Returns
        -------
        Self

        Raises
        ------
        ModelError
            ``previous`` has another ridge or input, or kept no ``diag(P)`` or input rows (a
            version from before they were kept).
        """
        if getattr(previous, "weights_", None) is None:
            raise ModelError("ease: the previous model is not fitted")
        if previous.diagonal_ is None or previous.rows_ is None:
            raise ModelError("ease: the previous version kept no diag(P) and rows to start from")
        if (previous.regularization, previous.binary) != (self.regularization, self.binary):
            raise ModelError("ease: the previous version has another regularization or input")
        self._start = EaseStart(
            previous.weights_, previous.diagonal_, np.asarray(items, np.intp), previous.rows_
        )
        return self

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
        start, self._start = self._start, None
        self.weights_, self.diagonal_, self.warm_note_ = ease_solve_from(
            data.interactions,
            regularization=self.regularization,
            binary=self.binary,
            start=start,
        )
        self.rows_ = ease_input_rows(data.interactions, self.binary)
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
        kept: dict[str, NDArray[Any]] = {}
        if self.diagonal_ is not None:
            kept["diagonal"] = self.diagonal_
        if self.rows_ is not None:
            # the pattern when binary (its values are all 1)
            kept["rows_indptr"], kept["rows_indices"] = self.rows_.indptr, self.rows_.indices
            kept["rows_shape"] = np.asarray(self.rows_.shape, dtype=np.int64)
            if not self.binary:
                kept["rows_data"] = self.rows_.data
        save_arrays(directory / "weights.npz", weights=self.weights_, **kept)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by :meth:`save`."""
        model = cls._from_params(directory, "an EASE model")
        arrays = load_arrays(Path(directory) / "weights.npz")
        try:
            # C order: scipy's sparse product copies a Fortran-ordered one per call (an
            # earlier release wrote it so; see kernels._ease_solve)
            model.weights_ = np.ascontiguousarray(arrays["weights"], dtype=np.float32)
            model.diagonal_ = arrays.get("diagonal")  # None: written before it was kept
            if "rows_indptr" in arrays:
                indices = arrays["rows_indices"]
                data = arrays.get("rows_data", np.ones(len(indices), dtype=np.float32))
                model.rows_ = sp.csr_matrix(
                    (data, indices, arrays["rows_indptr"]), shape=tuple(arrays["rows_shape"])
                )
        except KeyError as exc:
            raise ArtifactError(f"{directory}: not an EASE model: {exc}") from None
        return model
