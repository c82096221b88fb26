"""Incremental retraining (``recsys train --warm-start``): start from the current version.

A nightly run on a shop whose data changed a little should not relearn everything. With
``--warm-start`` the fit stage looks at the current version and, model by model:

* a factor model (ALS, BPR) starts from that version's user and item factors, mapped through
  the two versions' vocabularies (a customer or product new since then starts as a cold fit
  starts it), and ALS runs ``warm_iterations`` sweeps instead of ``iterations``;
* a co-occurrence model starts from that version's pair counts and counts only the baskets
  (orders or sessions) of the events after that version's last event;
* the hybrid keeps that version's ranker and calibration (it learns no ranker) and rebuilds
  its candidate generators on all the events, their ALS starting from that version's factors
  (:meth:`~recsys.models.hybrid.HybridModel.warm_start`): relearning the ranker is most of a
  full fit, and what it learned (which candidate features predict a purchase) moves slowly;
* EASE (the model, and the hybrid's EASE generator) corrects that version's solution for the
  rows that changed since (found by comparing its input rows with today's), by a low-rank
  update checked against the new data
  (:func:`~recsys.models.kernels.ease_update`; a full solve when the check fails, said in the
  manifest);
* every other model (popularity, buy-again) is fitted as in a full run: one pass over the
  events;
* the stored top lists of the customers with no event since that version are carried over
  (:func:`carry_lists`); only the others are scored.

A model without a usable predecessor (absent from the current version, another class, other
factor dimensions or hybrid parameters, counts not kept, or a time window that drops old
baskets) is fitted cold and
the reason is recorded in the manifest's ``warm_start`` table. Evaluating a warm-started model
on the usual holdout would leak it (the current version has seen the holdout period), so a warm
run does not evaluate: it publishes without metrics (the promotion gate then promotes, and says
why); a periodic full run keeps measuring: a warm run trains in full when the last full run
behind the current version is older than ``[warm_start] full_every_days``
(:attr:`Predecessor.last_full_run`), and when the config's interactions or a model's spec
changed since that version (``training.pipeline``: a new setting is evaluated before it
serves). ``benchmarks/bench_warm.py`` measures the cost and
the quality against a full run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import InteractionConfig, TrainingData
from recsys.data.schema import EventFrame, to_micros
from recsys.errors import ModelError, RecsysError
from recsys.registry import Registry

#: The manifest key of the as-of (ISO) of the full run a version continues: its own for a full
#: run, passed on by each warm run; ``None`` when unknown.
FULL_RUN_KEY = "full_run_as_of"


@dataclass
class Predecessor:
    """The current version as a warm start: its vocabularies, manifest and folder.

    Attributes
    ----------
    version
        Its name.
    folder
        Its folder in the registry.
    manifest
        Its manifest.
    users, items
        Its vocabularies' ids in index order.
    last_event
        Microseconds UTC of the newest event it was trained on.
    """

    version: str
    folder: Path
    manifest: dict[str, Any]
    users: Any
    items: Any
    last_event: int
    _models: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def current(cls, registry: Registry) -> Predecessor | None:
        """The registry's current version, verified; ``None`` when there is none."""
        from datetime import datetime

        from recsys.artifacts import read_version

        version = registry.current_version()
        if version is None:
            return None
        # checked against its hashes before any of its files is read
        manifest = registry.verify(version)
        folder = registry.path(version)
        data = read_version(folder)
        last = (manifest.get("data_window") or {}).get("last_event")
        if last is None:
            return None
        return cls(
            version=version,
            folder=folder,
            manifest=manifest,
            users=data.users,
            items=data.items,
            last_event=to_micros(datetime.fromisoformat(last)),
        )

    @property
    def last_full_run(self) -> int | None:
        """Microseconds UTC of the as-of of the last full run behind this version (its own
        when it was not warm-started; ``None`` when a warm version does not say)."""
        from datetime import datetime

        if "warm_start" not in self.manifest:
            when = self.manifest.get("as_of")
        else:
            when = self.manifest.get(FULL_RUN_KEY)
        return None if when is None else to_micros(datetime.fromisoformat(when))

    @property
    def events_seen(self) -> int | None:
        """How many events up to :attr:`last_event` this version was trained on (``None``
        when a time window dropped older ones: the count is not comparable)."""
        if (self.manifest.get("interaction_config") or {}).get("window_days") is not None:
            return None
        events = (self.manifest.get("counts") or {}).get("events")
        return None if events is None else int(events)

    def model(self, name: str) -> Any:
        """Its fitted model ``name`` (loaded once), or a :class:`ModelError` saying why not."""
        from recsys.artifacts import Manifest, model_folder
        from recsys.models import model_class

        if name not in self._models:
            spec = Manifest.parse(self.manifest, self.version).models.get(name)
            if spec is None:
                raise ModelError(f"version {self.version} has no model {name!r}")
            cls = model_class(spec.class_name(name))
            self._models[name] = cls.load(model_folder(self.folder, name))
        return self._models[name]


def prepare(
    name: str,
    model: Any,
    data: TrainingData,
    previous: Predecessor,
    *,
    new_data: TrainingData | None,
    interactions: InteractionConfig,
) -> str:
    """Set ``model`` (unfitted) to start from ``previous``'s model ``name``; say how.

    Returns
    -------
    str
        What the warm start does, for the manifest (``"cold: <why>"`` when it does nothing).
    """
    from recsys.models.cooccurrence import CooccurrenceModel
    from recsys.models.ease import EASEModel
    from recsys.models.factors import FactorRecommender
    from recsys.models.hybrid import HybridModel

    if not isinstance(model, FactorRecommender | CooccurrenceModel | HybridModel | EASEModel):
        return "cold: this model has no warm start"
    try:
        old = previous.model(name)
    except RecsysError as exc:
        return f"cold: {exc}"
    if type(old) is not type(model):
        return f"cold: {previous.version} has a {type(old).__name__} as {name!r}"
    items = previous.items.indices(data.items.ids)
    n_new_items = int((items < 0).sum())
    if isinstance(model, EASEModel):
        assert isinstance(old, EASEModel)
        try:
            model.warm_start(old, items)
        except ModelError as exc:
            return f"cold: {exc}"
        return f"weights from {previous.version} ({n_new_items} new items)"
    if isinstance(model, HybridModel):
        assert isinstance(old, HybridModel)
        users = previous.users.indices(data.users.ids)
        try:
            model.warm_start(old, users, items)
        except ModelError as exc:
            return f"cold: {exc}"
        return (
            f"ranker and ALS factors from {previous.version} "
            f"({int((users < 0).sum())} new users, {n_new_items} new items)"
        )
    if isinstance(model, FactorRecommender):
        assert isinstance(old, FactorRecommender)
        if old.item_factors_.shape[1] != _width(model, old):
            return f"cold: {previous.version}'s factors have another dimension"
        users = previous.users.indices(data.users.ids)
        model.warm_start(old, users, items)
        return (
            f"factors from {previous.version} "
            f"({int((users < 0).sum())} new users, {n_new_items} new items)"
        )
    assert isinstance(model, CooccurrenceModel) and isinstance(old, CooccurrenceModel)
    if interactions.window_days is not None:
        return "cold: a time window drops old baskets, which carried counts cannot forget"
    baskets = _new_baskets(model.source, data, new_data)
    try:
        model.warm_start(old, items, baskets)
    except ModelError as exc:
        return f"cold: {exc}"
    return f"counts from {previous.version} plus {baskets.shape[0]} new baskets"


def new_events(events: EventFrame, previous: Predecessor) -> EventFrame:
    """The events after the newest one ``previous`` was trained on."""
    return events.select(np.asarray(events.ts) > previous.last_event)


def _new_baskets(source: str, data: TrainingData, new_data: TrainingData | None) -> sp.csr_matrix:
    """The new events' orders (or sessions), with ``data``'s item columns."""
    if new_data is None:
        return sp.csr_matrix((0, data.n_items), dtype=np.float32)
    baskets = sp.csr_matrix(new_data.orders if source == "basket" else new_data.sessions)
    columns = data.items.indices(new_data.items.ids)
    coo = baskets.tocoo()
    keep = columns[coo.col] >= 0
    return sp.csr_matrix(
        (coo.data[keep], (coo.row[keep], columns[coo.col[keep]])),
        shape=(baskets.shape[0], data.n_items),
        dtype=np.float32,
    )


def _width(model: Any, old: Any) -> int:
    """The factor width ``model`` will learn (BPR keeps one more column, a bias)."""
    extra = old.item_factors_.shape[1] - int(getattr(old, "factors", 0))
    return int(getattr(model, "factors", 0)) + extra


@dataclass(frozen=True)
class CarriedLists:
    """The current version's stored top lists that a warm run keeps for its customers with no
    event since that version (:func:`carry_lists`), and the customers it scores again.

    Attributes
    ----------
    version
        The version the lists come from.
    source
        Its stored lists (memory-mapped).
    rows
        This run's user indices that keep their list (sorted).
    old_rows
        Their rows in ``source``.
    item_map
        ``source``'s item index -> this run's (every item of a carried row maps).
    score
        This run's user indices to score (sorted): the active customers with an event since
        that version, or without a complete list in it.
    """

    version: str
    source: Any
    rows: NDArray[np.intp]
    old_rows: NDArray[np.intp]
    item_map: NDArray[np.intp]
    score: NDArray[np.intp]

    def merge(self, fresh: Any) -> Any:
        """``fresh`` (the lists scored for :attr:`score`, as a
        :class:`~recsys.artifacts.Precomputed` of every user) with the carried rows filled
        in: their items mapped to this run's indices, their reasons to ``fresh``'s codes."""
        from recsys.artifacts import Precomputed

        old = self.source
        items = np.array(fresh.items, dtype=np.int32)
        scores = np.array(fresh.scores, dtype=np.float32)
        old_items = np.asarray(old.items[self.old_rows], dtype=np.intp)
        valid = old_items >= 0
        items[self.rows] = np.where(valid, self.item_map[np.where(valid, old_items, 0)], -1)
        scores[self.rows] = np.where(valid, old.scores[self.old_rows], np.nan)
        reasons = list(fresh.reasons)
        codes = None
        if fresh.reason_codes is not None:
            vocab = {r: c for c, r in enumerate(reasons)}
            recode = np.array([vocab.setdefault(r, len(vocab)) for r in old.reasons], np.int32)
            reasons = list(vocab)
            codes = np.array(fresh.reason_codes, dtype=np.int32)
            old_codes = np.asarray(old.reason_codes[self.old_rows], dtype=np.intp)
            codes[self.rows] = np.where(valid, recode[old_codes] if recode.size else 0, 0)
        return Precomputed(fresh.model, items, scores, codes, tuple(reasons))


def carry_lists(
    previous: Predecessor,
    data: TrainingData,
    model_name: str,
    warm_started: str | None,
    active: NDArray[np.intp],
    changed: NDArray[np.intp],
    *,
    explains: bool,
) -> CarriedLists | str:
    """Which stored lists of ``previous`` a warm run keeps, and whom it scores again.

    A customer keeps that version's list when they have no event since it (their history is
    the same, up to the recency decay's common factor) and every item of the list is still in
    the catalogue. The lists then come from yesterday's model, which the warm start only
    nudged (a customer's next event gets them today's, scored live). Scoring only the
    customers with new events is what makes a nightly warm run cheap: the stored lists were
    76 % of Ta-Feng's warm run (39.2 of 51.5 s; benchmarks/RESULTS.md).

    Parameters
    ----------
    previous
        The current version the run starts from.
    data
        This run's training data.
    model_name
        The default model of this run.
    warm_started
        How that model started (the manifest's ``warm_start`` entry; ``None``: not warm).
    active
        The user indices that get a list in this run (sorted).
    changed
        The user indices of the customers with an event after ``previous``'s newest.
    explains
        Whether the default model stores reasons.

    Returns
    -------
    CarriedLists or str
        What to carry, or why nothing is carried (every active customer is scored).
    """
    from recsys.artifacts import ArtifactError, Precomputed
    from recsys.precompute import PRECOMPUTED_DEPTH

    if warm_started is None or warm_started.startswith("cold"):
        return f"the default model {model_name!r} was not warm-started"
    if previous.manifest.get("default_model") != model_name:
        return f"{previous.version} served another default model"
    try:
        old = Precomputed.load(previous.folder)
    except ArtifactError as exc:
        return str(exc)
    if old is None or old.model != model_name:
        return f"{previous.version} has no stored lists of {model_name!r}"
    depth = min(PRECOMPUTED_DEPTH, data.n_items)
    if old.depth != depth or (old.reason_codes is not None) != explains:
        return f"{previous.version}'s stored lists have another shape"
    old_rows = previous.users.indices(data.users.ids_of(active)).astype(np.intp)
    item_map = data.items.indices(previous.items.ids).astype(np.intp)
    keep = (old_rows >= 0) & ~np.isin(active, changed)
    listed = np.asarray(old.items[old_rows[keep]])
    # a list with an item the run no longer has is scored again, not served shorter
    complete = (listed >= 0).any(axis=1) & ~((listed >= 0) & (item_map[listed] < 0)).any(axis=1)
    keep[keep] = complete
    return CarriedLists(
        version=previous.version,
        source=old,
        rows=active[keep],
        old_rows=old_rows[keep],
        item_map=item_map,
        score=active[~keep],
    )
