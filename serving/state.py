"""What the running API holds: settings, the store, and the engine now serving.

The engine is swapped atomically: :meth:`ServingState.reload` builds a whole new
:class:`~recsys.engine.Engine` and only then replaces one reference, so a request that already
took the old engine finishes on it, and a version that fails to load leaves the old one serving.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from pathlib import Path
from typing import Any

from recsys.engine import Engine, ModelLoader
from recsys.errors import ArtifactError, ModelError, RecsysError
from recsys.experiments.exposures import ExposureWriter
from recsys.experiments.registry import ExperimentRegistry
from recsys.offers.service import OfferService
from recsys.ranking.rules import RulesFile
from recsys.store.base import EventStore
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
        # Variants' model versions other than the current one: loaded once, verified like it.
        self._versions: dict[str, Engine | None] = {}
        self._versions_lock = threading.Lock()
        # Variants' own rules on an engine: (version, rules file) -> (engine, rules, ranked by
        # them). The base engine and the rules object are kept to notice either being replaced.
        self._ranked: dict[tuple[str, str], tuple[Engine, RulesFile, Engine]] = {}

    def engine_with_rules(self, engine: Engine, key: str, rules: RulesFile) -> Engine:
        """``engine`` ranking with ``rules`` (a variant's ``ranking``) instead of the server's.

        The result shares the loaded models and arrays with ``engine`` and is cached per model
        version and rules file ``key``, so the rules are compiled once, not per request.
        """
        cache_key = (engine.version, key)
        cached = self._ranked.get(cache_key)
        if cached is not None and cached[0] is engine and cached[1] is rules:
            return cached[2]
        ranked = with_rules(engine, rules)
        with self._versions_lock:
            self._ranked[cache_key] = (engine, rules, ranked)
        return ranked

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
            except RecsysError as exc:
                log.warning("variant model version %s cannot be loaded: %s", version, exc)
            self._versions[version] = extra
            return extra

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
                version = version or self.registry.current_version()
                if not version:
                    raise ArtifactError(f"no model version is published in {self._where()}")
                engine = Engine.load(
                    Path(self.registry.path(version)),
                    self.registry,
                    rules=self.rules,
                    model_loader=self.model_loader,
                )
            except RecsysError as exc:
                self.last_error = str(exc)
                self.metrics.reloads.labels(outcome="failed").inc()
                log.warning("model reload failed; still serving %s: %s", self._serving(), exc)
                raise
            self.engine = engine  # the atomic swap
            with self._versions_lock:
                self._versions.clear()  # failed variant versions get another chance
                self._ranked.clear()
            self.last_error = None
            self.loaded_at = time.time()
            self.metrics.set_version(engine.version)
            self.metrics.reloads.labels(outcome="ok").inc()
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


def with_rules(engine: Engine, rules: RulesFile) -> Engine:
    """A copy of ``engine`` that applies ``rules``, sharing everything it loaded.

    The copy is shallow: models, vocabularies, matrices, precomputed lists and the set of
    forgotten users are the same objects; only the rules and the rules compiled from them (per
    placement, filled on first use) are its own.
    """
    # This belongs on Engine (``Engine.with_rules``); until it is there, this is the one place
    # outside recsys.engine that knows which of its attributes derive from the rules.
    ranked = copy.copy(engine)
    ranked.rules = rules
    ranked._compiled = {}
    return ranked
