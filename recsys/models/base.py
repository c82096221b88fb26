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
  nothing about (unknown index ``-1`` and an empty history): the caller falls back.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.errors import ArtifactError, NotFittedError

#: Index padding in :meth:`Recommender.recommend` results when fewer than ``k`` items scored.
NO_ITEM = -1


class Recommender(ABC):
    """Base class of every model."""

    #: Registry name (``"als"``, ``"ease"``...): how configs and manifests refer to the model.
    name: ClassVar[str]

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
        with fewer than ``k`` scored items are padded with :data:`NO_ITEM` and ``-inf``.
        """
        scores = self.score(users, history, now=now)
        return top_k(scores, k, exclude=exclude)

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
        import inspect

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


def top_k(
    scores: NDArray[np.floating], k: int, *, exclude: sp.csr_matrix | None = None
) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """Indices and values of the ``k`` largest scores per row (``NaN`` never chosen)."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    scores[np.isnan(scores)] = -np.inf
    if exclude is not None and exclude.nnz:
        coo = exclude.tocoo()
        scores[coo.row, coo.col] = -np.inf
    n, m = scores.shape
    k = max(0, min(k, m))
    if k == 0:
        return np.empty((n, 0), np.intp), np.empty((n, 0), np.float32)
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(m), (n, 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1).astype(np.intp)
    vals = np.take_along_axis(vals, order, axis=1)
    idx[~np.isfinite(vals)] = NO_ITEM
    vals[~np.isfinite(vals)] = -np.inf
    return idx, vals.astype(np.float32)


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
