"""Versioned schema migrations, applied in order at start-up.

Each entry is ``(version, description, sql)``; ``sql`` is written in the common subset of
SQLite and PostgreSQL, with ``{bool}``, ``{json}`` and ``{serial}`` filled per dialect. A
migration, once released, never changes: add a new one.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "events, items, customers",
        """
        CREATE TABLE events (
            seq {serial},
            event_id TEXT NOT NULL UNIQUE,
            user_id TEXT NOT NULL DEFAULT '',
            session_id TEXT,
            item_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            ts BIGINT NOT NULL,
            quantity DOUBLE PRECISION NOT NULL DEFAULT 1,
            price DOUBLE PRECISION,
            order_id TEXT,
            recommendation_id TEXT
        );
        CREATE INDEX events_user ON events (user_id, ts);
        CREATE INDEX events_session ON events (session_id);
        CREATE INDEX events_ts ON events (ts);
        CREATE TABLE items (
            item_id TEXT PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            category TEXT NOT NULL DEFAULT '',
            price DOUBLE PRECISION,
            in_stock {bool} NOT NULL DEFAULT TRUE,
            margin DOUBLE PRECISION,
            attributes {json}
        );
        CREATE TABLE customers (
            user_id TEXT PRIMARY KEY,
            birthday TEXT,
            signup_date TEXT,
            region TEXT,
            marketing_opt_out {bool} NOT NULL DEFAULT FALSE,
            personalisation_opt_out {bool} NOT NULL DEFAULT FALSE
        );
        """,
    ),
    (
        2,
        "erasure log (no personal data)",
        """
        CREATE TABLE erasures (
            seq {serial},
            erased_at BIGINT NOT NULL,
            events_removed BIGINT NOT NULL,
            profile_removed {bool} NOT NULL
        );
        """,
    ),
    (
        3,
        "experiment exposures, campaign sends, offer impressions, customer segments",
        """
        CREATE TABLE exposures (
            recommendation_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL DEFAULT '',
            session_id TEXT,
            experiment TEXT,
            variant TEXT,
            placement TEXT,
            model_version TEXT,
            items TEXT NOT NULL,
            propensities TEXT,
            ts BIGINT NOT NULL
        );
        CREATE INDEX exposures_experiment ON exposures (experiment, ts);
        CREATE INDEX exposures_user ON exposures (user_id, ts);
        CREATE TABLE campaign_sends (
            campaign_date TEXT NOT NULL,
            user_id TEXT NOT NULL,
            offer_id TEXT NOT NULL,
            trigger_name TEXT NOT NULL,
            ts BIGINT NOT NULL,
            PRIMARY KEY (campaign_date, user_id, offer_id)
        );
        CREATE INDEX campaign_sends_user ON campaign_sends (user_id, ts);
        CREATE TABLE offer_impressions (
            seq {serial},
            user_id TEXT NOT NULL,
            offer_id TEXT NOT NULL,
            ts BIGINT NOT NULL
        );
        CREATE INDEX offer_impressions_user ON offer_impressions (user_id, offer_id, ts);
        CREATE TABLE segments (
            user_id TEXT PRIMARY KEY,
            recency_days DOUBLE PRECISION NOT NULL,
            frequency DOUBLE PRECISION NOT NULL,
            monetary DOUBLE PRECISION NOT NULL,
            rfm TEXT NOT NULL,
            cluster INTEGER,
            segment TEXT NOT NULL,
            computed_at BIGINT NOT NULL
        );
        """,
    ),
    (
        4,
        "live state shared by every process: generation counter, erasure tombstones, "
        "catalogue changes",
        """
        CREATE TABLE live_state (
            name TEXT PRIMARY KEY,
            value BIGINT NOT NULL
        );
        INSERT INTO live_state (name, value) VALUES ('generation', 0);
        CREATE TABLE store_secrets (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE tombstones (
            subject TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            generation BIGINT NOT NULL,
            erased_at BIGINT NOT NULL
        );
        CREATE INDEX tombstones_generation ON tombstones (generation);
        ALTER TABLE items ADD COLUMN retired {bool} NOT NULL DEFAULT FALSE;
        ALTER TABLE items ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
        CREATE INDEX items_generation ON items (generation);
        """,
    ),
    (
        5,
        "a customer's events by seq: what serving reads of events stored after a version",
        """
        CREATE INDEX events_user_seq ON events (user_id, seq);
        """,
    ),
]
