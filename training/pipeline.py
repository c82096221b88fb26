"""The offline training pipeline behind ``recsys train``.

Stages, each timed and shown on a progress bar (stderr):

1. **read** the events and the catalogue from the store;
2. **build** the training data, measured from ``as_of`` — the newest event, or ``--as-of``;
   time is always the data's, never the wall clock, so a rerun on the same data is the same run;
3. **evaluate** on a time-based holdout: every enabled model (but those with
   ``evaluate = false``; never the default model) is fitted once on the events before
   ``as_of - holdout_days`` and judged by :func:`recsys.evaluation.protocol.evaluate_models` on
   the purchases after it (a seeded sample of ``max_users`` customers on a larger shop, each
   mean with its confidence interval); a model that refuses that data is skipped, neither
   scored there nor fitted again in the next stage;
4. **fit** every enabled model on all the data;
5. **publish** a new version into the registry (atomically: a failure publishes nothing), with
   the default model's top lists of the customers active in the last
   ``[precompute] active_days`` (the others are scored when asked for; a warm run keeps the
   current version's list of each customer with no event since it);
6. **promote** it, unless the gated metric is worse than the current version's by more than
   the allowed margin (``--force`` overrides; the version stays in the registry, not promoted).

The default configuration adapts to the data: a model that cannot fit it (EASE on a catalogue
too large for a dense item-item matrix, "often viewed with" on data without views, every model
that learns from customers on data with guests only) is skipped with a notice. When the default
model itself cannot be trained, the first of :data:`FALLBACK_DEFAULTS` that trained serves
instead: the version's manifest names it as ``default_model`` and records the configured one
and the reason under ``default_fallback``; the run fails only when none of them trained.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recsys.artifacts import CATALOG_READ_KEY
from recsys.data.interactions import TrainingData
from recsys.data.schema import MICROS_PER_DAY, PURCHASE, CatalogItem, EventFrame, from_micros
from recsys.environment import (
    blas_kernels,
    library_versions,
    numerics_differ,
    platform_info,
)
from recsys.errors import ArtifactError, DataError, ModelError, RecsysError, RegressionError
from recsys.evaluation.protocol import EvaluationResult
from recsys.models.hybrid import HybridModel, RepeatChoice, ServedOrder, prediction_threads
from recsys.models.kernels import shared_ease_solves
from recsys.registry import Registry
from recsys.settings import Settings
from recsys.store.base import EventStore
from training.config import TrainingConfig, check_model_params
from training.warm import FULL_RUN_KEY

log = logging.getLogger("training")

Notify = Callable[[str], None]

_STAGES = ("read", "build", "evaluate", "fit", "publish", "promote")

#: Models that serve when the configured default cannot be trained, first trained first: they
#: need no customer, so a shop whose visitors are all guests still gets a usable version.
FALLBACK_DEFAULTS = ("popular", "trending")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


#: Manifest key of the fingerprint of what a version was trained on.
FINGERPRINT_KEY = "data_fingerprint"


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


def input_fingerprint(
    events: EventFrame, catalog: list[CatalogItem], config: TrainingConfig, as_of: int | None
) -> str:
    """A digest of everything a training run depends on: the events it reads (before
    ``as_of``), the catalogue, the training config and ``as_of`` itself.

    Equal digests mean a new run would train on the same input, so ``if_changed`` may skip
    it. The formula is the one versions have always recorded, so a version trained before an
    upgrade still matches.

    Parameters
    ----------
    events
        The events the run reads.
    catalog
        The catalogue it reads.
    config
        The validated training config.
    as_of
        The run's ``as_of`` (``None``: the newest event).

    Returns
    -------
    str
        32 hex digits.
    """
    import hashlib
    import json

    digest = hashlib.blake2b(digest_size=16)
    digest.update(events.fingerprint().encode())
    for item in catalog:
        digest.update(repr(item).encode("utf-8", "backslashreplace"))
    digest.update(json.dumps(config.model_dump(mode="json"), sort_keys=True, default=str).encode())
    digest.update(repr(as_of).encode())
    return digest.hexdigest()


def data_fingerprint(store: EventStore, config: TrainingConfig, as_of: int | None) -> str:
    """:func:`input_fingerprint` of what the store holds now (for an engine that reads its
    events elsewhere, e.g. Spark from a Parquet export)."""
    return input_fingerprint(store.read_events(until=as_of), store.read_items(), config, as_of)


def trained_on(registry: Registry, fingerprint: str) -> str | None:
    """The current version when it was trained on the input with this ``fingerprint``.

    Parameters
    ----------
    registry
        The model registry.
    fingerprint
        :func:`input_fingerprint` of a run's input.

    Returns
    -------
    str or None
        The current version's name, or ``None`` when a new run should train.

    Raises
    ------
    RegressionError
        A version published after the current one was trained on this input and its
        promotion was refused: training again would be refused again.
    """
    current = registry.current_version()
    if current and registry.manifest(current).get(FINGERPRINT_KEY) == fingerprint:
        return current
    for version in registry.version_names():
        if version == current or (current and version < current):
            break  # only versions published after the current one
        try:
            manifest = registry.manifest(version)
        except ArtifactError:
            continue  # a broken version was trained on nothing usable
        if manifest.get(FINGERPRINT_KEY) == fingerprint:
            reason = (manifest.get("promotion") or {}).get("reason", "not promoted")
            raise RegressionError(
                f"version {version} was already trained on this data and config and not "
                f"promoted ({reason}); `recsys models promote {version}` serves it anyway"
            )
    return None


def run_training(
    config: TrainingConfig,
    *,
    store: EventStore,
    registry: Registry,
    as_of: int | None = None,
    force: bool = False,
    promote: bool = True,
    config_source: str = "training/configs/default.toml",
    lock_timeout: float = 0.0,
    notify: Notify = _stderr,
    warm_start: bool = False,
    if_changed: bool = False,
) -> TrainingResult:
    """Train, evaluate, publish and (maybe) promote one model version.

    Parameters
    ----------
    config
        The validated training config.
    store
        Where events and the catalogue are read from.
    registry
        Where the version is published.
    as_of
        Microseconds UTC: only events strictly before it are used. ``None``: every event, and
        ``as_of`` is the newest event's time.
    force
        Promote even when the gated metric regressed.
    promote
        ``False`` publishes without promoting.
    config_source
        Where ``config`` came from (named in messages and the manifest).
    lock_timeout
        Seconds to wait for another trainer holding the registry lock (``0``: fail at once).
    notify
        Receives one-line notices (skipped models, the promotion decision).
    warm_start
        Start the models that can from the current version (:mod:`training.warm`) and skip
        the evaluation; a run without a current version is a full run.
    if_changed
        Train only when no version was trained on the same input (:func:`trained_on`): the
        events and catalogue read, the config and ``as_of``. Every version records its
        input's :func:`input_fingerprint` under ``data_fingerprint``.

    Returns
    -------
    TrainingResult

    Raises
    ------
    DataError
        The store holds no events (before ``as_of``).
    RegistryError
        Another training holds the registry lock.
    RegressionError
        ``if_changed`` and a version trained on the same input was refused promotion.
    ModelError
        Neither the default model nor any of :data:`FALLBACK_DEFAULTS` could be trained.
    """
    from recsys.models import MODELS

    check_model_params(config, dict(MODELS), config_source)
    timings: dict[str, float] = {}
    with (
        registry.lock(timeout=lock_timeout),
        numpy_huge_pages(config.huge_pages),
        # the hybrid's big ranker batches on the configured threads, as BLAS while fitting
        prediction_threads(_threads(config)),
        _Progress(timings) as progress,
    ):
        with progress.stage("read"):
            events = store.read_events(until=as_of)
            read = CatalogRead.of(store)
            catalog = read.items
        if len(events) == 0:
            where = f" before {from_micros(as_of).isoformat()}" if as_of is not None else ""
            raise DataError(
                f"the event store ({store.backend}) holds no events{where}; "
                "load some with `recsys ingest` first"
            )
        data_as_of = int(events.ts.max()) if as_of is None else as_of
        _warn_if_purchases_stop_early(events, data_as_of, notify)
        # from the events this run reads: a second read of the store for the digest alone
        # cost as much as the read stage (2.6 s of Online Retail's run)
        fingerprint = input_fingerprint(events, catalog, config, as_of)
        if if_changed and (current := trained_on(registry, fingerprint)) is not None:
            manifest = registry.manifest(current)
            return TrainingResult(
                version=current,
                promoted=True,
                reason="up to date: trained on the same data and config",
                metrics={},
                skipped={},
                timings=dict(timings),
                manifest=manifest,
                default_model=str(manifest.get("default_model", config.default_model)),
                up_to_date=True,
            )

        with progress.stage("build"):
            # None: measured from the newest event, which is then included (an explicit
            # as_of is exclusive).
            data = _build(events, config, as_of, catalog)

        skipped: dict[str, str] = {}
        warm = _warm_start(registry, events, config, as_of, notify) if warm_start else None
        held = _serving_choices(registry, config)
        metrics: dict[str, dict[str, float | None]]
        evaluation: dict[str, Any]
        with progress.stage("evaluate"):
            if warm is not None:
                metrics, evaluation = (
                    {},
                    {
                        "skipped": f"warm start from {warm[0].version}: a warm-started model has "
                        "seen the holdout period; full runs measure"
                    },
                )
            else:
                metrics, evaluation = _evaluate(
                    events, config, data_as_of, catalog, skipped=skipped, notify=notify
                )

        # shared_ease_solves: EASEModel and the hybrid's EASE generator solve one problem once
        with progress.stage("fit"), shared_ease_solves():
            fitted, fit_info = _fit_all(
                config, data, skipped=skipped, notify=notify, warm=warm, held=held
            )
        _served_orders(metrics, evaluation, fitted)
        default, fallback = _serving_default(config, fitted, skipped, notify)
        carry = None
        if warm is not None and config.precompute.carry_on_warm_start:
            since = events.user_id[events.ts > warm[0].last_event]
            changed = data.users.indices({u for u in since if u})
            carry = warm[0], changed, fit_info.get(default, {}).get("warm_start")
        # a warm version passes on the as-of of the full run it continues
        full_run = data.as_of if warm is None else warm[0].last_full_run
        extra: dict[str, Any] = {
            FINGERPRINT_KEY: fingerprint,
            FULL_RUN_KEY: None if full_run is None else _iso(full_run),
        }
        if warm is not None:
            extra["warm_start"] = {
                "from": warm[0].version,
                "new_events": 0 if warm[1] is None else len(warm[1].events),
                "models": {n: i["warm_start"] for n, i in fit_info.items()},
            }
        result = publish_run(
            registry,
            config,
            config_source,
            Fitted(
                data=data,
                read=read,
                models=fitted,
                info=fit_info,
                skipped=skipped,
                metrics=metrics,
                evaluation=evaluation,
                default=default,
                fallback=fallback,
            ),
            progress,
            force=force,
            promote=promote,
            notify=notify,
            carry=carry,
            manifest=extra,
        )

        with progress.stage("segments"):
            # Customer segments (RFM + clusters) are recomputed with every training, measured
            # at the same as-of, so offers' eligibility and A/B breakdowns use current ones.
            from recsys.offers import compute_segments, store_segments

            segment_as_of = data_as_of + 1 if as_of is None else as_of
            store_segments(store, compute_segments(events, segment_as_of, store.read_customers()))
        return replace(result, timings=dict(timings), cpu_seconds=dict(progress.cpu_seconds))


# -- stages --------------------------------------------------------------------------------------


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


def publish_run(
    registry: Registry,
    config: TrainingConfig,
    config_source: str,
    run: Fitted,
    progress: _Progress,
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
        registry, config, run.metrics, force=force, promote=promote, default_model=run.default
    )
    with progress.stage("publish"), registry.publish() as staging:
        _write_version(staging.path, run.data, run.read, run.models)
        served = {run.default: run.models[run.default]} if run.default in run.models else {}
        ann, indexes = _write_indexes(staging.path, config, served)
        with _thread_limit(config):
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
                threads=_threads(config),
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


def _build(
    events: EventFrame, config: TrainingConfig, as_of: int | None, catalog: list[CatalogItem]
) -> Any:
    from recsys.data.interactions import build_training_data

    data = build_training_data(events, config.interactions, as_of=as_of, catalog=catalog)
    # no customer is not an error: guests' sessions and orders still train the item models
    if data.n_items == 0:
        raise DataError(
            f"no interactions left to train on ({len(events):,} events, "
            f"{data.n_users} users, {data.n_items} items after the [interactions] filters)"
        )
    return data


#: Days between the newest purchase and the as-of beyond which a run says so.
STALE_PURCHASES_DAYS = 60


def _warn_if_purchases_stop_early(events: EventFrame, as_of: int, notify: Notify) -> None:
    """A notice when the newest purchase is more than :data:`STALE_PURCHASES_DAYS` before
    the as-of: the models that learn from the last weeks' purchases (the hybrid's label
    windows, trending) then see none, and the hybrid falls back to its fixed blend. A few
    events far newer than the rest (a demo's sample with one view posted today, a clock
    gone wrong) move the as-of there; ``--as-of`` sets it."""
    bought = events.event_type == PURCHASE
    if not bought.any():
        return
    newest = int(events.ts[bought].max())
    days = (as_of - newest) / MICROS_PER_DAY
    if days > STALE_PURCHASES_DAYS:
        notify(
            f"notice: the newest purchase ({_iso(newest)}) is {days:,.0f} days before the "
            f"as-of ({_iso(as_of)}): models that learn from recent purchases see none; "
            "if the newer events are not the shop's, pass --as-of"
        )


def _make(name: str, config: TrainingConfig, held: Choices | None = None) -> Any:
    from recsys.models import model_class

    spec = config.models[name]
    model = model_class(spec.model or name)(**spec.params)
    if held and name in held and isinstance(model, HybridModel):
        model.hold_choice(held[name])
    return model


def _evaluated(name: str, config: TrainingConfig) -> Any:
    """Model ``name`` for the evaluation's fit: a hybrid skips its order tests, for the
    holdout scores every order of it (:func:`_evaluate`)."""
    model = _make(name, config)
    if isinstance(model, HybridModel):
        model.without_order_test()
    return model


#: The serving version's hybrid choices by model name.
Choices = Mapping[str, RepeatChoice]


def _serving_choices(registry: Registry, config: TrainingConfig) -> Choices:
    """What the current version's hybrids chose by their ``repeat_first`` test, by model name:
    a full run's hybrids change it only when the mean t of their test and that version's
    asks for the change (:meth:`~recsys.models.hybrid.HybridModel.hold_choice`), so the
    served order does not flip between versions on one test's chance. Only hybrids whose
    params are the config's now count. Empty without a current version."""
    from recsys.artifacts import model_folder

    current = registry.current_version()
    if current is None:
        return {}
    folder = registry.path(current)
    found: dict[str, RepeatChoice] = {}
    for name in config.enabled_models():
        model = _make(name, config)
        if not isinstance(model, HybridModel):
            continue
        # a version trained with other params tested another model: nothing to hold
        choice = RepeatChoice.of_saved(model_folder(folder, name), params=model.get_params())
        if choice is not None:
            found[name] = choice
    return found


@contextmanager
def numpy_huge_pages(enabled: bool) -> Iterator[None]:
    """Within the block numpy asks (or does not ask) the kernel for transparent huge pages
    for its large arrays (``madvise(MADV_HUGEPAGE)``), as the config's ``huge_pages`` says.

    numpy asks by default. On the 2-core VM of ``benchmarks/RESULTS.md`` a training run's
    items² temporaries (EASE) then spent twice the system time faulting them in: Online
    Retail 53.9 / 55.9 s wall and 9.9 / 9.7 s system with huge pages against 47.7 / 50.9 s and
    5.2 / 4.7 s without, alternating. Machines where huge pages pay set it to true. An operator's
    ``NUMPY_MADVISE_HUGEPAGE`` (read by numpy at import) is left as it is, and so is a numpy
    without the switch (a private function of numpy's; nothing else depends on it).
    """
    import importlib

    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # pragma: no cover - a numpy without it
        multiarray = None
    switch: Callable[[bool], bool] | None = getattr(multiarray, "_set_madvise_hugepage", None)
    if switch is None or "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        yield
        return
    previous = bool(switch(enabled))
    try:
        yield
    finally:
        switch(previous)


def _threads(config: TrainingConfig) -> int:
    """BLAS/OpenMP threads for evaluating and fitting: ``threads``, or every core for 0.

    An explicit count, not "no limit": OPENBLAS_NUM_THREADS=1 (what serving wants) would
    otherwise keep training on one core too.
    """
    return config.threads or os.cpu_count() or 1


def _thread_limit(config: TrainingConfig) -> Any:
    """``threadpool_limits`` to :func:`_threads` for a block that evaluates or fits.

    A limit reaches only the runtimes loaded when the block opens, and implicit's ALS solver
    (its own OpenMP runtime, loaded on its first import) would run on every core under a
    ``threads = 1`` the user set: it is loaded first.
    """
    import implicit.cpu.als  # noqa: F401  (loads the OpenMP runtime the limit must reach)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=_threads(config))


def _fit_one(
    name: str,
    config: TrainingConfig,
    data: Any,
    warm: _Warm | None = None,
    held: Choices | None = None,
) -> tuple[Any, float, str | None]:
    """Fit model ``name`` on ``data`` (warm-started when ``warm`` is given, holding the
    serving version's choices ``held``): the model, the seconds it took and, for a warm run,
    how it started."""
    start = time.perf_counter()
    model = _make(name, config, held)
    how = None
    if warm is not None:
        from training.warm import prepare

        how = prepare(
            name, model, data, warm[0], new_data=warm[1], interactions=config.interactions
        )
    with _thread_limit(config):
        model.fit(data)
    # what became of the warm start inside the fit (EASE corrected, or solved in full and why)
    note = getattr(model, "warm_note_", None) if how is not None else None
    if note:
        how = f"{how}; {note}"
    return model, time.perf_counter() - start, how


#: A warm start: the current version and the data built from the events after it (or None).
_Warm = tuple[Any, Any]


def _warm_start(
    registry: Registry,
    events: EventFrame,
    config: TrainingConfig,
    as_of: int | None,
    notify: Notify,
) -> _Warm | None:
    """The current version to start from and the training data of the events after it;
    ``None`` (a full run, said in a notice) when there is no current version."""
    from recsys.data.interactions import build_training_data
    from training.warm import Predecessor, new_events

    previous = Predecessor.current(registry)
    if previous is None:
        notify("notice: --warm-start: no current version to start from; training in full")
        return None
    every = config.warm_start.full_every_days
    if every > 0:
        full = previous.last_full_run
        now = int(events.ts.max()) if as_of is None else as_of
        if full is None or now - full > every * MICROS_PER_DAY:
            since = "unknown" if full is None else f"as of {_iso(full)}"
            notify(
                f"notice: --warm-start: the last full run behind {previous.version} ({since}) "
                f"is more than [warm_start] full_every_days = {every:g} days old; "
                "training in full"
            )
            return None
    changed = _changed_model_config(previous.manifest.get("training_config"), config)
    if changed:
        notify(
            f"notice: --warm-start: {previous.version} was trained with another "
            f"{', '.join(changed)}; training in full"
        )
        return None
    # events before that version's newest that it did not see (ingested late) or that are
    # gone (erased customers): its carried counts and stored lists would keep or miss them
    seen, then = int(np.count_nonzero(events.ts <= previous.last_event)), previous.events_seen
    if then is not None and seen != then:
        notify(
            f"notice: --warm-start: {seen:,} events up to {previous.version}'s newest now, "
            f"{then:,} when it was trained (events came late or were erased); training in full"
        )
        return None
    fresh = new_events(events, previous)
    new_data = build_training_data(fresh, config.interactions, as_of=as_of) if len(fresh) else None
    return previous, new_data


def _changed_model_config(trained: Any, config: TrainingConfig) -> list[str]:
    """The config sections a warm start cannot carry across, where the current version's
    (its manifest's ``training_config``) differs from ``config``: the interaction weights
    and each model's spec (``[models.<name>]``). A warm run publishes without metrics, so a
    changed setting would serve unevaluated; and it continues that version's factors and
    counts, fitted with the old settings (a model whose own parameters differ refuses them
    and is fitted cold, but nothing compared the interaction weights). The other sections
    (evaluation, promotion, threads...) do not reach a fitted model. A version whose
    manifest has no config (written before it was recorded) is not held against."""
    if not isinstance(trained, dict):
        return []
    now = config.model_dump(mode="json")
    changed = []
    if trained.get("interactions") != now["interactions"]:
        changed.append("[interactions]")
    before = trained.get("models") or {}
    for name, spec in now["models"].items():
        if name in before and before[name] != spec:
            changed.append(f"[models.{name}]")
    return changed


def _skip(name: str, exc: ModelError, skipped: dict[str, str], notify: Notify) -> None:
    skipped[name] = str(exc)
    notify(f"notice: model {name!r} skipped: {exc}")


def _serving_default(
    config: TrainingConfig, fitted: Mapping[str, Any], skipped: Mapping[str, str], notify: Notify
) -> tuple[str, dict[str, str] | None]:
    """The model that serves, and the manifest's ``default_fallback`` when it is not the
    configured default (``None`` when it is).

    Raises
    ------
    ModelError
        Neither the default model nor a fallback trained: there is nothing to serve.
    """
    configured = config.default_model
    if configured in fitted:
        return configured, None
    why = skipped.get(configured, "not trained")
    for name in FALLBACK_DEFAULTS:
        if name in fitted:
            notify(
                f"notice: the default model {configured!r} cannot be trained ({why}); "
                f"{name!r} serves instead"
            )
            return name, {"configured": configured, "model": name, "reason": why}
    tried = ", ".join(FALLBACK_DEFAULTS)
    raise ModelError(
        f"the default model {configured!r} cannot be trained: {why}; "
        f"and no fallback ({tried}) was trained (enable one in the config)"
    )


def _evaluate(
    events: EventFrame,
    config: TrainingConfig,
    as_of: int,
    catalog: list[CatalogItem],
    *,
    skipped: dict[str, str],
    notify: Notify,
) -> tuple[dict[str, dict[str, float | None]], dict[str, Any]]:
    """Fit on the events before the cut, measure on the purchases after it.

    Models that cannot fit the pre-cut data are skipped (the default model failing fails the
    run): :func:`~recsys.evaluation.protocol.evaluate_models` goes on with the others and
    scores none of its rows. Returns flattened metrics per model and a description of the
    holdout (with the sample, each metric's 95 % confidence interval and, under
    ``"orders"``, the metrics of each hybrid's other orders: see :func:`_served_orders`).
    """
    from recsys.evaluation.protocol import evaluate_models

    ev = config.evaluation
    if not ev.enabled:
        return {}, {"skipped": "disabled in the config"}
    cut = holdout_cut(as_of, config)
    names = config.evaluated_models()
    info = holdout_info(cut, config, names)
    orders = OrderVariants()
    try:
        with _thread_limit(config):
            result = evaluate_models(
                events,
                {n: partial(_evaluated, n, config) for n in names},
                cut=cut,
                k=ev.k,
                interaction_config=config.interactions,
                catalog=catalog,
                max_users=ev.max_users or None,
                seed=ev.seed,
                variants=orders,
            )
    except DataError as exc:
        notify(f"notice: evaluation skipped: {exc}")
        return {}, {**info, "skipped": str(exc)}
    for name, why in result.skipped.items():
        _skip(name, ModelError(why), skipped, notify)
    return holdout_entries(result, info, orders.chosen, config)


def holdout_cut(as_of: int, config: TrainingConfig) -> int:
    """The holdout's cut: ``holdout_days`` before ``as_of``, at the start of that UTC day."""
    cut = as_of - int(config.evaluation.holdout_days * MICROS_PER_DAY)
    return cut - cut % MICROS_PER_DAY  # a date a person can name, as recsys evaluate uses


def holdout_info(cut: int, config: TrainingConfig, names: list[str]) -> dict[str, Any]:
    """The manifest's ``evaluation`` entry before any measurement: the cut, the window, ``k``
    and the enabled models not among ``names`` (the evaluated ones)."""
    ev = config.evaluation
    info: dict[str, Any] = {"cut": _iso(cut), "holdout_days": ev.holdout_days, "k": ev.k}
    not_evaluated = [n for n in config.enabled_models() if n not in names]
    if not_evaluated:
        info["not_evaluated"] = not_evaluated
    return info


class OrderVariants:
    """The holdout's variants (:func:`~recsys.evaluation.protocol.evaluate_models`): a
    hybrid whose order its tests choose is scored in every order of the same fit
    (:meth:`~recsys.models.hybrid.HybridModel.order_choices`), and the final fit's tests
    pick the one that counts (:func:`_served_orders`). ``chosen`` holds each such hybrid's
    orders by name, the one its evaluation fit serves first."""

    def __init__(self) -> None:
        self.chosen: dict[str, tuple[ServedOrder, ...]] = {}

    def __call__(self, name: str, model: Any) -> dict[str, Any]:
        """``model``'s fit in its other orders by their names, or nothing."""
        orders = model.order_choices() if isinstance(model, HybridModel) else ()
        if not orders:
            return {}
        self.chosen[name] = orders
        return {
            _order_name(name, order): model.in_order(
                order.first, order.discover_weight, order.discover_by
            )
            for order in orders[1:]
        }


def holdout_entries(
    result: EvaluationResult,
    info: dict[str, Any],
    chosen: Mapping[str, Sequence[ServedOrder]],
    config: TrainingConfig,
) -> tuple[dict[str, dict[str, float | None]], dict[str, Any]]:
    """Flattened metrics per model and the manifest's ``evaluation`` entry (``info``
    completed: the sample, each metric's 95 % confidence interval, the fit and score seconds
    and, under ``"orders"``, the metrics of each hybrid's other orders)."""
    ev = config.evaluation
    info.update(
        users=result.n_users,
        users_eligible=result.n_users_eligible,
        users_new=result.n_users_new,
        train_events=result.n_train_events,
        test_purchases=result.n_test_purchases,
    )
    if result.sampled:
        info["sample"] = {"max_users": ev.max_users, "seed": ev.seed}
    # where the evaluate stage's time went, model by model (on the pre-cut data)
    info["fit_seconds"] = {m.name: round(m.fit_seconds, 3) for m in result.models}
    info["score_seconds"] = {m.name: round(m.score_seconds, 3) for m in result.models}
    metrics: dict[str, dict[str, float | None]] = {}
    ci95: dict[str, dict[str, list[float | None]]] = {}
    for m in result.models:
        flat = {f"{k}@{ev.k}": v for k, v in m.all_items.items()}
        flat.update({f"new_{k}@{ev.k}": v for k, v in m.new_items.items()})
        flat.update(coverage=m.coverage, novelty=m.novelty, gini=m.gini)
        metrics[m.name] = {k: _finite(v) for k, v in flat.items()}
        intervals = {f"{k}@{ev.k}": v for k, v in m.all_items_ci95.items()}
        intervals.update({f"new_{k}@{ev.k}": v for k, v in m.new_items_ci95.items()})
        ci95[m.name] = {k: [_finite(lo), _finite(hi)] for k, (lo, hi) in intervals.items()}
    info["ci95"] = ci95
    entries: dict[str, Any] = {}
    for name, (served, *others) in chosen.items():
        entries[name] = {
            **asdict(served),
            "others": [
                {
                    **asdict(order),
                    "metrics": metrics.pop(_order_name(name, order)),
                    "ci95": ci95.pop(_order_name(name, order)),
                }
                for order in others
            ],
        }
        for seconds in (info["fit_seconds"], info["score_seconds"]):
            for order in others:
                seconds.pop(_order_name(name, order), None)
    if entries:
        info["orders"] = entries
    return metrics, info


def _order_name(name: str, order: ServedOrder) -> str:
    mix = f"{order.discover_by} {order.discover_weight:g}" if order.discover_weight else "0"
    return f"{name}[first={order.first}, discover={mix}]"


def _order_of(entry: Mapping[str, Any]) -> ServedOrder:
    # an entry written before the EASE mix existed mixed popularity in
    by = str(entry.get("discover_by", "popularity"))
    return ServedOrder(bool(entry["first"]), float(entry["discover_weight"]), by)


def _served_orders(
    metrics: dict[str, dict[str, float | None]],
    evaluation: dict[str, Any],
    fitted: Mapping[str, Any],
) -> None:
    """Make ``metrics`` (and the manifest's evaluation) those of the order each hybrid's
    final fit serves, in place.

    The evaluation's fit runs no test and the holdout scores it in every order its tests
    choose among (:func:`_evaluate`); the final fit's tests, on the newest window, choose
    the order that serves. Where that is another, its metrics become the model's, so the
    promotion gate passes the order that serves. Two tests, one per fit, could choose
    differently: ``make run``'s first train chose own purchases first before the holdout
    (t = 4.22) and the learned order in its final fit (t = -3.07), and the gate read the
    order that did not serve. ``evaluation["orders"][name]`` says which order the model's
    metrics are (``first``, ``discover_weight``, ``discover_by``), the others' sit beside
    them.
    """
    for name, entry in (evaluation.get("orders") or {}).items():
        final = ServedOrder.of_model(fitted.get(name))
        if final is None or name not in metrics:
            continue
        others: list[dict[str, Any]] = entry["others"]
        match = next((o for o in others if _order_of(o) == final), None)
        if match is None:  # the served order, or one the holdout did not score
            continue
        ci95 = evaluation["ci95"]
        others.remove(match)
        others.append({**asdict(_order_of(entry)), "metrics": metrics[name], "ci95": ci95[name]})
        metrics[name], ci95[name] = match["metrics"], match["ci95"]
        entry.update(asdict(final))


def _finite(value: float) -> float | None:
    value = float(value)
    return None if not np.isfinite(value) else value


def _fit_all(
    config: TrainingConfig,
    data: Any,
    *,
    skipped: dict[str, str],
    notify: Notify,
    warm: _Warm | None = None,
    held: Choices | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    from tqdm import tqdm

    names = [n for n in config.enabled_models() if n not in skipped]
    fitted: dict[str, Any] = {}
    info: dict[str, dict[str, Any]] = {}
    for name in tqdm(names, desc="fit", unit="model", file=sys.stderr, disable=None, leave=False):
        try:
            model, seconds, how = _fit_one(name, config, data, warm, held)
        except ModelError as exc:
            _skip(name, exc, skipped, notify)
            continue
        fitted[name] = model
        info[name] = {
            "name": name,
            "model": config.models[name].model or name,
            "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "params": _jsonable(model.get_params()),
            "fit_seconds": round(seconds, 3),
        }
        if how is not None:
            info[name]["warm_start"] = how
        if (report := model.fit_report()) is not None:
            info[name]["fit_report"] = _jsonable(report)
    return fitted, info


def _decide(
    registry: Registry,
    config: TrainingConfig,
    metrics: Mapping[str, Mapping[str, float | None]],
    *,
    force: bool,
    promote: bool,
    default_model: str,
) -> tuple[bool, str]:
    """Whether the new version may serve, and why (the promotion gate on the metric of
    ``default_model``, the model that serves: the configured default or its fallback)."""
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
    old = (old_manifest.get("metrics") or {}).get(old_model, {}).get(metric)
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
    compared = f"{metric} {new:.4f} vs {old:.4f} of current version {current}"
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


def _other_numerics(manifest: Mapping[str, Any]) -> str:
    """What differs between the numerics a version was trained with and this process's (see
    :func:`recsys.environment.numerics_differ`); empty when nothing does, or when the version
    recorded nothing to compare (an older version)."""
    now = {"libraries": library_versions(), "platform": {"blas": blas_kernels()}}
    return ", ".join(numerics_differ(manifest, now))


# -- the version folder --------------------------------------------------------------------------


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
    hybrid: :class:`~recsys.retrieval.ann.SearchesIndex`) has the index's answers for the
    customers scored here kept first, in one batch that the lists then read, and saved
    beside the index (:func:`_keep_answers`; ``ann_entry``, the model's ``ann`` entry,
    gets their ``answers``): those customers' live requests read them instead of searching.

    ``threads``: the run's (:func:`recsys.engine.precompute`'s).

    Returns the manifest's ``precomputed`` entry (customers with a list, of how many, the
    window), or ``None`` when the default model was not trained.
    """
    from recsys.engine import precompute
    from recsys.models.base import Explains
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
    ``n_users``) of a :class:`~recsys.retrieval.ann.SearchesIndex` model, and write them
    beside the index; the ``ann`` entry's ``answers`` (``None`` for any other model)."""
    from recsys.artifacts import index_base
    from recsys.retrieval.ann import SearchesIndex

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

    A model that searches vectors of its own (:class:`~recsys.retrieval.ann.SearchesIndex`:
    the hybrid's ALS generator) gets one over them the same way, and is handed it at once, so
    the stored lists written after this come from it as the served ones do.

    The index file lies in the version folder, so the registry hashes it with every other
    file and :meth:`~recsys.registry.Registry.verify` checks it before the engine reads it.
    Returns the manifest's ``ann`` table (model name -> file relative to the version, index
    parameters, build seconds) and the built indexes by model name.
    """
    from recsys.artifacts import index_base
    from recsys.retrieval.ann import (
        FaissIndex,
        SearchesIndex,
        UsearchIndex,
        build_index,
        indexed_vectors,
        save_index,
    )

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
        index = build_index(vectors, config=config.ann, threads=_threads(config))
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
            "params": _jsonable(index.params),
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
        "as_of": _iso(data.as_of),
        "data_window": {
            "first_event": _iso(int(ts.min())) if len(ts) else None,
            "last_event": _iso(int(ts.max())) if len(ts) else None,
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _iso(us: int) -> str:
    return from_micros(us).isoformat()


# -- progress --------------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """The process's peak resident memory so far, in MiB (``ru_maxrss``: KiB on Linux).

    A high-water mark, never lowered: read after a stage, it is the peak of every stage up to
    and including that one, which is what a memory limit on the whole run has to allow for.
    """
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # macOS reports bytes, Linux KiB
    return round(kib / (2**20 if sys.platform == "darwin" else 2**10), 1)


class _Progress:
    """A stage bar on stderr (hidden when stderr is not a terminal), per-stage timings, CPU
    seconds (``cpu_seconds``: every thread of the process; on a loaded machine the wall time
    says more about the neighbours than about the stage) and the peak resident memory at the
    end of each stage (``peaks``, MiB)."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.cpu_seconds: dict[str, float] = {}
        self.peaks: dict[str, float] = {}

    def __enter__(self) -> _Progress:
        from tqdm import tqdm

        self.bar = tqdm(
            total=len(_STAGES), desc="train", unit="stage", file=sys.stderr, disable=None
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.bar.set_postfix_str(name)
        start = time.perf_counter()
        cpu = time.process_time()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - start
            self.cpu_seconds[name] = time.process_time() - cpu
            self.peaks[name] = peak_rss_mib()
            log.info(
                "stage %s: %.2f s, peak memory %.0f MiB", name, self.timings[name], self.peaks[name]
            )
        self.bar.update(1)


def parse_as_of(text: str) -> int:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO datetime with a zone -> microseconds UTC."""
    from recsys.data.schema import to_micros

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DataError(f"--as-of: {text!r} is not a date (YYYY-MM-DD) or ISO datetime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_micros(moment)


def open_default(settings: Settings) -> tuple[EventStore, Registry]:
    """The store and registry the settings point at."""
    from recsys.store import open_store

    return open_store(settings), Registry(settings.registry_path)
