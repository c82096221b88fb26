"""Offers in a running service: the promotions file, a day's context kept warm, impressions.

:class:`OfferService` is what the HTTP API holds. It

* keeps the promotions catalogue of one file and changes it (admin ``PUT``/``DELETE``) by
  rewriting the whole file through a temporary file and an atomic rename;
* builds the *shop's* part of the offer context
  (:func:`~recsys.offers.campaigns.build_shop_context`: promotions, item prices, margins,
  categories and stock, segment norms and scale, complements, popularity, the shop-wide totals,
  the model version's models) **once per serving day and model version**, in the background:
  a request never reads the whole store. Its size grows with items, not with customers;
* reads *one customer's* part per request, by id, from the store (indexed): their purchases
  and returns up to now, their profile (the caller's, read now), their segment (from the
  shop's scale) and their impressions. The purchase history is cached per process for
  ``cache_ttl_s`` (2 s) under the customer, the serving day, the model version and the store's
  generation (an erasure raises it); impressions are read on every request, so frequency caps
  hold across workers at once. Ranking one customer this way gives exactly the offers a
  context built with every customer gives (``tests/offers/test_per_customer.py``);
* ranks a customer's offers (:func:`~recsys.offers.ranking.rank_offers_for_user`) with their
  *live* consents: a customer who opted out of personalisation, or who was erased, gets the
  non-personal offers an unknown visitor gets;
* records what it shows off the request path: impressions are kept in memory until written
  (so frequency caps hold within this process at once) and written to ``offer_impressions`` in
  batches by a background thread; every process reads them from there.

Measured (``benchmarks/bench_offers.py``, Online Retail): the former context held every
customer (about 1.3 GB per worker at 77k customers) and was rebuilt per day and version.

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
from recsys.data.schema import MICROS_PER_DAY, PURCHASE, RETURN, Customer
from recsys.errors import ConfigError, NotFoundError, RecsysError
from recsys.files import changing
from recsys.lru import LRU
from recsys.memory import release_free_memory
from recsys.offers.campaigns import LoadedModels, ShopContext, build_shop_context
from recsys.offers.catalog import Promotion, PromotionCatalog, parse_promotions
from recsys.offers.items import VersionCatalog
from recsys.offers.ranking import (
    OfferCandidate,
    OfferContext,
    TriggerSettings,
    rank_offers_for_user,
)
from recsys.offers.store import impression_times
from recsys.offers.triggers import PurchaseHistory, day_start_micros
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


@dataclass(frozen=True)
class _Snapshot:
    """A built shop context and what it was built for."""

    today: date
    version: str | None
    shop: ShopContext


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
    cache_ttl_s
        Seconds a customer's purchase history read from the store is reused (a purchase made
        through another process shows within it; an erasure at once).
    cache_size
        Customers whose history is cached (and whose hybrid candidates are), at most.
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
        cache_ttl_s: float = 2.0,
        cache_size: int = 10_000,
    ) -> None:
        self.store = store
        self.path = Path(path)
        self.fallback = Path(fallback) if fallback is not None else None
        self.today = today or (lambda: datetime.now(UTC).date())
        self.settings = settings or TriggerSettings()
        self.max_pending = max_pending
        self.cache_ttl_s = cache_ttl_s
        self.cache_size = cache_size
        # per customer: (day, store generation, monotonic time read, their history)
        self._histories: LRU[str, tuple[date, int, float, PurchaseHistory]] = LRU(
            max(cache_size, 1)
        )
        # impressions shown by this process and not yet written, per customer: (offer, ts)
        self._pending: dict[str, list[tuple[str, int]]] = {}
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
            self._read()
        return self

    def _read(self) -> None:
        if self.path.exists():
            catalog, source = read_catalog(self.path), self.path
        elif self.fallback is not None and self.fallback.exists():
            catalog, source = read_catalog(self.fallback), self.fallback
        else:
            catalog, source = PromotionCatalog([]), None
        self._catalog, self._source = catalog, source

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
        with self._file_lock, changing(self.path):
            self._read()  # the file as it is: another worker may have changed it since
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
        with self._file_lock, changing(self.path):
            self._read()  # the file as it is: another worker may have changed it since
            old = self.get(offer_id)
            self._commit([p for p in self._catalog if p.id != offer_id])
        return old

    def _commit(self, promotions: list[Promotion]) -> None:
        write_promotions(self.path, promotions)
        self._catalog, self._source = PromotionCatalog(promotions), self.path

    # -- the day's shop context ------------------------------------------------------------

    def context(self, engine: Engine | None = None) -> OfferContext:
        """The shop's part of the offer context of the serving day and ``engine``'s version
        (no customer in it: :meth:`customer_context` adds one).

        Built once, before the first request (the API starts it at start-up). When the day or
        the model version changes, a new one is built in the background and the current one
        keeps answering meanwhile: no request waits for a rebuild. A change of promotions is
        applied to the built context without reading the store.
        """
        return self._shop(engine).context

    def _shop(self, engine: Engine | None) -> ShopContext:
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

    def prepare(self, engine: Engine | None = None, *, wait: bool = False) -> None:
        """Build the first context: in the background, or (``wait``) before returning.

        A server builds it before it takes its first request (``wait=True``), so that no
        request for offers waits for it: a worker of ``recsys serve`` accepts connections only
        once its start-up is done, and the other workers answer meanwhile. Without promotions
        nothing is built (no offer could be made).
        """
        if self._snapshot is not None or not self.has_promotions:
            return
        if wait:
            self._shop(engine)  # built now, as the first request would have built it
        else:
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
        return snap.today == today and snap.version == version

    def _with_catalog(self, snap: _Snapshot) -> ShopContext:
        catalog = self._catalog
        shop = snap.shop
        if shop.context.promotions is catalog:
            return shop
        shop = replace(shop, context=replace(shop.context, promotions=catalog))
        if self._snapshot is snap:
            self._snapshot = replace(snap, shop=shop)
        return shop

    def _build(self, today: date, engine: Engine | None) -> _Snapshot:
        catalog = self._catalog
        started = time.perf_counter()
        shop = build_shop_context(
            self.store,
            catalog,
            today,
            models=_models_of(engine, today),
            settings=self.settings,
            max_cached=self.cache_size,
            # the engine's catalogue arrays (live changes laid over), not the store's rows
            catalog=(
                VersionCatalog(engine.catalog, engine.new_items) if engine is not None else None
            ),
        )
        self.builds += 1
        version = engine.version if engine is not None else None
        log.info(
            "offer context for %s (model version %s) built in %.2f s",
            today.isoformat(),
            version or "none",
            time.perf_counter() - started,
        )
        snap = _Snapshot(today, version, shop)
        self._snapshot = snap
        self._histories.clear()  # what is there is of another day
        # every purchase was read to sum the shop's totals, and let go
        release_free_memory()
        return snap

    # -- one customer, per request ---------------------------------------------------------

    def customer_context(
        self,
        user_id: str,
        *,
        engine: Engine | None = None,
        customer: Customer | None = None,
        generation: int = -1,
    ) -> OfferContext:
        """The day's context with ``user_id`` in it, read from the store now (see the module
        docstring): what :meth:`rank` ranks with.

        ``customer`` is their profile as stored now (``None``: none stored); ``generation``
        the store generation this process last saw (:attr:`recsys.live.LiveState.generation`):
        a change of it (an erasure) makes their history be read again at once.
        """
        shop = self._shop(engine)
        today = shop.context.today
        history = self._history(user_id, today, generation)
        opted_out = customer is not None and customer.personalisation_opt_out
        # a segment is a profile: none for an opt-out (as the day's segment table has none)
        segment = None if opted_out else shop.scale.segment(history.customers.get(user_id))
        return shop.context.for_customer(
            user_id,
            history,
            profile=customer,
            segment=segment,
            impressions=self._impressions(user_id, today),
        )

    def segment(
        self, user_id: str, *, engine: Engine | None = None, customer: Customer | None = None
    ) -> str | None:
        """The customer's segment today (``None``: a prospect, or opted out)."""
        return self.customer_context(user_id, engine=engine, customer=customer).segments.get(
            user_id
        )

    def _history(self, user_id: str, today: date, generation: int) -> PurchaseHistory:
        """The customer's purchases and returns up to the end of the serving day (cached)."""
        now = time.monotonic()
        hit = self._histories.get(user_id)
        if hit is not None and hit[:2] == (today, generation) and now - hit[2] <= self.cache_ttl_s:
            return hit[3]
        end = today + timedelta(days=1)
        events = self.store.user_events_of_types(
            user_id, [PURCHASE, RETURN], until=day_start_micros(end)
        )
        history = PurchaseHistory.from_events(events, end)
        self._histories.put(user_id, (today, generation, now, history))
        return history

    def _impressions(self, user_id: str, today: date) -> dict[str, list[int]]:
        """The customer's impressions in the longest frequency-cap period, per offer, oldest
        first: those in the store (whichever process showed them) and this process's not yet
        written."""
        since = day_start_micros(today - timedelta(days=_window_days(self._catalog)))
        until = day_start_micros(today + timedelta(days=1))
        # pending first, then the store: a row written in between is in both, and counted once
        with self._record_lock:
            pending = list(self._pending.get(user_id, ()))
        stored = impression_times(self.store, since, until, user_id)
        out = {offer: times for (_, offer), times in stored.items()}
        for offer, ts in pending:
            times = out.setdefault(offer, [])
            if since <= ts < until and ts not in times:
                times.append(ts)
                times.sort()
        return out

    def rank(
        self,
        user_id: str,
        *,
        engine: Engine | None = None,
        customer: Customer | None = None,
        personalise: bool = True,
        channel: str = "web",
        k: int = 3,
        generation: int = -1,
    ) -> list[OfferCandidate]:
        """The offers to show ``user_id`` now, best expected value first.

        Parameters
        ----------
        user_id
            The customer (unknown ones get non-personal offers, not an error).
        engine
            The engine serving now: its version keys the context, its models give ``P``.
        customer
            The customer's profile as stored *now* (``None``: no profile stored).
        personalise
            ``False`` serves non-personal offers only (an opt-out, or an experiment holdout).
        channel
            Where the offers are shown (``web``, ``app``, ``email``).
        k
            How many offers at most.
        generation
            The store generation this process last saw (keys the per-customer cache).
        """
        if k <= 0 or not self.has_promotions:
            return []
        ctx = self.customer_context(
            user_id, engine=engine, customer=customer, generation=generation
        )
        opted_out = customer is not None and customer.personalisation_opt_out
        if not personalise or opted_out or user_id in self._forgotten:
            # an opt-out, a holdout or an erasure this process made: nothing personal
            marketing = bool(customer and customer.marketing_opt_out)
            who = Customer(user_id, personalisation_opt_out=True, marketing_opt_out=marketing)
            ctx = replace(ctx, customers={user_id: who})
        return rank_offers_for_user(ctx, user_id, channel=channel, k=k)

    def forget_user(self, user_id: str) -> None:
        """Serve nothing personal to ``user_id`` again, and drop their impressions not yet
        written. Call it *before* erasing them from the store, so that no impression of theirs
        is written after the erasure (other processes learn of it from the store's tombstone)."""
        with self._record_lock:
            self._forgotten.add(user_id)
            self._pending.pop(user_id, None)
        self._histories.pop(user_id)
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
            ts = day_start_micros(day) + (time.time_ns() // 1000) % MICROS_PER_DAY
        queued = 0
        with self._record_lock:
            if user_id in self._forgotten:
                return 0
            for offer in offers:
                if self.writer.submit((user_id, offer.offer_id, ts)):
                    self._pending.setdefault(user_id, []).append((offer.offer_id, ts))
                    queued += 1
                else:
                    log.warning("offer impression queue is full; an impression was dropped")
            while len(self._pending) > self.max_pending:
                # rows the writer gave up on are never taken out: the oldest customers go
                self._pending.pop(next(iter(self._pending)))
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
        with self._record_lock:
            # written: from now on every process reads them from the store
            for user, offer, ts in rows:
                shown = self._pending.get(user)
                if shown is not None and (offer, ts) in shown:
                    shown.remove((offer, ts))
                    if not shown:
                        del self._pending[user]


#: Days of impressions a context reads at least: a promotion added later with a cap period up
#: to this long needs no rebuild.
MIN_WINDOW_DAYS = 30


def _window_days(catalog: PromotionCatalog) -> int:
    """Days of impressions the frequency caps of ``catalog`` look back."""
    caps = (p.frequency_cap.period_days for p in catalog if p.frequency_cap)
    return max([MIN_WINDOW_DAYS, *caps])


def _models_of(engine: Engine | None, today: date) -> LoadedModels | None:
    """The engine's models the offers can use (:meth:`LoadedModels.of`), unless trained on
    data after the serving day; the rest is computed from the store's history."""
    if engine is None or engine.as_of >= day_start_micros(today + timedelta(days=1)):
        return None
    return LoadedModels.of(
        engine.models,
        version=engine.version,
        as_of=engine.as_of,
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
