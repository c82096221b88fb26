"""Offers in a running service: the promotions file, a day's context kept warm, impressions.

:class:`OfferService` is what the HTTP API holds. It

* keeps the promotions catalogue of one file and changes it (admin ``PUT``/``DELETE``) by
  rewriting the whole file through a temporary file and an atomic rename;
* builds the :class:`~recsys.offers.ranking.OfferContext` (purchase history, segments,
  triggers' norms, complements, the model version's probabilities) **once per serving day and
  model version**, lazily, under a lock: a request never reads the whole store. While one
  request rebuilds a stale context, concurrent requests are answered from the previous one;
* ranks a customer's offers (:func:`~recsys.offers.ranking.rank_offers_for_user`) with their
  *live* consents: a customer who opted out of personalisation after the context was built,
  or who was erased, gets the non-personal offers an unknown visitor gets;
* records what it shows off the request path: impressions are counted in memory at once (so
  frequency caps hold within this process) and written to ``offer_impressions`` in batches by a
  background thread. Another process sees them at its next rebuild.

The promotions file is ``RECSYS_PROMOTIONS_FILE`` or ``$RECSYS_HOME/promotions.toml``. While it
does not exist, the packaged example (``training/configs/promotions.toml``) is served, read
only; the first admin change writes the whole catalogue, example included, to the file (the
packaged example is never written). A file rewritten by the API loses its comments, and a
catalogue whose last promotion was deleted is written as ``promotions = []``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.config import read_config_file, validate, write_config_file
from recsys.data.schema import Customer
from recsys.errors import ConfigError, NotFoundError, RecsysError
from recsys.offers.campaigns import LoadedModels, build_campaign_context
from recsys.offers.catalog import Promotion, PromotionCatalog, parse_promotions
from recsys.offers.ranking import (
    OfferCandidate,
    OfferContext,
    TriggerSettings,
    rank_offers_for_user,
)
from recsys.offers.triggers import day_start_micros
from recsys.store.base import EventStore
from recsys.store.writer import BatchWriter

if TYPE_CHECKING:
    from recsys.engine import Engine

log = logging.getLogger(__name__)

#: File name under ``RECSYS_HOME`` when ``RECSYS_PROMOTIONS_FILE`` is unset.
DEFAULT_FILE = "promotions.toml"
#: The comment at the top of a promotions TOML file the service writes.
FILE_HEADER = "Written by recsys (admin API: /v1/admin/offers); see recsys/offers/catalog.py."
#: The example promotions shipped with the code, served while no promotions file exists.
PACKAGED_PROMOTIONS = (
    Path(__file__).resolve().parents[2] / "training" / "configs" / "promotions.toml"
)


def promotions_path(settings: Any) -> Path:
    """The promotions file the settings point at (``promotions_file`` or under ``home``)."""
    explicit = getattr(settings, "promotions_file", None)
    return Path(explicit) if explicit else Path(settings.home) / DEFAULT_FILE


def read_catalog(path: str | Path) -> PromotionCatalog:
    """Read a promotions file; ``promotions = []`` (what deleting the last one writes) is empty."""
    data = read_config_file(path)
    if data == {"promotions": []}:
        return PromotionCatalog([])
    return parse_promotions(data, str(path))


_DAY_MICROS = 86_400_000_000


@dataclass(frozen=True)
class _Snapshot:
    """A built context and what it was built for."""

    today: date
    version: str | None
    window_days: int
    context: OfferContext


class OfferService:
    """Promotions, a cached offer context and impression recording for one API process.

    Parameters
    ----------
    store
        The event store (events, customers, catalogue, offer tables).
    path
        The promotions file (it need not exist yet; see the module docstring).
    fallback
        Served, read only, while ``path`` does not exist (``None``: no promotions).
    today
        The serving day (default: today in UTC). A fixed date replays historic data.
    settings
        Trigger settings.
    max_pending
        Impressions waiting to be written; more are dropped (and logged) rather than slowing
        a request.
    """

    def __init__(
        self,
        store: EventStore,
        path: str | Path,
        *,
        fallback: str | Path | None = PACKAGED_PROMOTIONS,
        today: Callable[[], date] | None = None,
        settings: TriggerSettings | None = None,
        max_pending: int = 10_000,
    ) -> None:
        self.store = store
        self.path = Path(path)
        self.fallback = Path(fallback) if fallback is not None else None
        self.today = today or (lambda: datetime.now(UTC).date())
        self.settings = settings or TriggerSettings()
        self.max_pending = max_pending
        self._catalog = PromotionCatalog([])
        self._source: Path | None = None
        self._file_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._forgotten: set[str] = set()
        self._record_lock = threading.Lock()
        self.writer: BatchWriter[tuple[str, str, int]] = BatchWriter(
            "offer_impressions",
            self._write,
            max_queue=max_pending,
            batch_size=500,
            close_store=store.close,
        )
        self.builds = 0

    # -- the promotions file ---------------------------------------------------------------

    def load(self) -> OfferService:
        """(Re)read the promotions file (or the fallback while it is absent). Returns ``self``."""
        with self._file_lock:
            if self.path.exists():
                catalog, source = read_catalog(self.path), self.path
            elif self.fallback is not None and self.fallback.exists():
                catalog, source = read_catalog(self.fallback), self.fallback
            else:
                catalog, source = PromotionCatalog([]), None
            self._catalog, self._source = catalog, source
        return self

    @property
    def catalog(self) -> PromotionCatalog:
        """The promotions served now."""
        return self._catalog

    @property
    def source(self) -> Path | None:
        """The file the promotions were read from (``path``, the fallback, or ``None``)."""
        return self._source

    def get(self, offer_id: str) -> Promotion:
        """One promotion; :class:`~recsys.errors.NotFoundError` naming the file and the ids."""
        promo = self._catalog.get(offer_id)
        if promo is None:
            have = ", ".join(p.id for p in self._catalog) or "none"
            where = self._source or self.path
            raise NotFoundError(f"{where}: no promotion with id {offer_id!r} (has: {have})")
        return promo

    def put(self, data: Mapping[str, Any], offer_id: str) -> Promotion:
        """Add or replace the promotion ``offer_id`` and write the file.

        ``data`` is validated as a :class:`~recsys.offers.catalog.Promotion`; its ``id`` may be
        left out (the URL names it) and must otherwise equal ``offer_id``.

        Raises
        ------
        ConfigError
            Naming the offer and the field.
        """
        source = f"request: offer {offer_id!r}"
        body = dict(data)
        if body.setdefault("id", offer_id) != offer_id:
            raise ConfigError(f"{source}: 'id' is {body['id']!r} but the URL names {offer_id!r}")
        promo = validate(Promotion, body, source)
        with self._file_lock:
            current = list(self._catalog)
            for i, old in enumerate(current):
                if old.id == promo.id:
                    current[i] = promo
                    break
            else:
                current.append(promo)
            self._commit(current)
        return promo

    def delete(self, offer_id: str) -> Promotion:
        """Remove a promotion and write the file; returns what was removed."""
        with self._file_lock:
            old = self.get(offer_id)
            self._commit([p for p in self._catalog if p.id != offer_id])
        return old

    def _commit(self, promotions: list[Promotion]) -> None:
        write_promotions(self.path, promotions)
        self._catalog, self._source = PromotionCatalog(promotions), self.path

    # -- the day's context -----------------------------------------------------------------

    def context(self, engine: Engine | None = None) -> OfferContext:
        """The offer context of the serving day and ``engine``'s version.

        Built once, before the first request (the API builds it at start-up). When the day or
        the model version changes, or a promotion's frequency-cap period outgrows the
        impressions it read, a new one is built in the background and the current one keeps
        answering meanwhile: no request waits for a rebuild. A change of promotions alone is
        applied to the built context without reading the store. An erasure needs no rebuild:
        the caller serves erased customers non-personal offers
        (:class:`recsys.service.RecommendationService`).
        """
        today = self.today()
        version = engine.version if engine is not None else None
        snap = self._snapshot
        if snap is None:
            with self._build_lock:
                snap = self._snapshot
                if snap is None:
                    snap = self._build(today, engine)
        elif not self._fresh(snap, today, version):
            self._rebuild_in_background(today, engine)
        return self._with_catalog(snap)

    def _rebuild_in_background(self, today: date, engine: Engine | None) -> None:
        if not self._build_lock.acquire(blocking=False):
            return  # one build at a time; requests keep the current context

        def run() -> None:
            try:
                self._build(today, engine)
            except RecsysError as exc:
                log.warning("offer context rebuild failed; the previous one serves: %s", exc)
            finally:
                self.store.close()  # this thread's connection
                self._build_lock.release()

        threading.Thread(target=run, name="offer-context", daemon=True).start()

    def prepare(self, engine: Engine | None = None) -> None:
        """Start building the first context in the background (a server calls it at start-up,
        so that the first request for offers finds it built, or waits only for the rest of it)."""
        if self._snapshot is None and self.has_promotions:
            self._rebuild_in_background(self.today(), engine)

    @property
    def has_promotions(self) -> bool:
        """Whether any promotion is configured (with none, no context is ever built)."""
        return any(True for _ in self._catalog)

    @property
    def ready(self) -> bool:
        """Whether a context is built (offers answer without waiting)."""
        return self._snapshot is not None

    def wait_for_rebuild(self, timeout: float = 60.0) -> None:
        """Block until a background rebuild (if any) is done (tests, shutdown)."""
        if self._build_lock.acquire(timeout=timeout):
            self._build_lock.release()

    def _fresh(self, snap: _Snapshot, today: date, version: str | None) -> bool:
        return (
            snap.today == today
            and snap.version == version
            and _window_days(self._catalog) <= snap.window_days
        )

    def _with_catalog(self, snap: _Snapshot) -> OfferContext:
        catalog = self._catalog
        if snap.context.promotions is catalog:
            return snap.context
        ctx = replace(snap.context, promotions=catalog)
        if self._snapshot is snap:
            self._snapshot = replace(snap, context=ctx)
        return ctx

    def _build(self, today: date, engine: Engine | None) -> _Snapshot:
        catalog = self._catalog
        started = time.perf_counter()
        ctx = build_campaign_context(
            self.store,
            catalog,
            today,
            models=_models_of(engine, today),
            settings=self.settings,
        )
        self.builds += 1
        version = engine.version if engine is not None else None
        log.info(
            "offer context for %s (model version %s) built in %.2f s",
            today.isoformat(),
            version or "none",
            time.perf_counter() - started,
        )
        snap = _Snapshot(today, version, _window_days(catalog), ctx)
        self._snapshot = snap
        return snap

    # -- per request -----------------------------------------------------------------------

    def rank(
        self,
        user_id: str,
        *,
        engine: Engine | None = None,
        customer: Customer | None = None,
        personalise: bool = True,
        channel: str = "web",
        k: int = 3,
    ) -> list[OfferCandidate]:
        """The offers to show ``user_id`` now, best expected value first.

        Parameters
        ----------
        user_id
            The customer (unknown ones get non-personal offers, not an error).
        engine
            The engine serving now: its version keys the context, its models give ``P``.
        customer
            The customer's profile as stored *now* (consents may have changed since the
            context was built).
        personalise
            ``False`` serves non-personal offers only (an opt-out, or an experiment holdout).
        channel
            Where the offers are shown (``web``, ``app``, ``email``).
        k
            How many offers at most.
        """
        if k <= 0 or not self.has_promotions:
            return []
        ctx = self.context(engine)
        opted_out = customer is not None and customer.personalisation_opt_out
        if not personalise or opted_out or user_id in self._forgotten:
            # the context may predate the opt-out or erasure: override what it knows
            marketing = bool(customer and customer.marketing_opt_out)
            who = Customer(user_id, personalisation_opt_out=True, marketing_opt_out=marketing)
            ctx = replace(ctx, customers={user_id: who})
        elif customer is not None and ctx.customers.get(user_id) != customer:
            # a profile newer than the context (a new customer, a changed birthday)
            ctx = replace(ctx, customers={user_id: customer})
        return rank_offers_for_user(ctx, user_id, channel=channel, k=k)

    def forget_user(self, user_id: str) -> None:
        """Serve nothing personal to ``user_id`` again, and drop their impressions not yet
        written. Call it *before* erasing them from the store, so that no impression of theirs
        is written after the erasure (other processes learn of it from the store's tombstone;
        the next context is built without them)."""
        with self._record_lock:
            self._forgotten.add(user_id)
        self.flush()

    def record(self, user_id: str, offers: list[OfferCandidate], ts: int | None = None) -> int:
        """Count the offers shown to ``user_id`` (frequency caps) and queue them for the store.

        Returns how many were queued; a full queue drops (and logs) the rest.
        """
        if not offers:
            return 0
        snap = self._snapshot
        if ts is None:
            # now's time of day on the serving day (the same as now unless a fixed day replays
            # history): frequency caps count the impression on the day it was served
            day = snap.today if snap is not None else self.today()
            ts = day_start_micros(day) + (time.time_ns() // 1000) % _DAY_MICROS
        queued = 0
        with self._record_lock:
            if user_id in self._forgotten:
                return 0
            for offer in offers:
                if snap is not None:
                    snap.context.impressions.setdefault((user_id, offer.offer_id), []).append(ts)
                if self.writer.submit((user_id, offer.offer_id, ts)):
                    queued += 1
                else:
                    log.warning("offer impression queue is full; an impression was dropped")
        if not self.writer.health().alive:
            self.flush()  # no background writer: write now
        return queued

    # -- the impression writer -------------------------------------------------------------

    def start(self) -> OfferService:
        """Start the background impression writer. Returns ``self``."""
        self.writer.start()
        return self

    def flush(self) -> None:
        """Wait until every queued impression is written (or given up)."""
        self.writer.flush()

    def close(self) -> None:
        """Write what is queued and stop the writer."""
        self.writer.close()

    @property
    def dropped(self) -> int:
        """Impressions dropped because the queue was full."""
        return self.writer.dropped

    def _write(self, rows: Sequence[tuple[str, str, int]]) -> None:
        forgotten = self._forgotten
        kept = [r for r in rows if r[0] not in forgotten]
        if kept:
            # the store skips erased customers' rows, whichever process erased them; a failure
            # is a StoreError, which the writer retries
            self.store.insert_personal_rows(
                "INSERT INTO offer_impressions (user_id, offer_id, ts) VALUES (?, ?, ?)",
                kept,
                user_column=0,
            )


#: Days of impressions a context reads at least: a promotion added later with a cap period up
#: to this long needs no rebuild.
MIN_WINDOW_DAYS = 30


def _window_days(catalog: PromotionCatalog) -> int:
    """Days of impressions the frequency caps of ``catalog`` look back."""
    caps = (p.frequency_cap.period_days for p in catalog if p.frequency_cap)
    return max([MIN_WINDOW_DAYS, *caps])


def _models_of(engine: Engine | None, today: date) -> LoadedModels | None:
    """The engine's models the offers can use, unless trained on data after the serving day.

    Only models that answer what the offers ask are taken (a hybrid with ``probability``, a
    buy-again model with ``purchase_stats``, a co-occurrence model with ``similar_items``);
    the rest is computed from the store's history.
    """
    if engine is None or engine.as_of >= day_start_micros(today + timedelta(days=1)):
        return None
    wanted = {
        "hybrid": "probability",
        "buy_again": "purchase_stats",
        "bought_together": "similar_items",
    }
    models = {
        name: engine.models[name]
        for name, method in wanted.items()
        if name in engine.models and callable(getattr(engine.models[name], method, None))
    }
    if not models:
        return None
    return LoadedModels(
        version=engine.version,
        as_of=engine.as_of,
        models=models,
        users=engine.users,
        items=engine.items,
        history=engine.history,
    )


# -- writing a promotions file ----------------------------------------------------------------


def promotion_json(promo: Promotion) -> dict[str, Any]:
    """A promotion as JSON (what the admin API returns; unset fields left out)."""
    return promo.model_dump(mode="json", exclude_none=True)


def write_promotions(path: str | Path, promotions: list[Promotion]) -> None:
    """Write ``promotions`` to ``path`` (JSON when it ends in ``.json``, else TOML) atomically.

    The text goes to a temporary file in the same folder, is synced, and replaces ``path`` in
    one rename (:func:`recsys.files.write_atomic`): a reader sees the old file or the new one,
    never half of one. No promotions are written as ``promotions = []``.
    """
    docs = [p.model_dump(mode="python", exclude_none=True) for p in promotions]
    write_config_file(path, {"promotions": docs}, header=FILE_HEADER)


__all__ = [
    "DEFAULT_FILE",
    "PACKAGED_PROMOTIONS",
    "OfferService",
    "promotion_json",
    "promotions_path",
    "read_catalog",
    "write_promotions",
]
