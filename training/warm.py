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
* every other model (popularity, buy-again, EASE) is fitted as in a full run: one pass over
  the events, or (EASE) a solve that has nothing to start from.

A model without a usable predecessor (absent from the current version, another class, other
factor dimensions or hybrid parameters, counts not kept, or a time window that drops old
baskets) is fitted cold and
the reason is recorded in the manifest's ``warm_start`` table. Evaluating a warm-started model
on the usual holdout would leak it (the current version has seen the holdout period), so a warm
run does not evaluate: it publishes without metrics (the promotion gate then promotes, and says
why); a periodic full run keeps measuring. ``benchmarks/bench_warm.py`` measures the cost and
the quality against a full run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.data.interactions import InteractionConfig, TrainingData
from recsys.data.schema import EventFrame, to_micros
from recsys.errors import ModelError, RecsysError
from recsys.registry import Registry


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
    from recsys.models.factors import FactorRecommender
    from recsys.models.hybrid import HybridModel

    if not isinstance(model, FactorRecommender | CooccurrenceModel | HybridModel):
        return "cold: this model has no warm start"
    try:
        old = previous.model(name)
    except RecsysError as exc:
        return f"cold: {exc}"
    if type(old) is not type(model):
        return f"cold: {previous.version} has a {type(old).__name__} as {name!r}"
    items = previous.items.indices(data.items.ids)
    n_new_items = int((items < 0).sum())
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
