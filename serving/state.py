"""What the running API holds: settings, the store, and the engine now serving.

The engine is swapped atomically: :meth:`ServingState.reload` builds a whole new
:class:`~recsys.engine.Engine` and only then replaces one reference, so a request that already
took the old engine finishes on it, and a version that fails to load leaves the old one serving.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from pathlib import Path
from typing import Any

import anyio

from recsys.engine import Engine, ModelLoader
from recsys.errors import ArtifactError, ModelError, NotFoundError, RecsysError
from recsys.experiments.exposures import ExposureWriter
from recsys.experiments.registry import ExperimentRegistry
from recsys.live import LiveState
from recsys.memory import release_free_memory
from recsys.offers.service import OfferService
from recsys.ranking.rules import RulesFile
from recsys.service import RecommendationService
from recsys.store.base import EventStore
from recsys.store.writer import WriterHealth
from serving.metrics import Metrics
from serving.settings import ServingSettings

log = logging.getLogger(__name__)


class ServingState:
    """The state of one app instance (kept on ``app.state.recsys``)."""

    def __init__(
        self,
        settings: ServingSettings,
        store: EventStore,
        registry: Any,
        rules: RulesFile,
        metrics: Metrics,
        model_loader: ModelLoader | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.rules = rules
        self.metrics = metrics
        self.model_loader = model_loader
        self.engine: Engine | None = None
        self.last_error: str | None = None
        self.loaded_at: float | None = None
        self._reload_lock = threading.Lock()
        # A/B experiments: set up in the app's lifespan (None: no experiments are served).
        self.experiments: ExperimentRegistry | None = None
        self.exposures: ExposureWriter | None = None
        # Personalised offers: set up in the app's lifespan (None: the endpoints answer 404).
        self.offers: OfferService | None = None
        # The threads event intake runs on when reads have a bounded pool
        # (RECSYS_REQUEST_THREADS): set up in the app's lifespan (None: the reads' pool).
        self.write_limiter: anyio.CapacityLimiter | None = None
        # The store's live state (erasures, catalogue) as this process last read it, and the
        # one request path that uses it: both set up in the app's lifespan.
        self.live = LiveState(store, interval_s=settings.live_refresh_s)
        self.service = RecommendationService(
            store,
            self,
            self.live,
            live_events=settings.live_events,
            on_variant_fallback=lambda exp, variant: metrics.variant_fallbacks.labels(
                experiment=exp, variant=variant
            ).inc(),
        )
        # Variants' model versions other than the current one: loaded once, verified like it.
        self._versions: dict[str, Engine | None] = {}
        self._versions_lock = threading.Lock()

    def reload_shared_files(self, generation: int) -> None:
        """Re-read the experiments, promotions and rules files (another process may have
        changed them through the admin API or the merchandiser's page; it raised the store's
        generation). A file that fails to load is logged and the one in force keeps serving;
        the others are still re-read."""

        def rules() -> None:
            new = self.settings.load_rules()
            # compare the values: the objects differ (and carry caches) after every re-read
            if new.model_dump() != self.rules.model_dump():
                self.apply_rules(new)

        steps = [
            ("experiments", self.experiments.load if self.experiments is not None else None),
            ("promotions", self.offers.load if self.offers is not None else None),
            ("rules", rules),
        ]
        for name, step in steps:
            if step is None:
                continue
            try:
                step()
            except RecsysError as exc:
                log.warning(
                    "the %s file could not be re-read; the one in force serves: %s", name, exc
                )
        engine = self.engine
        if engine is not None:
            # lay the new catalogue over the serving version here, in the refresher's thread,
            # not in the first request after the change (it runs on the event loop)
            self.service.prepare(engine)

    def apply_rules(self, rules: RulesFile) -> None:
        """Serve with ``rules`` from now on: the serving version is re-ranked (its models are
        shared, not reloaded) and variants' versions are loaded again with them on next use."""
        with self._reload_lock:
            self.rules = rules
            engine = self.engine
            if engine is not None:
                self.engine = engine.with_rules(rules)
            with self._versions_lock:
                self._versions.clear()
        log.info("business rules reloaded from %s", self.settings.rules_path)

    def engine_for_version(self, version: str) -> Engine | None:
        """The engine of ``version`` (the serving one, or a cached extra one); ``None`` when it
        failed to load (logged once; not retried until the next reload of the main version)."""
        engine = self.engine
        if engine is not None and engine.version == version:
            return engine
        with self._versions_lock:
            if version in self._versions:
                return self._versions[version]
            extra: Engine | None = None
            try:
                extra = Engine.load(
                    Path(self.registry.path(version)),
                    self.registry,
                    rules=self.rules,
                    model_loader=self.model_loader,
                )
                extra.warm_up()
            except RecsysError as exc:
                log.warning("variant model version %s cannot be loaded: %s", version, exc)
            self._versions[version] = extra
            if extra is not None:
                self._lease()
                self._follow_catalog()
            return extra

    def _follow_catalog(self) -> None:
        """Hold the live catalogue rows the loaded versions need: those changed after the
        oldest of their catalogues (called with ``_versions_lock`` held)."""
        engines = [e for e in (self.engine, *self._versions.values()) if e is not None]
        if not engines:
            return
        try:
            store_id = self.live.store_id
            self.live.follow_catalog(min(e.catalog_read_at(store_id) for e in engines))
        except RecsysError as exc:  # the view stays as it was: still right, only bigger
            log.warning("live catalogue: cannot read the store: %s", exc)

    def writers(self) -> list[WriterHealth]:
        """The background writers' health (exposures, offer impressions)."""
        out = []
        if self.exposures is not None:
            out.append(self.exposures.health())
        if self.offers is not None:
            out.append(self.offers.writer.health())
        return out

    def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` answers: ready when a version is loaded and the store answers."""
        reasons: list[str] = []
        store_ok = True
        try:
            self.store.ping()
        except RecsysError as exc:
            store_ok = False
            reasons.append(f"store: {exc}")
        self.metrics.store_up.set(1 if store_ok else 0)
        if self.engine is None:
            reasons.insert(0, self.last_error or "no model version loaded")
        writers = {
            w.name: {
                "alive": w.alive,
                "queued": w.queued,
                "failing_for_s": round(w.failing_for_s, 3),
                "last_error": w.last_error if w.failing_for_s else None,
            }
            for w in self.writers()
        }
        ready = self.engine is not None and store_ok
        body: dict[str, Any] = {
            "status": "ready" if ready else "not ready",
            "model_version": self.engine.version if self.engine else None,
            "store": "ok" if store_ok else "unavailable",
            "writers": writers,
        }
        if self.offers is not None:
            body["offers"] = "ready" if self.offers.ready else "building"
        failing = [
            f"{n} writer failing: {w['last_error']}"
            for n, w in writers.items()
            if w["failing_for_s"]
        ]
        if reasons or failing:
            body["reason"] = "; ".join(reasons + failing)
        return body

    def observe(self) -> None:
        """Refresh the gauges that are read, not counted (before ``/metrics`` renders)."""
        for w in self.writers():
            self.metrics.writer_failing.labels(writer=w.name).set(w.failing_for_s)
            self.metrics.writer_queued.labels(writer=w.name).set(w.queued)
        self.metrics.live_refresh_failures.set(self.live.failures)

    def _lease(self, also: str | None = None) -> None:
        """Tell the registry which versions this process has loaded (``prune`` keeps them)."""
        lease = getattr(self.registry, "lease", None)
        if not callable(lease):
            return  # a registry without leases (tests' fakes)
        loaded = {v for v, e in self._versions.items() if e is not None}
        if self.engine is not None:
            loaded.add(self.engine.version)
        if also:
            loaded.add(also)
        try:
            lease(loaded)
        except OSError as exc:
            log.warning("cannot record the loaded versions in the registry: %s", exc)

    def release_lease(self) -> None:
        """Drop this process's lease (at shutdown)."""
        release = getattr(self.registry, "release", None)
        if callable(release):
            with contextlib.suppress(OSError):
                release()

    def require_engine(self) -> Engine:
        """The engine now serving; :class:`~recsys.errors.ModelError` (503) if none is loaded."""
        engine = self.engine
        if engine is None:
            raise ModelError(
                "no valid model version is loaded"
                + (f" ({self.last_error})" if self.last_error else "")
            )
        return engine

    def reload(self, version: str | None = None) -> Engine:
        """Load ``version`` (default: the registry's current one) and swap it in.

        On failure the engine serving before keeps serving and the error is raised.
        """
        with self._reload_lock:
            try:
                requested = version
                version = version or self.registry.current_version()
                if not version:
                    raise ArtifactError(f"no model version is published in {self._where()}")
                try:
                    folder = Path(self.registry.path(version))
                except NotFoundError as exc:
                    if requested is not None:
                        raise  # a version asked for by name that does not exist: 404
                    # the registry's own current version gone from disk: a broken registry,
                    # as a corrupt version is (409), not a thing the caller named
                    raise ArtifactError(
                        f"the registry's current version is missing: {exc}; promote or roll "
                        "back to a version that exists"
                    ) from None
                engine = Engine.load(
                    folder,
                    self.registry,
                    rules=self.rules,
                    model_loader=self.model_loader,
                )
                # before the swap: the first live requests on it do not pay for it
                engine.warm_up()
            except RecsysError as exc:
                # the registry's poller retries every few seconds (the files may be put
                # right): the same failure is logged once, not at every try
                repeated = self.last_error == str(exc)
                self.last_error = str(exc)
                self.metrics.reloads.labels(outcome="failed").inc()
                log.log(
                    logging.DEBUG if repeated else logging.WARNING,
                    "model reload failed; still serving %s: %s",
                    self._serving(),
                    exc,
                )
                raise
            previous = self.engine
            self.engine = engine  # the atomic swap
            # keep both on the lease: a request that took the old engine may still be on it
            self._lease(previous.version if previous is not None else None)
            with self._versions_lock:
                self._versions.clear()  # failed variant versions get another chance
                self._follow_catalog()
            self.last_error = None
            self.loaded_at = time.time()
            self.metrics.set_version(engine.version)
            self.metrics.reloads.labels(outcome="ok").inc()
            _freeze_heap()
            log.info("serving model version %s", engine.version)
            return engine

    def reload_if_changed(self) -> None:
        """Reload when the registry's current version differs from the one serving."""
        try:
            current = self.registry.current_version()
        except RecsysError as exc:
            log.warning("cannot read the registry's current version: %s", exc)
            return
        serving = self.engine.version if self.engine else None
        if current and current != serving:
            # a failure is logged in reload; the old version keeps serving
            with contextlib.suppress(RecsysError):
                self.reload(current)

    def _serving(self) -> str:
        return self.engine.version if self.engine else "nothing"

    def _where(self) -> str:
        return str(getattr(self.registry, "root", "the registry"))


def _freeze_heap() -> None:
    """Keep what a model version loaded out of every later garbage collection.

    A loaded version holds tens of thousands of container objects that live as long as it
    serves, and every full collection walked them all: ``gc.collect()`` took about 90 ms with a
    10^5-user, 10^5-item version loaded (0.01 ms once frozen), a pause taken on whichever
    request's thread triggered it. Frozen objects are still freed by reference counting when a
    newer version replaces them; the unfreeze and collect first let the cycles of the replaced
    version go.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    release_free_memory()  # what loading read and let go (a replaced version too)
