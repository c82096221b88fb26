"""The offline training pipeline behind ``recsys train``.

Stages, each timed and shown on a progress bar (stderr):

1. **read** the events and the catalogue from the store;
2. **build** the training data, measured from ``as_of`` — the newest event, or ``--as-of``;
   time is always the data's, never the wall clock, so a rerun on the same data is the same run;
3. **evaluate** on a time-based holdout (:mod:`training.holdout`): every enabled model (but
   those with ``evaluate = false``; never the default model) is fitted once on the events
   before ``as_of - holdout_days`` and judged by
   :func:`recsys.evaluation.protocol.evaluate_models` on the purchases after it (a seeded
   sample of ``max_users`` customers on a larger shop, each mean with its confidence
   interval); a model that refuses that data is skipped, neither scored there nor fitted
   again in the next stage;
4. **fit** every enabled model on all the data;
5. **publish** a new version into the registry (:mod:`training.publish`; atomically: a
   failure publishes nothing), with the default model's top lists of the customers active in
   the last ``[precompute] active_days`` (the others are scored when asked for; a warm run
   keeps the current version's list of each customer with no event since it);
6. **promote** it, unless the gated metric is worse than the current version's by more than
   the allowed margin (``--force`` overrides; the version stays in the registry, not promoted).

The default configuration adapts to the data: a model that cannot fit it (EASE on a catalogue
too large for a dense item-item matrix, "often viewed with" on data without views, every model
that learns from customers on data with guests only) is skipped with a notice. When the default
model itself cannot be trained, the first trained model of a kind in
:data:`FALLBACK_DEFAULTS` serves instead (:func:`training.publish.serving_default`): the
version's manifest names it as ``default_model`` and records the configured one and the reason
under ``default_fallback``; the run fails only when none of them trained.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from recsys.concurrency import prediction_threads
from recsys.data.schema import (
    CART,
    MICROS_PER_DAY,
    PURCHASE,
    RETURN,
    VIEW,
    CatalogItem,
    EventFrame,
    from_micros,
)
from recsys.errors import ArtifactError, ConfigError, DataError, ModelError, RegressionError
from recsys.models.kernels import shared_ease_solves
from recsys.registry import Registry
from recsys.settings import Settings
from recsys.store.base import EventStore
from training.config import TrainingConfig, check_model_params
from training.holdout import evaluate_holdout, served_orders, serving_choices
from training.publish import (
    EVENTS_SEQ_KEY,
    CatalogRead,
    Fitted,
    TrainingResult,
    publish_run,
    serving_default,
)
from training.stages import (
    Choices,
    Notify,
    Progress,
    fit_threads,
    iso_time,
    jsonable,
    make_model,
    print_notice,
    skip_model,
    thread_limit,
)
from training.warm import FULL_RUN_KEY

#: Kinds of model (registry names) that serve when the configured default cannot be trained,
#: first trained first: they need no customer, so a shop whose visitors are all guests still
#: gets a usable version.
FALLBACK_DEFAULTS = ("popular", "trending")

#: Manifest key of the fingerprint of what a version was trained on.
FINGERPRINT_KEY = "data_fingerprint"


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
        promotion was refused (training again would be refused again), or it was promoted
        and then rolled back (the operator took it out of service).
    """
    current = registry.current_version()
    if current:
        try:
            if registry.manifest(current).get(FINGERPRINT_KEY) == fingerprint:
                return current
        except ArtifactError:
            pass  # an unreadable current version is trained on nothing: train (and replace it)
    for version in registry.version_names():
        if version == current or (current and version < current):
            break  # only versions published after the current one
        try:
            manifest = registry.manifest(version)
        except ArtifactError:
            continue  # a broken version was trained on nothing usable
        if manifest.get(FINGERPRINT_KEY) == fingerprint:
            promotion = manifest.get("promotion") or {}
            if promotion.get("promoted"):
                raise RegressionError(
                    f"version {version} was already trained on this data and config, promoted, "
                    f"and then rolled back to {current}; `recsys train` without --if-changed "
                    f"trains again, `recsys models promote {version}` serves it again"
                )
            reason = promotion.get("reason", "not promoted")
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
    notify: Notify = print_notice,
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
        prediction_threads(fit_threads(config)),
        Progress(timings) as progress,
    ):
        with progress.stage("read"):
            # up to the newest stored now: an event stored later, whatever its time, is one
            # this version did not see, and serving folds it in (EVENTS_SEQ_KEY)
            events_seq = store.last_event_seq()
            events = store.read_events(until=as_of, through_seq=events_seq)
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
            # after the up-to-date check: a version trained on this input passed it already
            check_weights(events, config, notify)
            # None: measured from the newest event, which is then included (an explicit
            # as_of is exclusive).
            data = _build(events, config, as_of, catalog)

        skipped: dict[str, str] = {}
        warm = _warm_start(registry, events, config, as_of, notify) if warm_start else None
        held = serving_choices(registry, config)
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
                metrics, evaluation = evaluate_holdout(
                    events, config, data_as_of, catalog, skipped=skipped, notify=notify
                )

        # shared_ease_solves: EASEModel and the hybrid's EASE generator solve one problem once
        with progress.stage("fit"), shared_ease_solves():
            fitted, fit_info = _fit_all(
                config, data, skipped=skipped, notify=notify, warm=warm, held=held
            )
        served_orders(metrics, evaluation, fitted)
        default, fallback = serving_default(config, fitted, skipped, notify, FALLBACK_DEFAULTS)
        carry = None
        if warm is not None and config.precompute.carry_on_warm_start:
            since = events.user_id[events.ts > warm[0].last_event]
            changed = data.users.indices({u for u in since if u})
            carry = warm[0], changed, fit_info.get(default, {}).get("warm_start")
        # a warm version passes on the as-of of the full run it continues
        full_run = data.as_of if warm is None else warm[0].last_full_run
        extra: dict[str, Any] = {
            FINGERPRINT_KEY: fingerprint,
            FULL_RUN_KEY: None if full_run is None else iso_time(full_run),
            EVENTS_SEQ_KEY: events_seq,
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


def check_weights(events: EventFrame, config: TrainingConfig, notify: Notify) -> None:
    """Compare ``[interactions] weights`` with the event types the customers' events have.

    A misspelt type in the weights weighs nothing and says nothing: ``purchse`` left every
    purchase out of the matrix, and ``veiw, crat, purchse`` left no customer at all, so every
    customer model was skipped as if the shop had only guests. Here a weighted type no
    customer event has, and a standard type the customers have that the weights leave out,
    are notices; weights that give none of the customers' events a weight are an error.

    Raises
    ------
    ConfigError
        Customers have events, and none of their types has a weight above 0.
    """
    theirs = events.event_type[events.user_id != ""]
    if len(theirs) == 0:
        return  # guests only: the customer models are skipped, and say why
    present = Counter(theirs.tolist())  # a hash count: a sort of 10^7 strings takes seconds
    shown = ", ".join(f"{t} {n:,}" for t, n in sorted(present.items(), key=lambda kv: -kv[1]))
    weights = config.interactions.weights
    if not any(weights.get(t, 0.0) > 0 for t in present if t != RETURN):
        raise ConfigError(
            f"[interactions] weights ({', '.join(weights) or 'none'}) give none of the "
            f"customers' {len(theirs):,} events a weight: their types are {shown}"
        )
    for name in weights:
        if name not in present and name not in (VIEW, CART, PURCHASE):
            notify(
                f"notice: [interactions] weights: no customer event has the type {name!r} "
                f"(their types: {shown}); a misspelling?"
            )
    for name in (PURCHASE, CART, VIEW):
        if name in present and name not in weights:
            notify(
                f"notice: [interactions] weights has no {name!r}: the customers' "
                f"{present[name]:,} {name} events weigh nothing"
            )


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
            f"notice: the newest purchase ({iso_time(newest)}) is {days:,.0f} days before the "
            f"as-of ({iso_time(as_of)}): models that learn from recent purchases see none; "
            "if the newer events are not the shop's, pass --as-of"
        )


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
    model = make_model(name, config, held)
    how = None
    if warm is not None:
        from training.warm import prepare

        how = prepare(
            name, model, data, warm[0], new_data=warm[1], interactions=config.interactions
        )
    with thread_limit(config):
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
            since = "unknown" if full is None else f"as of {iso_time(full)}"
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
            skip_model(name, exc, skipped, notify)
            continue
        fitted[name] = model
        info[name] = {
            "name": name,
            "model": config.models[name].model or name,
            "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "params": jsonable(model.get_params()),
            "fit_seconds": round(seconds, 3),
        }
        if how is not None:
            info[name]["warm_start"] = how
        if (report := model.fit_report()) is not None:
            info[name]["fit_report"] = jsonable(report)
    return fitted, info


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
