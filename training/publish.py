"""The **publish** and **promote** stages of every engine's run: the promotion gate, and the
version folder written from a run's fitted models (the files :mod:`recsys.artifacts` defines,
the served model's approximate index, its stored lists and the manifest), so that a version
reads the same whichever engine trained it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recsys.artifacts import CATALOG_READ_KEY
from recsys.data.interactions import TrainingData
from recsys.data.schema import MICROS_PER_DAY, CatalogItem
from recsys.environment import blas_kernels, library_versions, numerics_differ, platform_info
from recsys.errors import ModelError, RecsysError
from recsys.registry import Registry
from recsys.store.base import EventStore
from training.config import TrainingConfig
from training.stages import (
    Notify,
    Progress,
    fit_threads,
    iso_time,
    jsonable,
    peak_rss_mib,
    thread_limit,
)

EVENTS_SEQ_KEY = "events_seq"
"""The manifest's key for the store's newest event ``seq`` when the run read the store (see
:attr:`recsys.artifacts.Manifest.events_seq`), whichever engine trained it."""


@dataclass
class TrainingResult:
    """What a run did.

    Attributes
    ----------
    version
        The published version.
    promoted
        Whether it now serves.
    reason
        Why it was (or was not) promoted.
    metrics
        Holdout metrics per model (empty when evaluation was skipped).
    skipped
        Model name -> why it was not trained.
    default_model
        The model that serves: the configured default, or a fallback when it could not train.
    timings
        Stage name -> seconds.
    cpu_seconds
        Stage name -> CPU seconds of the process (every thread, user and system).
    manifest
        The published manifest.
    up_to_date
        ``True`` when ``if_changed`` found a version trained on the same input: nothing was
        trained, and ``version`` is that (current) version.
    """

    version: str
    promoted: bool
    reason: str
    metrics: dict[str, dict[str, float | None]]
    skipped: dict[str, str]
    timings: dict[str, float]
    manifest: dict[str, Any] = field(repr=False)
    default_model: str = ""
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    up_to_date: bool = False


@dataclass(frozen=True)
class CatalogRead:
    """The catalogue as a training run read it from the store.

    ``generation`` is the store's generation before the read: every row changed after it has
    a higher one, so a server that lays the rows changed since over the version's catalogue
    sees the store's catalogue (without holding every item). ``retired`` items are left out
    of ``items``; the version keeps those it knows (from events) as stored, out of stock.
    """

    items: list[CatalogItem]
    retired: list[CatalogItem]
    generation: int
    store_id: str

    @classmethod
    def of(cls, store: EventStore) -> CatalogRead:
        """Read ``store``'s catalogue now."""
        generation = store.generation()  # first: a row written during the read is later
        return cls(store.read_items(), store.retired_items(), generation, store.store_id())

    def manifest_entry(self) -> dict[str, Any]:
        """What the manifest records (:data:`recsys.artifacts.CATALOG_READ_KEY`): a server
        reads only the catalogue rows changed after it (:mod:`recsys.live`)."""
        return {"generation": self.generation, "store": self.store_id}


@dataclass
class Fitted:
    """A run's fitted models and what its manifest says of them, ready for :func:`publish_run`.

    ``data`` is the run's :class:`~recsys.data.interactions.TrainingData` (or the Spark
    engine's equivalent), ``read`` the catalogue it read, ``models`` and ``info`` the fitted
    models and their manifest entries by name, ``skipped`` why others were not trained,
    ``metrics`` and ``evaluation`` the holdout's, and ``default`` the model that serves
    (``fallback``: the manifest's ``default_fallback`` when it is not the configured one,
    else ``None``).
    """

    data: Any
    read: CatalogRead
    models: dict[str, Any]
    info: dict[str, dict[str, Any]]
    skipped: dict[str, str]
    metrics: dict[str, dict[str, float | None]]
    evaluation: dict[str, Any]
    default: str
    fallback: dict[str, str] | None


def serving_default(
    config: TrainingConfig,
    fitted: Mapping[str, Any],
    skipped: Mapping[str, str],
    notify: Notify,
    fallbacks: Sequence[str],
) -> tuple[str, dict[str, str] | None]:
    """The model a run's version serves: the configured default when it trained, else the
    first trained model of the first kind in ``fallbacks`` (registry names of model classes,
    so a config may name its popularity model as it likes), said in a notice.

    Returns
    -------
    tuple of str and dict or None
        The served model's name, and the manifest's ``default_fallback`` (the configured
        model, the one serving and why) when it is not the configured default.

    Raises
    ------
    ModelError
        Neither the default model nor a fallback trained: there is nothing to serve.
    """
    configured = config.default_model
    if configured in fitted:
        return configured, None
    why = skipped.get(configured, "not trained")
    for kind in fallbacks:
        for name in fitted:
            if (config.models[name].model or name) == kind:
                notify(
                    f"notice: the default model {configured!r} cannot be trained ({why}); "
                    f"{name!r} serves instead"
                )
                return name, {"configured": configured, "model": name, "reason": why}
    raise ModelError(
        f"the default model {configured!r} cannot be trained: {why}; "
        f"and no fallback ({', '.join(fallbacks)}) was trained (enable one in the config)"
    )


def publish_run(
    registry: Registry,
    config: TrainingConfig,
    config_source: str,
    run: Fitted,
    progress: Progress,
    *,
    force: bool,
    promote: bool,
    notify: Notify,
    active: NDArray[np.intp] | None = None,
    carry: tuple[Any, NDArray[np.intp], str | None] | None = None,
    manifest: Mapping[str, Any] | None = None,
) -> TrainingResult:
    """Decide on promotion, publish ``run`` as a version and promote it if so: the
    **publish** and **promote** stages of every engine's run, so that a version reads the same
    whichever engine trained it.

    The version holds the models, the served model's approximate index (serving searches no
    other: an experiment's arm serves another version's default model, and at 10^6 items one
    build takes minutes) and its stored lists (``active`` and ``carry``: see
    :func:`_write_precomputed`), scored on the configured threads as while fitting. The
    engine's own manifest entries (``manifest``) are written last.

    Returns
    -------
    TrainingResult
        With the timings and CPU seconds of the stages so far.
    """
    promote_it, reason = _decide(
        registry,
        config,
        run.metrics,
        force=force,
        promote=promote,
        default_model=run.default,
        why_not_default=run.skipped.get(config.default_model, "not trained"),
        # a warm run does not evaluate by design (its models have seen the holdout period)
        unmeasured=None
        if manifest is not None and "warm_start" in manifest
        else str(run.evaluation.get("skipped") or f"{run.default!r} was not evaluated"),
    )
    with progress.stage("publish"), registry.publish() as staging:
        _write_version(staging.path, run.data, run.read, run.models)
        served = {run.default: run.models[run.default]} if run.default in run.models else {}
        ann, indexes = _write_indexes(staging.path, config, served)
        with thread_limit(config):
            precomputed = _write_precomputed(
                staging.path,
                run.data,
                run.default,
                run.models,
                indexes.get(run.default),
                active_days=config.precompute.active_days,
                active=active,
                carry=carry,
                ann_entry=ann.get(run.default),
                threads=fit_threads(config),
            )
        staging.manifest.update(
            _manifest(
                config,
                config_source,
                run.data,
                fit_info=run.info,
                skipped=run.skipped,
                metrics=run.metrics,
                evaluation=run.evaluation,
                timings=progress.timings,
                promotion={"promoted": promote_it, "reason": reason, "forced": force},
            )
        )
        staging.manifest[CATALOG_READ_KEY] = run.read.manifest_entry()
        staging.manifest["cpu_seconds"] = {k: round(v, 3) for k, v in progress.cpu_seconds.items()}
        if precomputed is not None:
            staging.manifest["precomputed"] = precomputed
        # the publish stage is still open: its own peak is the one read here
        staging.manifest["peak_memory_mib"] = {**progress.peaks, "publish": peak_rss_mib()}
        if run.fallback is not None:
            staging.manifest.update(default_model=run.default, default_fallback=run.fallback)
        if ann:
            staging.manifest["ann"] = ann
        staging.manifest.update(manifest or {})
    version = staging.version

    with progress.stage("promote"):
        if promote_it:
            registry.promote(version, reason=reason)
    notify(f"version {version}: {'promoted' if promote_it else 'NOT promoted'} ({reason})")
    return TrainingResult(
        version=version,
        promoted=promote_it,
        reason=reason,
        metrics=run.metrics,
        skipped=run.skipped,
        timings=dict(progress.timings),
        manifest=registry.manifest(version),
        default_model=run.default,
        cpu_seconds=dict(progress.cpu_seconds),
    )


def _decide(
    registry: Registry,
    config: TrainingConfig,
    metrics: Mapping[str, Mapping[str, float | None]],
    *,
    force: bool,
    promote: bool,
    default_model: str,
    why_not_default: str = "not trained",
    unmeasured: str | None = None,
) -> tuple[bool, str]:
    """Whether the new version may serve, and why (the promotion gate on the metric of
    ``default_model``, the model that serves: the configured default or its fallback).

    A fallback does not replace a current version that serves the configured default model:
    a run that could not train it (a misspelt event type in the weights leaves no customer
    to learn from) has nothing to compare, and would otherwise put the fallback in its place
    unseen.

    Nor does a run that measured nothing (``unmeasured`` says why; ``None``: a warm run,
    which does not evaluate by design) replace a current version that measured the metric:
    a purchase feed broken for a month while views kept coming left no purchase after the
    cut, and an unmeasured, weaker model replaced the good one with exit 0. With the
    evaluation off in the config, no run measures and the gate promotes."""
    if not promote:
        return False, "--no-promote"
    current = registry.current_version()
    if current is None:
        return True, "first version"
    metric = config.evaluation.metric
    new = metrics.get(default_model, {}).get(metric)
    try:
        old_manifest = registry.manifest(current)
    except RecsysError as exc:
        return True, f"current version {current} is unreadable ({exc})"
    old_model = old_manifest.get("default_model")
    configured = config.default_model
    if default_model != configured and old_model == configured:
        fallback = (
            f"the default model {configured!r} was not trained ({why_not_default}): "
            f"{default_model!r} would replace current version {current}, which serves "
            f"{configured!r}"
        )
        if force:
            return True, f"forced: {fallback}"
        return False, f"{fallback} (--force promotes anyway)"
    old = (old_manifest.get("metrics") or {}).get(old_model, {}).get(metric)
    against = f"current version {current}"
    if old is None and new is not None:
        # a warm-started version measures nothing: the full run it continues did, and the
        # weekly full run of a nightly --warm-start schedule is gated against that one
        behind = _measured_behind(registry, old_manifest, metric)
        if behind is not None:
            version, old, old_manifest = behind
            against = f"version {version}, the full run behind current version {current}"
    if new is None and old is not None and unmeasured is not None and config.evaluation.enabled:
        blind = f"this run measured no {metric} ({unmeasured}); {against} measured {old:.4f}"
        if force:
            return True, f"forced: {blind}"
        return False, f"{blind} (--force promotes anyway)"
    if new is None or old is None:
        side = "this run" if new is None else f"current version {current}"
        return True, f"no {metric} for {side} to compare"
    margin = config.promotion.max_regression
    if config.promotion.mode == "relative":
        floor = old * (1.0 - margin)
        allowed = f"{margin:.1%}"
    else:
        floor = old - margin
        allowed = f"{margin:g} points"
    compared = f"{metric} {new:.4f} vs {old:.4f} of {against}"
    other = _other_numerics(old_manifest)
    if other:
        # not a reason to refuse or to promote: the operator reading why should know that
        # part of the difference is the machine's (another CPU's kernels, another library)
        compared += f" (trained with other numerics: {other})"
    if new >= floor:
        return True, f"{compared}, within {allowed}"
    if force:
        return True, f"forced: {compared}, worse by more than {allowed}"
    return False, f"{compared}: worse by more than {allowed} (--force promotes anyway)"


def _measured_behind(
    registry: Registry, manifest: Mapping[str, Any], metric: str
) -> tuple[str, float, dict[str, Any]] | None:
    """The version a warm start chain continues that measured ``metric`` for its default
    model, that value, and its manifest: following ``warm_start.from`` back (``None`` when a
    version on the way is gone or has no such link)."""
    for _ in range(1000):  # a chain is as long as the warm runs between two full runs
        start = manifest.get("warm_start")
        version = start.get("from") if isinstance(start, Mapping) else None
        if not isinstance(version, str):
            return None
        try:
            found = registry.manifest(version)
        except RecsysError:
            return None  # pruned, or unreadable
        value = (found.get("metrics") or {}).get(found.get("default_model"), {}).get(metric)
        if value is not None:
            return version, float(value), found
        manifest = found
    return None


def _other_numerics(manifest: Mapping[str, Any]) -> str:
    """What differs between the numerics a version was trained with and this process's (see
    :func:`recsys.environment.numerics_differ`); empty when nothing does, or when the version
    recorded nothing to compare (an older version)."""
    now = {"libraries": library_versions(), "platform": {"blas": blas_kernels()}}
    return ", ".join(numerics_differ(manifest, now))


def _write_version(folder: Path, data: Any, read: CatalogRead, fitted: Mapping[str, Any]) -> None:
    """Write the files the serving engine reads (their format: :mod:`recsys.artifacts`)."""
    from recsys.artifacts import write_version

    write_version(
        folder,
        users=data.users,
        items=data.items,
        catalog=_catalog_rows(data, read.items, read.retired),
        history=data.interactions,
        purchases=data.purchase_counts,
        models=fitted,
    )


def _write_precomputed(
    folder: Path,
    data: Any,
    default_model: str,
    fitted: Mapping[str, Any],
    index: Any = None,
    *,
    active_days: float = 0.0,
    active: NDArray[np.intp] | None = None,
    carry: tuple[Any, NDArray[np.intp], str | None] | None = None,
    ann_entry: dict[str, Any] | None = None,
    threads: int = 1,
) -> dict[str, Any] | None:
    """The default model's top lists of the recently active customers, so the API serves most
    requests without scoring (see :class:`recsys.artifacts.Precomputed`); listed in the
    manifest like every file. With the model's approximate ``index`` the lists come from it,
    as serving would answer.

    Only customers with an event in the last ``active_days`` before ``as_of`` (``0``: every
    customer) get a list: the cost is one scoring per customer (Ta-Feng's hybrid: 46 s per
    4,096 customers, more than its fit), most of it for customers who will not come back
    before the next training; those who do are scored live, in the same time as a customer
    with new events. On Ta-Feng, 60 days before a cut covered 92 % of the next month's events
    of returning customers with 82 % of the lists; on Online Retail 78 % with 55 %
    (benchmarks/RESULTS.md, "Training cost against the catalogue").

    ``active`` gives those customers' indices when the caller has found them itself (the
    Spark engine, whose events are not on the driver); by default :func:`active_users`.

    ``carry`` (a warm run: the current version, the indices of the customers with an event
    since it, and how the default model started) keeps that version's list of every other
    customer and scores only these (:func:`training.warm.carry_lists`); the entry then says
    how many lists were carried, or why none was.

    A model that searches an index of its own with a known customer's stored vector (the
    hybrid: :class:`~recsys.retrieval.index.SearchesIndex`) has the index's answers for the
    customers scored here kept first, in one batch that the lists then read, and saved
    beside the index (:func:`_keep_answers`; ``ann_entry``, the model's ``ann`` entry,
    gets their ``answers``): those customers' live requests read them instead of searching.

    ``threads``: the run's (:func:`recsys.precompute.precompute`'s).

    Returns the manifest's ``precomputed`` entry (customers with a list, of how many, the
    window), or ``None`` when the default model was not trained.
    """
    from recsys.models.base import Explains
    from recsys.precompute import precompute
    from training.warm import carry_lists

    model = fitted.get(default_model)
    if model is None:
        return None
    users = None
    if active_days > 0:
        users = active if active is not None else active_users(data, active_days)
    entry: dict[str, Any] = {
        "users": data.n_users if users is None else len(users),
        "of": data.n_users,
        "active_days": active_days,
    }
    carried = None
    if carry is not None:
        previous, changed, how = carry
        listed = np.arange(data.n_users, dtype=np.intp) if users is None else users
        found = carry_lists(
            previous,
            data,
            default_model,
            how,
            listed,
            changed,
            explains=isinstance(model, Explains),
        )
        if isinstance(found, str):
            entry["carried"] = {"users": 0, "why": found}
        else:
            carried, users = found, found.score
            entry["carried"] = {"users": len(found.rows), "from": found.version}
    if index is not None and ann_entry is not None:
        answers = _keep_answers(folder, default_model, model, index, users, data.n_users)
        if answers is not None:
            ann_entry["answers"] = answers
    lists = precompute(
        model,
        default_model,
        data.interactions,
        data.items,
        index=index,
        users=users,
        threads=threads,
    )
    if carried is not None:
        lists = carried.merge(lists)
    lists.save(folder)
    return entry


def _keep_answers(
    folder: Path,
    name: str,
    model: Any,
    index: Any,
    users: NDArray[np.intp] | None,
    n_users: int,
) -> dict[str, Any] | None:
    """Keep ``index``'s answers to the stored query vectors of ``users`` (``None``: all
    ``n_users``) of a :class:`~recsys.retrieval.index.SearchesIndex` model, and write them
    beside the index; the ``ann`` entry's ``answers`` (``None`` for any other model)."""
    from recsys.artifacts import index_base
    from recsys.retrieval.index import SearchesIndex

    if not isinstance(model, SearchesIndex):
        return None
    start = time.perf_counter()
    keys = np.arange(n_users, dtype=np.intp) if users is None else np.asarray(users, np.intp)
    queries, k = model.index_queries(keys)
    kept = index.keep_answers(keys, queries, k)
    path = index_base(folder, name).with_suffix(".answers.npz")
    path.parent.mkdir(exist_ok=True)
    kept.save(path)
    return {
        "file": path.relative_to(folder).as_posix(),
        "users": len(kept.keys),
        "k": kept.k,
        "seconds": round(time.perf_counter() - start, 3),
    }


def active_users(data: TrainingData, days: float) -> NDArray[np.intp]:
    """Indices of the customers with an event in the ``days`` before ``data.as_of`` (sorted).

    Any event counts (a view as much as a purchase): a customer browsing is one about to ask
    for recommendations. Guests and customers the training filters dropped have no index.
    """
    since = data.as_of - int(days * MICROS_PER_DAY)
    events = data.events
    recent = events.user_id[events.ts >= since].astype(str)
    index = data.users.indices(np.unique(recent))
    return np.sort(index[index >= 0]).astype(np.intp)


def _write_indexes(
    folder: Path, config: TrainingConfig, fitted: Mapping[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """An approximate top-k index per factor model of ``fitted`` (the publish stage passes
    the served one) when the catalogue reaches ``ann.min_items``.

    A model that searches vectors of its own (:class:`~recsys.retrieval.index.SearchesIndex`:
    the hybrid's ALS generator) gets one over them the same way, and is handed it at once, so
    the stored lists written after this come from it as the served ones do.

    The index file lies in the version folder, so the registry hashes it with every other
    file and :meth:`~recsys.registry.Registry.verify` checks it before the engine reads it.
    Returns the manifest's ``ann`` table (model name -> file relative to the version, index
    parameters, build seconds) and the built indexes by model name.
    """
    from recsys.artifacts import index_base
    from recsys.retrieval import FaissIndex, SearchesIndex, UsearchIndex, build_index, save_index
    from recsys.retrieval.index import indexed_vectors

    out: dict[str, dict[str, Any]] = {}
    built: dict[str, Any] = {}
    for name, model in fitted.items():
        vectors = indexed_vectors(model)
        if vectors is None:
            continue
        n_items = int(vectors.shape[0])
        if not config.ann.wants_approximate(n_items):
            continue
        start = time.perf_counter()
        # searched with the training's threads: the stored lists written next search it for
        # every active customer (a server loads the file with its own ``ann.threads``)
        index = build_index(vectors, config=config.ann, threads=fit_threads(config))
        seconds = time.perf_counter() - start
        # wants_approximate: never the exact index
        assert isinstance(index, UsearchIndex | FaissIndex)
        base = index_base(folder, name)
        base.parent.mkdir(exist_ok=True)
        path = save_index(index, base)
        out[name] = {
            "file": path.relative_to(folder).as_posix(),
            "n_items": index.n_items,
            "dim": index.dim,
            "params": jsonable(index.params),
            "build_seconds": round(seconds, 3),
        }
        if isinstance(model, SearchesIndex):
            model.use_index(index)
        built[name] = index
    return out, built


def _catalog_rows(
    data: Any, catalog: list[CatalogItem], retired: list[CatalogItem] | None = None
) -> list[dict[str, Any]]:
    """One row per item in index order; items absent from the catalogue get what events say.
    An item the shop ``retired`` keeps its stored row, out of stock (as a server's live
    catalogue has it)."""
    by_id = {c.item_id: replace(c, in_stock=False) for c in retired or ()}
    by_id.update((c.item_id, c) for c in catalog)
    rows = []
    for i, item_id in enumerate(data.items.ids):
        c = by_id.get(item_id)
        price = float(data.item_price[i]) if i < len(data.item_price) else float("nan")
        rows.append(
            {
                "item_id": item_id,
                "title": c.title if c else "",
                "category": (c.category if c and c.category else None)
                or (data.item_category[i] if i < len(data.item_category) else ""),
                "price": c.price
                if c and c.price is not None
                else (None if np.isnan(price) else price),
                "in_stock": c.in_stock if c else True,
                "margin": c.margin if c else None,
            }
        )
    return rows


def _manifest(
    config: TrainingConfig,
    config_source: str,
    data: Any,
    *,
    fit_info: dict[str, dict[str, Any]],
    skipped: dict[str, str],
    metrics: dict[str, dict[str, float | None]],
    evaluation: dict[str, Any],
    timings: dict[str, float],
    promotion: dict[str, Any],
) -> dict[str, Any]:
    ts = data.events.ts
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "as_of": iso_time(data.as_of),
        "data_window": {
            "first_event": iso_time(int(ts.min())) if len(ts) else None,
            "last_event": iso_time(int(ts.max())) if len(ts) else None,
        },
        "counts": {
            "events": len(data.events),
            "users": data.n_users,
            "items": data.n_items,
            "orders": int(data.orders.shape[0]),
            "interactions": int(data.interactions.nnz),
        },
        "config_source": config_source,
        "interaction_config": config.interactions.model_dump(mode="json"),
        "training_config": config.model_dump(mode="json"),
        "default_model": config.default_model,
        "models": fit_info,
        "skipped_models": skipped,
        "metrics": metrics,
        "evaluation": evaluation,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "libraries": library_versions({"recsys-engine": "recsys"}),
        "platform": platform_info(),
        "promotion": promotion,
    }
