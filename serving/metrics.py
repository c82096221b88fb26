"""Prometheus metrics of one app instance (its own registry, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """Request counts and latency per endpoint, the version serving, fallbacks served."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "recsys_requests",
            "HTTP requests by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recsys_request_seconds",
            "Request latency by endpoint.",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "recsys_fallbacks",
            "Lists served from a fallback instead of a personal model, by kind.",
            ["endpoint", "kind"],
            registry=self.registry,
        )
        self.model_version = Gauge(
            "recsys_model_version_info",
            "The model version serving (value 1 on the serving version's label).",
            ["version"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "recsys_model_reloads",
            "Model reloads by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.overloaded = Counter(
            "recsys_overloaded",
            "Requests refused with 503 because too many were in flight.",
            registry=self.registry,
        )

        self.exposures = Counter(
            "recsys_exposures",
            "Experiment exposures by outcome: written, dropped (queue full) or failed.",
            ["outcome"],
            registry=self.registry,
        )
        self.variant_fallbacks = Counter(
            "recsys_variant_fallbacks",
            "Lists of a variant served by the current version because its own failed to load.",
            ["experiment", "variant"],
            registry=self.registry,
        )
        self.writer_failing = Gauge(
            "recsys_writer_failing_seconds",
            "How long a background writer has failed to write (0: writing).",
            ["writer"],
            registry=self.registry,
        )
        self.writer_queued = Gauge(
            "recsys_writer_queued",
            "Rows waiting in a background writer's queue.",
            ["writer"],
            registry=self.registry,
        )
        self.store_up = Gauge(
            "recsys_store_up",
            "1 when the store answered the last readiness check, else 0.",
            registry=self.registry,
        )
        self.live_refresh_failures = Gauge(
            "recsys_live_refresh_failures",
            "Times this worker could not read the store's live state.",
            registry=self.registry,
        )

    def set_version(self, version: str) -> None:
        """Mark ``version`` as the one serving."""
        self.model_version.clear()
        self.model_version.labels(version=version).set(1)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
