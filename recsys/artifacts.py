"""The on-disk format of one model version: its files, their writer, their reader.

Training writes a version with :func:`write_version` (and :meth:`Precomputed.save`); the engine
reads it with :func:`read_version` and :class:`Manifest`. No other module names a version's
files, so the writer and the reader cannot drift apart. The registry (:mod:`recsys.registry`)
hashes whatever this module wrote and checks it before anything is read::

    manifest.json                 Manifest (written by the registry at publish: files, sizes)
    users.npz, items.npz          the vocabularies as arrays (Vocabulary.to_arrays)
    catalog.npz                   the catalogue as trained, one array per field (CatalogTable)
    users.json, items.json        the vocabularies again, ids in index order, and
    catalog.json                  the catalogue as records: what versions trained before
                                  the arrays hold, and what older servers and tools read
    history.npz, purchases.npz    users x items weighted history and purchase counts (CSR)
    models/<name>/                one folder per model, written by the model's own ``save``
    precomputed/                  the default model's top lists (Precomputed)
    index/<name>.usearch          approximate top-k index of a factor model (manifest ``ann``;
                                  ``.faiss`` in versions trained before; memory-mapped)

Large arrays are ``.npy``/``.npz`` read with ``allow_pickle=False``; the precomputed lists are
memory-mapped, so server workers share their pages.

The reader takes the vocabularies and the catalogue from the ``.npz`` files when the version
has them and from the JSON files otherwise (versions trained before the arrays existed). The
arrays' large members are memory-mapped (:func:`~recsys.models.base.load_arrays`), so at 10^6
items no worker holds 10^6 Python id strings or parses 10^6 JSON records: measured with 2
server workers in ``benchmarks/bench_memory.py``. Both forms are written, from the same
objects, so that a server or tool of an older release still reads a new version.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, overload

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recsys.data.columns import CatalogTable, StringColumn
from recsys.data.schema import to_micros
from recsys.data.vocab import Vocabulary
from recsys.errors import ArtifactError
from recsys.models.base import Recommender, load_arrays, load_csr, save_arrays, save_csr, save_json

USERS = "users.json"
ITEMS = "items.json"
CATALOG = "catalog.json"
USERS_ARRAYS = "users.npz"
ITEMS_ARRAYS = "items.npz"
CATALOG_ARRAYS = "catalog.npz"
HISTORY = "history.npz"
PURCHASES = "purchases.npz"
MODELS_DIR = "models"
PRECOMPUTED_DIR = "precomputed"
#: The stored lists' reason combinations, packed text (:class:`ReasonTable`).
REASON_TEXT = "reason_text.npz"
#: Manifest key: the store generation a version's catalogue was read at, and the store's id
#: (``{"generation": int, "store": str}``; see :meth:`recsys.engine.Engine.catalog_read_at`).
CATALOG_READ_KEY = "catalog_read"
INDEX_DIR = "index"


class ModelSpec(BaseModel):
    """A model of the version: its registry name (``model``, or a dotted ``class``)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    class_: str | None = Field(default=None, alias="class")

    def class_name(self, name: str) -> str:
        """The name to load the model class by (the table name when neither is given)."""
        return self.model or self.class_ or name


class AnnSpec(BaseModel):
    """An approximate index of a factor model: its file (relative to the version)."""

    model_config = ConfigDict(extra="allow")

    file: str
    params: dict[str, Any] = Field(default_factory=dict)
    #: The index's answers kept for known customers (:class:`~recsys.retrieval.index.KeptAnswers`):
    #: ``file`` relative to the version, ``users``, ``k``; absent in versions before them.
    answers: dict[str, Any] | None = None


class Manifest(BaseModel):
    """What the engine reads of a version's manifest (other keys are kept, not checked)."""

    model_config = ConfigDict(extra="allow")

    version: str
    default_model: str = ""
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    interaction_config: dict[str, Any] | None = None
    interactions: dict[str, Any] | None = None
    as_of: int | str | None = None
    events_seq: int | None = None
    """The store's newest event ``seq`` when training read it: events stored after it are
    ones the version did not see, whatever their time (``None``: a version that does not
    say, e.g. trained from an export; then only events after ``as_of`` are new to it)."""
    ann: dict[str, AnnSpec] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def parse(cls, data: Mapping[str, Any], version: str) -> Manifest:
        """Validate a manifest read by the registry; :class:`ArtifactError` names the key."""
        try:
            return cls.model_validate({"version": version, **dict(data)})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ArtifactError(
                f"model version {version}: manifest {where}: {first['msg']}"
            ) from None

    def as_of_micros(self) -> int:
        """``as_of`` in microseconds (it is stored as ISO 8601 with an offset, or a number)."""
        value = self.as_of
        if value is None:
            return 0
        if isinstance(value, int):
            return value
        ts = datetime.fromisoformat(value)
        if ts.tzinfo is None:
            raise ArtifactError(f"model version {self.version}: as_of {value!r} has no offset")
        return to_micros(ts)

    def interaction_settings(self) -> dict[str, Any]:
        """The interaction weighting training used (older manifests: ``interactions``)."""
        return self.interaction_config or self.interactions or {}


@dataclass(frozen=True)
class VersionData:
    """The arrays and vocabularies of a version (its models are loaded separately)."""

    users: Vocabulary
    items: Vocabulary
    #: a :class:`~recsys.data.columns.CatalogTable` (its records decoded one at a time), or
    #: the JSON list of a version trained before it
    catalog: Sequence[Mapping[str, Any]]
    history: sp.csr_matrix
    purchases: sp.csr_matrix


def write_version(
    folder: Path,
    *,
    users: Vocabulary,
    items: Vocabulary,
    catalog: Sequence[Mapping[str, Any]],
    history: sp.spmatrix,
    purchases: sp.spmatrix,
    models: Mapping[str, Recommender],
) -> None:
    """Write a version's data files and each model's folder into ``folder``."""
    save_arrays(folder / USERS_ARRAYS, **users.to_arrays())
    save_arrays(folder / ITEMS_ARRAYS, **items.to_arrays())
    table = CatalogTable.from_records(items, catalog)
    save_arrays(folder / CATALOG_ARRAYS, **table.to_arrays())
    save_json(folder / USERS, users.to_json())
    save_json(folder / ITEMS, items.to_json())
    save_json(folder / CATALOG, [dict(r) for r in catalog])
    save_csr(folder / HISTORY, history)
    save_csr(folder / PURCHASES, purchases)
    for name, model in models.items():
        target = model_folder(folder, name)
        target.mkdir(parents=True)
        model.save(target)


def read_version(folder: Path) -> VersionData:
    """Read what :func:`write_version` wrote, checking shapes (:class:`ArtifactError`).

    The vocabularies and the catalogue come from the ``.npz`` files, memory-mapped, when the
    version has them, and from its JSON files otherwise (a version trained before them).
    """
    users = _read_vocabulary(folder, USERS_ARRAYS, USERS)
    items = _read_vocabulary(folder, ITEMS_ARRAYS, ITEMS)
    catalog: Sequence[Mapping[str, Any]]
    if (folder / CATALOG_ARRAYS).is_file():
        try:
            catalog = CatalogTable.from_arrays(items, load_arrays(folder / CATALOG_ARRAYS))
        except ValueError as exc:
            raise ArtifactError(f"{folder / CATALOG_ARRAYS}: {exc}") from None
    else:
        catalog = _read_json(folder / CATALOG)
        if not isinstance(catalog, list):
            raise ArtifactError(f"{folder / CATALOG}: expected a list")
    history = load_csr(folder / HISTORY)
    purchases = load_csr(folder / PURCHASES)
    expected = (len(users), len(items))
    for name, matrix in ((HISTORY, history), (PURCHASES, purchases)):
        if matrix.shape != expected:
            raise ArtifactError(
                f"model version {folder.name}: {name} has shape {matrix.shape}, "
                f"expected {expected} (users × items)"
            )
    return VersionData(users, items, catalog, history, purchases)


def knows_user(folder: Path, user_id: str) -> bool:
    """Whether the version in ``folder`` learned anything of ``user_id`` (its vocabulary
    holds them)."""
    return user_id in _read_vocabulary(folder, USERS_ARRAYS, USERS)


def _read_vocabulary(folder: Path, arrays_name: str, json_name: str) -> Vocabulary:
    """A vocabulary from its ``.npz`` (memory-mapped) when written, else from its JSON."""
    if not (folder / arrays_name).is_file():
        try:
            return Vocabulary.from_json(_read_json(folder / json_name))
        except ValueError as exc:
            raise ArtifactError(f"{folder / json_name}: {exc}") from None
    try:
        return Vocabulary.from_arrays(load_arrays(folder / arrays_name))
    except ValueError as exc:
        raise ArtifactError(f"{folder / arrays_name}: {exc}") from None


def model_folder(folder: Path, name: str) -> Path:
    """Where the model ``name`` of a version lies."""
    return folder / MODELS_DIR / name


class ReasonTable(Sequence[tuple[str, ...]]):
    """The distinct reason combinations of a version's stored lists, each decoded when asked
    for (JSON text per combination, packed as UTF-8 with offsets and memory-mapped).

    At 10^6 items a hybrid version had 83,377 of them (an item id in many): 29 MiB as Python
    tuples in every worker, for the few a request names. The ``_CACHED`` combinations asked
    for most recently are kept decoded.
    """

    _CACHED = 8192

    def __init__(self, column: StringColumn) -> None:
        self._column = column
        self._decoded = functools.lru_cache(maxsize=self._CACHED)(self._decode)

    def _decode(self, index: int) -> tuple[str, ...]:
        return tuple(str(x) for x in json.loads(self._column[index]))

    @classmethod
    def of(cls, reasons: Sequence[Sequence[str]]) -> ReasonTable:
        """A table of ``reasons`` (one combination each)."""
        if isinstance(reasons, ReasonTable):
            return reasons
        return cls(StringColumn.from_strings([json.dumps(list(r)) for r in reasons]))

    def __len__(self) -> int:
        return len(self._column)

    @overload
    def __getitem__(self, index: int) -> tuple[str, ...]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, ...]]: ...

    def __getitem__(self, index: int | slice) -> tuple[str, ...] | Sequence[tuple[str, ...]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"reason combination {index} of {n}")
        return self._decoded(index % n)

    @property
    def column(self) -> StringColumn:
        """The packed text (what :meth:`Precomputed.save` writes)."""
        return self._column


@dataclass(frozen=True)
class Precomputed:
    """The default model's top ``depth`` items per known user, computed when it was trained.

    ``items`` (int32, ``-1`` pads) and ``scores`` (float32) are ``users × depth``;
    ``reason_codes`` (int32, same shape) index ``reasons`` when the model explains its choices.
    A warm-started version may carry the previous version's rows of the customers with no
    event since it (the manifest's ``precomputed.carried``): those are the list the model it
    continued gave them. The arrays are ``.npy`` files opened memory-mapped, so server
    workers share their pages.
    """

    model: str
    items: NDArray[np.int32]
    scores: NDArray[np.float32]
    reason_codes: NDArray[np.int32] | None
    reasons: Sequence[tuple[str, ...]]

    @property
    def depth(self) -> int:
        """Items stored per user."""
        return int(self.items.shape[1])

    def save(self, version_folder: Path) -> None:
        """Write ``meta.json`` and the ``.npy`` arrays into the version's precomputed folder."""
        folder = version_folder / PRECOMPUTED_DIR
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "items.npy", np.ascontiguousarray(self.items, dtype=np.int32))
        np.save(folder / "scores.npy", np.ascontiguousarray(self.scores, dtype=np.float32))
        if self.reason_codes is not None:
            np.save(folder / "reasons.npy", np.ascontiguousarray(self.reason_codes, np.int32))
        # the combinations as packed text, memory-mapped by every worker (a JSON list was
        # decoded into each worker's memory)
        save_arrays(folder / REASON_TEXT, **ReasonTable.of(self.reasons).column.to_arrays("r"))
        meta = {"model": self.model, "depth": self.depth, "reason_count": len(self.reasons)}
        (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, version_folder: Path) -> Precomputed | None:
        """Open a version's lists memory-mapped; ``None`` when the version has none."""
        folder = version_folder / PRECOMPUTED_DIR
        if not (folder / "meta.json").is_file():
            return None
        meta = _read_json(folder / "meta.json")
        try:
            items = np.load(folder / "items.npy", mmap_mode="r", allow_pickle=False)
            scores = np.load(folder / "scores.npy", mmap_mode="r", allow_pickle=False)
            codes = None
            if (folder / "reasons.npy").is_file():
                codes = np.load(folder / "reasons.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{folder}: cannot read the precomputed lists: {exc}") from None
        reasons: Sequence[tuple[str, ...]]
        if (folder / REASON_TEXT).is_file():
            try:
                reasons = ReasonTable(
                    StringColumn.from_arrays(load_arrays(folder / REASON_TEXT), "r")
                )
            except ValueError as exc:
                raise ArtifactError(f"{folder / REASON_TEXT}: {exc}") from None
            if len(reasons) != meta.get("reason_count"):
                raise ArtifactError(
                    f"{folder}: {len(reasons)} reason combinations, not "
                    f"the {meta.get('reason_count')} meta.json says"
                )
        else:  # a version written before the packed text
            reasons = tuple(tuple(str(x) for x in r) for r in meta.get("reasons", []))
        shapes = {items.shape, scores.shape} | ({codes.shape} if codes is not None else set())
        if len(shapes) != 1 or items.ndim != 2:
            raise ArtifactError(f"{folder}: precomputed arrays differ in shape: {sorted(shapes)}")
        if codes is not None and len(codes) and codes.size and int(codes.max()) >= len(reasons):
            raise ArtifactError(f"{folder}: a reason code is past the {len(reasons)} reasons")
        return cls(str(meta["model"]), items, scores, codes, reasons)


def index_base(folder: Path, model_name: str) -> Path:
    """Where a factor model's approximate index is written (the index adds its suffix); the
    manifest's ``ann`` table records the file as written, and the engine reads that."""
    return folder / INDEX_DIR / model_name


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing from the model version") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read JSON: {exc}") from None
