"""Settings of the HTTP API, read from ``RECSYS_*`` variables once, in ``create_app``."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic import Field, SecretStr

from recsys.settings import Settings


class ServingSettings(Settings):
    """Everything the API can be told at start-up (``RECSYS_<FIELD>``).

    API keys are a comma-separated list in ``RECSYS_API_KEYS``; they are held as secrets and
    never logged or shown in ``repr``.
    """

    api_keys: SecretStr = Field(
        default=SecretStr(""), description="Comma-separated keys for write and admin endpoints."
    )
    require_key_for_reads: bool = Field(
        default=False, description="Also require X-API-Key on read endpoints."
    )
    max_in_flight: int = Field(
        default=64, ge=1, description="Requests in flight past which the API answers 503."
    )
    request_threads: int = Field(
        default=4,
        ge=0,
        le=1000,
        description="Read requests a worker computes at once (0: the framework's 40); the "
        "others wait their turn in order instead of sharing the GIL. Event intake has its own "
        "threads.",
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body accepted, in bytes."
    )
    max_k: int = Field(default=100, ge=1, le=1000, description="Largest k a request may ask.")
    max_batch_events: int = Field(
        default=1000, ge=1, description="Most events one POST /v1/events may carry."
    )
    watch_interval_s: float = Field(
        default=2.0,
        ge=0,
        description="Poll the registry's CURRENT every N s (0: off), so that every worker "
        "follows a promotion or a rollback.",
    )
    store_busy_timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="How long a request waits for the SQLite write lock that another process "
        "(a long ingest) holds, before it answers 503 with Retry-After.",
    )
    body_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="A request's whole body must arrive within this many seconds (408).",
    )
    log_customer_ids: bool = Field(
        default=False,
        description="Write customer and session ids to the access log (masked by default: a "
        "log line is out of an erasure's reach).",
    )
    live_refresh_s: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Read the store's live state (erasures, catalogue, experiments, promotions) "
        "every N s: a change made through any process reaches every worker within it.",
    )
    live_events: int = Field(
        default=200, ge=0, le=5000, description="Recent events per user folded into requests."
    )

    experiments_file: Path | None = Field(
        default=None, description="Experiments TOML/JSON (default: $RECSYS_HOME/experiments.toml)."
    )
    exposure_queue: int = Field(
        default=10_000, ge=1, description="Exposures waiting to be written; more are dropped."
    )
    exposure_batch: int = Field(default=200, ge=1, description="Exposures written per batch.")
    exposure_flush_ms: float = Field(
        default=200.0, gt=0, description="A partial batch of exposures waits at most this long."
    )

    offers_enabled: bool = Field(
        default=True,
        description="Serve personalised offers (false: the offer endpoints answer 404 and no "
        "offer context is built or held in memory).",
    )
    promotions_file: Path | None = Field(
        default=None,
        description="Promotions TOML/JSON (default: $RECSYS_HOME/promotions.toml; while it is "
        "absent the packaged example is served and the first admin change creates it).",
    )
    offers_date: date | None = Field(
        default=None,
        description="Serve offers as of this day (YYYY-MM-DD) instead of today (UTC): replays "
        "historic data such as the sample.",
    )

    def key_list(self) -> list[bytes]:
        """The configured API keys (empty: write endpoints are refused)."""
        raw = self.api_keys.get_secret_value()
        return [k.strip().encode() for k in raw.split(",") if k.strip()]
