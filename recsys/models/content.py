"""Items without history: similarity of titles, categories and attributes (TF-IDF).

Every other model learns from what customers did, so an item nobody has bought or viewed yet
has no neighbours and no score. This one reads the catalogue instead: each item is a TF-IDF
vector (scikit-learn's ``CountVectorizer`` for the tokens, the inverse document frequencies
kept) of its title, attribute values and category path (each level of the path a token of its
own, so "Home > Kitchen" items share "Home" with "Home > Garden" items and more with each
other). It answers

* similar items, for any item, and for an item added after training (:meth:`ContentModel.
  transform` turns its text into a vector with the fitted vocabulary, no refit);
* a customer's scores: the cosine of each item with the customer's history profile (the sum of
  their items' vectors), so a new item can be recommended to those who bought its like.

Saved without pickle: the vocabulary (JSON), the idf weights and the item vectors (``.npz``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.errors import ArtifactError, ModelError
from recsys.models.base import (
    COUNT,
    Constraint,
    ItemSimilarity,
    Recommender,
    load_arrays,
    load_csr,
    load_json,
    save_arrays,
    save_csr,
    save_json,
)

#: Separator of category path levels (see :class:`recsys.data.schema.CatalogItem`).
CATEGORY_SEPARATOR = " > "
_NON_WORD = re.compile(r"\W+")


def item_text(title: str, category: str, attributes: Sequence[str] = ()) -> str:
    """The text an item is known by: title, attribute values and one token per category level
    (``"Home > Kitchen"`` gives ``cat_home`` and ``cat_home_kitchen``)."""
    levels = [p.strip() for p in category.split(CATEGORY_SEPARATOR) if p.strip()]
    tokens = []
    for depth in range(1, len(levels) + 1):
        path = "_".join(_NON_WORD.sub("_", lvl.lower()).strip("_") for lvl in levels[:depth])
        tokens.append(f"cat_{path}")
    return " ".join([title, *attributes, *tokens])


class ContentModel(Recommender, ItemSimilarity):
    """TF-IDF item vectors from the catalogue (see the module docstring).

    Parameters
    ----------
    max_features
        Largest vocabulary kept (most frequent terms).
    ngram_max
        Word n-grams up to this length (2: "tea cup" is a term as well as "tea" and "cup").
    min_df
        Terms in fewer items are dropped.
    """

    name: ClassVar[str] = "content"
    parameter_constraints: ClassVar[dict[str, tuple[Constraint, ...]]] = {
        "max_features": (COUNT,),
        "ngram_max": (COUNT,),
        # an integer: scikit-learn would read a float as a share of the items instead
        "min_df": (COUNT,),
    }

    vocabulary_: list[str]
    idf_: NDArray[np.float32]
    vectors_: sp.csr_matrix

    def __init__(self, *, max_features: int = 50_000, ngram_max: int = 2, min_df: int = 1) -> None:
        self.max_features = max_features
        self.ngram_max = ngram_max
        self.min_df = min_df

    def _counter(self, vocabulary: Sequence[str] | None = None) -> Any:
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(
            ngram_range=(1, self.ngram_max),
            min_df=1 if vocabulary is not None else self.min_df,
            max_features=None if vocabulary is not None else self.max_features,
            vocabulary=None if vocabulary is None else {t: j for j, t in enumerate(vocabulary)},
            dtype=np.float32,
        )

    def fit(self, data: TrainingData) -> Self:
        """Vectorise every item's text (``data.item_title``, ``data.item_category``).

        Raises
        ------
        InvalidParameterError
            For a constructor argument outside :attr:`parameter_constraints`.
        """
        self._validate_params()
        texts = [
            item_text(title, category)
            for title, category in zip(_titles(data), data.item_category, strict=True)
        ]
        if not any(t.strip() for t in texts):
            raise ModelError("content: the catalogue has no titles or categories to learn from")
        counter = self._counter()
        try:
            counts = counter.fit_transform(texts)
        except ValueError as exc:  # an empty vocabulary after min_df
            raise ModelError(f"content: {exc}") from None
        vocabulary = [""] * len(counter.vocabulary_)
        for term, j in counter.vocabulary_.items():
            vocabulary[j] = term
        df = np.bincount(counts.indices, minlength=len(vocabulary)).astype(np.float64)
        n = counts.shape[0]
        self.vocabulary_ = vocabulary
        self.idf_ = (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)  # scikit-learn's smooth idf
        self.vectors_ = self._weigh(counts)
        return self

    def _weigh(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """Sublinear tf × idf, each row scaled to unit length (empty rows stay empty)."""
        x = sp.csr_matrix(counts, dtype=np.float32)
        x.data = (1 + np.log(x.data)).astype(np.float32)
        x = sp.csr_matrix(x @ sp.diags(self.idf_))
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1 / norms) @ x, dtype=np.float32)

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Vectors of texts made by :func:`item_text` for items the model was not fitted on."""
        self._check_fitted("vectors_")
        return self._weigh(self._counter(self.vocabulary_).transform(list(texts)))

    def score(
        self, users: NDArray[np.intp], history: sp.csr_matrix, *, now: int | None = None
    ) -> NDArray[np.float32]:
        """Cosine of each item with the user's profile (their weighted items' vectors)."""
        self._check_fitted("vectors_")
        profile = sp.csr_matrix(history, dtype=np.float32) @ self.vectors_
        norms = np.sqrt(np.asarray(profile.multiply(profile).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        profile = sp.diags(1 / norms) @ profile
        scores = np.asarray((profile @ self.vectors_.T).todense(), dtype=np.float32)
        empty = np.asarray(history.getnnz(axis=1)).ravel() == 0
        scores[empty] = np.nan
        return scores

    def similar_items(
        self, items: NDArray[np.intp], k: int
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """The ``k`` items whose text is closest to each item's (itself excluded)."""
        self._check_fitted("vectors_")
        items = np.asarray(items, dtype=np.intp)
        sims = np.asarray((self.vectors_[items] @ self.vectors_.T).todense(), dtype=np.float32)
        sims[np.arange(len(items)), items] = -np.inf
        return _top(sims, k)

    def similar_to_vectors(
        self, vectors: sp.csr_matrix, k: int
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """The ``k`` items closest to each of ``vectors`` (from :meth:`transform`)."""
        self._check_fitted("vectors_")
        sims = np.asarray((vectors @ self.vectors_.T).todense(), dtype=np.float32)
        return _top(sims, k)

    def save(self, directory: Path) -> None:
        """Write params, vocabulary (JSON), idf and item vectors (``.npz``)."""
        directory = self._write_params(directory, "vectors_")
        save_json(directory / "vocabulary.json", self.vocabulary_)
        save_arrays(directory / "idf.npz", idf=self.idf_)
        save_csr(directory / "vectors.npz", self.vectors_)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by :meth:`save`."""
        directory = Path(directory)
        model = cls._from_params(directory, "a content model")
        vocabulary = load_json(directory / "vocabulary.json")
        if not isinstance(vocabulary, list):
            raise ArtifactError(f"{directory}/vocabulary.json: expected a list of terms")
        model.vocabulary_ = [str(t) for t in vocabulary]
        model.idf_ = load_arrays(directory / "idf.npz")["idf"].astype(np.float32)
        model.vectors_ = load_csr(directory / "vectors.npz")
        if model.vectors_.shape[1] != len(model.vocabulary_) != len(model.idf_):
            raise ArtifactError(f"{directory}: vectors, vocabulary and idf disagree in size")
        return model


def _titles(data: TrainingData) -> list[str]:
    titles = list(data.item_title)
    return titles if len(titles) == data.n_items else [""] * data.n_items


def _top(sims: NDArray[np.float32], k: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    n, m = sims.shape
    k = max(0, min(k, m))
    sims = np.where(sims > 0, sims, -np.inf).astype(np.float32)
    if k == 0:
        return np.full((n, 0), -1, np.intp), np.full((n, 0), -np.inf, np.float32)
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < m else np.tile(np.arange(m), (n, 1))
    vals = np.take_along_axis(sims, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1).astype(np.intp)
    vals = np.take_along_axis(vals, order, axis=1)
    idx[~np.isfinite(vals)] = -1
    return idx, vals
