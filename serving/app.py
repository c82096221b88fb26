"""The FastAPI application factory.

``create_app`` reads settings once, and the lifespan opens the store and loads the registry's
current version (the app is *ready* only with a valid one). Tests pass their own settings,
store, registry or model loader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from recsys.commands.serve import SUPERVISOR_ENV
from recsys.engine import ModelLoader
from recsys.errors import RecsysError
from recsys.experiments.exposures import ExposureWriter
from recsys.experiments.registry import ExperimentRegistry, experiments_path
from recsys.offers.service import OfferService, promotions_path, read_catalog
from recsys.ranking.rules import RulesFile
from recsys.settings import load_settings
from recsys.store.base import EventStore
from serving import errors, ui
from serving.logs import install_access_log_filter
from serving.metrics import Metrics
from serving.middleware import GuardMiddleware
from serving.responses import OrjsonResponse
from serving.routes import admin, events, experiments, health, items, offers, sessions, users
from serving.settings import ServingSettings
from serving.state import ServingState

log = logging.getLogger(__name__)


def create_app(
    settings: ServingSettings | None = None,
    *,
    store: EventStore | None = None,
    registry: Any = None,
    model_loader: ModelLoader | None = None,
) -> FastAPI:
    """Build the API.

    Parameters
    ----------
    settings
        Read from ``RECSYS_*`` environment variables when not given (once, here).
    store, registry
        Default to the ones the settings point at.
    model_loader
        How a saved model is loaded (tests use fakes); see :class:`recsys.engine.Engine`.
    """
    settings = settings or load_settings(ServingSettings)
    install_access_log_filter(customer_ids=settings.log_customer_ids)
    rules = settings.load_rules()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One BLAS thread per process: many request threads each running a multi-threaded BLAS
        # oversubscribe the cores and collapse throughput.
        limiter = threadpool_limits(limits=1)
        state = _build_state(settings, store, registry, rules, metrics, model_loader)
        if settings.request_threads:
            # the pool that runs every synchronous route (FastAPI's and run_in_threadpool's):
            # requests beyond it wait in arrival order instead of time-slicing the GIL, so a
            # slower request (a live list, offers) is not stretched by every one in flight;
            # event intake, short and mostly waiting on the store, keeps a pool of the
            # framework's size, so a write held by a batch job's lock never holds the reads
            default = anyio.to_thread.current_default_thread_limiter()
            state.write_limiter = anyio.CapacityLimiter(default.total_tokens)
            default.total_tokens = settings.request_threads
        app.state.recsys = state
        state.experiments = ExperimentRegistry(experiments_path(settings)).load()
        state.exposures = ExposureWriter(
            state.store,
            max_queue=settings.exposure_queue,
            batch_size=settings.exposure_batch,
            flush_interval_ms=settings.exposure_flush_ms,
            on_outcome=lambda outcome, n: metrics.exposures.labels(outcome=outcome).inc(n),
        ).start()
        if settings.offers_enabled:
            state.offers = _offer_service(settings, state.store).start()
        state.service.experiments = state.experiments
        state.service.exposures = state.exposures
        state.service.offers = state.offers
        state.live.on_change(state.reload_shared_files)
        # the version first: the live catalogue then reads only the rows changed since it
        try:
            await asyncio.to_thread(state.reload)
        except RecsysError as exc:
            log.error("no model version loaded; /readyz answers 503: %s", exc)
        try:
            await asyncio.to_thread(state.live.refresh)
        except RecsysError as exc:
            log.error("cannot read the store's live state: %s", exc)
        if state.offers is not None and state.engine is not None:
            # the day's shop context is built before this worker takes a request: a request
            # that waited for it took 5-45 s (benchmarks/RESULTS.md, "Offers per customer"),
            # while a worker starting up is skipped by the connections (the others answer)
            try:
                started = time.perf_counter()
                # with the live catalogue laid over the version, as requests will ask
                await asyncio.to_thread(_prepare_offers, state)
                if state.offers.ready:
                    log.info("offer context ready in %.1f s", time.perf_counter() - started)
            except RecsysError as exc:
                log.error("offer context not built at start-up (built on first use): %s", exc)
        tasks = [asyncio.create_task(_follow_live(state, settings.live_refresh_s))]
        supervisor = os.environ.get(SUPERVISOR_ENV, "")
        if supervisor.isdigit() and int(supervisor) == os.getppid():
            tasks.append(asyncio.create_task(_follow_supervisor(int(supervisor))))
        if settings.watch_interval_s > 0:
            tasks.append(asyncio.create_task(_watch(state, settings.watch_interval_s)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # what is queued is written before the process goes
            if state.exposures is not None:
                await asyncio.to_thread(state.exposures.close)
            if state.offers is not None:
                await asyncio.to_thread(state.offers.close)
            state.release_lease()
            limiter.restore_original_limits()

    app = FastAPI(
        title="recsys",
        version="1",
        summary="Recommendations and personalised offers for e-commerce.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        # /docs is served by serving.ui from packaged files (the default loads a CDN)
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    for module in (users, sessions, items, events, admin, health, experiments, offers):
        app.include_router(module.router)
    ui.install(app, home=settings.home)
    app.add_middleware(
        GuardMiddleware,
        max_in_flight=settings.max_in_flight,
        max_body=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        metrics=metrics,
    )
    return app


def _build_state(
    settings: ServingSettings,
    store: EventStore | None,
    registry: Any,
    rules: RulesFile,
    metrics: Metrics,
    model_loader: ModelLoader | None,
) -> ServingState:
    if store is None:
        from recsys.store import open_store

        store = open_store(settings)
        store.migrate()
    if registry is None:
        from recsys.registry import Registry

        registry = Registry(settings.registry_path)
    return ServingState(settings, store, registry, rules, metrics, model_loader)


async def _follow_supervisor(pid: int, interval_s: float = 1.0) -> None:
    """Stop this worker (as SIGTERM does: queued exposures are written) once its supervisor
    ``pid`` is gone (the worker is then another process's child)."""
    while os.getppid() == pid:
        await asyncio.sleep(interval_s)
    log.error("the server's supervisor (pid %d) is gone: this worker stops", pid)
    os.kill(os.getpid(), signal.SIGTERM)


def check_config(
    settings: ServingSettings | None = None, *, store: bool = False
) -> ServingSettings:
    """Read and validate every file a worker reads as it starts (settings, business rules,
    experiments, promotions), and with ``store`` open the store and apply its migrations as a
    worker does, so that ``recsys serve`` refuses a bad one, or a store it cannot use
    (PostgreSQL down, a read-only state folder), once, in one line, before any worker starts.

    A worker that fails in :func:`create_app` is started again by uvicorn's supervisor, over
    and over, with ``--workers`` above 1; one that fails in the lifespan ends the server with
    a traceback, and a multi-worker server then exits with status 0.

    Raises
    ------
    ConfigError
        A setting or one of the files is invalid (the message names it).
    StoreError
        The store cannot be opened or migrated.
    """
    settings = settings or load_settings(ServingSettings)
    if store:
        from recsys.store import open_store

        opened = open_store(settings)
        try:
            opened.migrate()
        finally:
            opened.close()
    settings.load_rules()
    ExperimentRegistry(experiments_path(settings)).load()
    promotions = promotions_path(settings)
    if settings.offers_enabled and promotions.exists():
        read_catalog(promotions)
    return settings


def _offer_service(settings: ServingSettings, store: EventStore) -> OfferService:
    """The offers of this process: the promotions file, and the serving day (fixed or today)."""
    fixed = settings.offers_date
    service = OfferService(
        store, promotions_path(settings), today=(lambda: fixed) if fixed else None
    )
    return service.load()


def _prepare_offers(state: ServingState) -> None:
    assert state.offers is not None and state.engine is not None
    state.offers.prepare(state.service.prepare(state.engine), wait=True)


async def _follow_live(state: ServingState, interval: float) -> None:
    """Keep this worker's view of the store's live state fresh (erasures, catalogue,
    experiments, promotions changed by any process)."""
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(state.live.maybe_refresh, force=True)


async def _watch(state: ServingState, interval: float) -> None:
    """Poll the registry's CURRENT and hot-reload when it changes."""
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(state.reload_if_changed)
