"""The one request path: every list the engine serves is decided here, once.

The HTTP routes, ``recsys recommend`` (batch scoring), campaigns, ``recsys ab offline`` and the
merchandiser page all call :class:`RecommendationService`; none of them decides on its own:

* **erasure**: an erased customer (a tombstone in the store, :mod:`recsys.live`) is unknown
  to every model version this process loads, the serving one, an experiment variant's, a
  rolled-back one, and to batch runs;
* **consent**: a customer who opted out of personalisation gets the non-personal list; one
  who opted out of marketing gets no promotion, on any channel;
* **live catalogue**: stock, price, category and retirement as the store has them now, over
  the catalogue a version was trained with (:meth:`recsys.engine.Engine.with_catalog`);
* **live events**: what the customer did since the version was trained is folded in;
* **precomputed or live**: the training-time top lists answer when they give exactly the
  live answer (:meth:`recsys.engine.Engine.recommend_precomputed`), else the model scores;
* **experiments**: the customer's arm (sticky hashing), the variant's model version and rules,
  exploration, and the exposure record (queued; erased customers' rows are never written).

It does not import FastAPI: the routes parse, call one method, and respond.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from recsys.artifacts import knows_user
from recsys.data.schema import personalisation_opt_outs
from recsys.engine import Engine, RecommendationList
from recsys.errors import NotFoundError, RegistryError
from recsys.experiments.assignment import assign
from recsys.experiments.definitions import HOLDOUT, Experiment
from recsys.experiments.exposures import Exposure
from recsys.experiments.offpolicy import explore
from recsys.live import LiveState
from recsys.lru import LRU
from recsys.ranking.rules import RequestFilters, RulesFile
from recsys.store.base import EventStore, ServingFacts

if TYPE_CHECKING:
    from recsys.experiments.exposures import ExposureWriter
    from recsys.experiments.registry import ExperimentRegistry
    from recsys.offers.ranking import OfferCandidate
    from recsys.offers.service import OfferService
    from recsys.registry import Registry

log = logging.getLogger(__name__)

#: Prepared engines (live catalogue and variant rules laid over a version) kept per process.
_PREPARED_CACHE = 64
#: A session's most recent events read for its list.
SESSION_EVENTS = 50
#: Live-path lists kept per process, and for how long (time-aware models move with the clock).
LIVE_CACHE_SIZE = 20_000
LIVE_CACHE_TTL_S = 30.0


class EngineSource(Protocol):
    """Where the service gets model versions (the API's hot-swapped one, or a batch run's)."""

    def require_engine(self) -> Engine:
        """The version serving now (:class:`~recsys.errors.ModelError` when none)."""
        ...

    def engine_for_version(self, version: str) -> Engine | None:
        """Another version (an experiment variant's), or ``None`` when it cannot be loaded."""
        ...


class FixedEngine:
    """An :class:`EngineSource` of one loaded version (batch runs, tests)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def require_engine(self) -> Engine:
        """The version."""
        return self.engine

    def engine_for_version(self, version: str) -> Engine | None:
        """The version when it is the one asked for, else ``None``."""
        return self.engine if version == self.engine.version else None


@dataclass(frozen=True)
class ListRequest:
    """One request for a customer's list.

    ``user_id`` ``None`` (or unknown) gets the session's list when ``session_id`` names a
    session with events, else the non-personal list; ``placement`` picks the rule set;
    ``filters`` are request-level exclusions.
    """

    user_id: str | None
    k: int = 10
    placement: str | None = None
    filters: RequestFilters = field(default_factory=RequestFilters)
    #: The browsing session: it answers when the model does not know the customer (a guest).
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Arm:
    """Where a request landed: the experiment and variant (``None`` outside any) and the
    engine that serves it."""

    experiment: Experiment | None
    variant: str | None
    engine: Engine

    @property
    def holdout(self) -> bool:
        """The customer is held out: serve non-personal results."""
        return self.variant == HOLDOUT


@dataclass(frozen=True)
class Served:
    """A list as served: the items, the id that attributes outcomes to it, and the arm."""

    result: RecommendationList
    recommendation_id: str
    experiment: str | None = None
    variant: str | None = None
    offers: list[OfferCandidate] | None = None


@dataclass(frozen=True, slots=True)
class Looked:
    """What one statement told a request about its customer (:meth:`EventStore.serving_facts`),
    handed from :meth:`RecommendationService.recommend_fast` to
    :meth:`RecommendationService.recommend` so that nothing is read twice."""

    allowed: bool
    """Whether anything personal may be served (:meth:`RecommendationService.personal_allowed`)."""
    mark: tuple[int, int]
    """Their events since the version (:attr:`ServingFacts.mark`)."""


class RecommendationService:
    """Answers every list (see the module docstring).

    Parameters
    ----------
    store
        The shared store (consents, live events, tombstones, catalogue).
    engines
        The model versions.
    live
        This process's view of the live state (refreshed by the caller's schedule).
    experiments, exposures
        A/B experiments and the exposure writer (``None``: no experiments).
    offers
        Promotions (``None``: lists only).
    live_events
        Recent events read per request to fold in (0: none).
    on_variant_fallback
        Called with (experiment, variant) when a variant's model version cannot be loaded.
    """

    def __init__(
        self,
        store: EventStore,
        engines: EngineSource,
        live: LiveState,
        *,
        experiments: ExperimentRegistry | None = None,
        exposures: ExposureWriter | None = None,
        offers: OfferService | None = None,
        live_events: int = 50,
        on_variant_fallback: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.engines = engines
        self.live = live
        self.experiments = experiments
        self.exposures = exposures
        self.offers = offers
        self.live_events = live_events
        self.on_variant_fallback = on_variant_fallback
        self._prepared: dict[tuple[int, int, int], tuple[Engine, Engine]] = {}
        self._prepared_lock = threading.Lock()
        # the live path's answers, by customer and their newest event: a customer's next
        # requests reuse the fold-in until they do something new (or the list ages out)
        self._live_lists = _TimedCache(maxsize=LIVE_CACHE_SIZE, ttl_s=LIVE_CACHE_TTL_S)

    # -- personal lists ------------------------------------------------------------------------

    def recommend(
        self,
        request: ListRequest,
        *,
        endpoint: str = "recommendations",
        arm: Arm | None = None,
        looked: Looked | None = None,
    ) -> Served:
        """A customer's list, under their experiment arm (the exposure is queued); ``arm``
        and ``looked`` as :meth:`recommend_fast` found them, when it came first."""
        arm = arm or self.arm(request.user_id)
        if arm.holdout:
            return self._serve(self._holdout(arm, request.k), arm, endpoint, request.user_id)
        result = self._personal(arm.engine, request, looked)
        return self._serve(result, arm, endpoint, request.user_id, placement=request.placement)

    def recommend_fast(
        self, request: ListRequest, *, endpoint: str = "recommendations"
    ) -> tuple[Served | None, Arm, Looked | None]:
        """:meth:`recommend` for the common cases, answered without blocking on a store whose
        reads take microseconds (SQLite): a known customer with nothing new since training,
        from the precomputed lists, and a customer the version does not know, with nothing
        new and no session, the non-personal list. ``None`` when that does not apply: then
        pass the arm it chose (an arm is chosen, and counted, once per request) and what it
        read about the customer (``None`` when it read nothing) to :meth:`recommend`, which
        then reads none of it again (a live customer's kept list is answered with no
        statement, a new one with one).
        """
        uid = request.user_id
        arm = self.arm(uid)
        if not uid or self.store.backend != "sqlite" or arm.holdout:
            return None, arm, None
        engine = arm.engine
        looked = self._look(uid, self.store.serving_facts(uid, engine.as_of, engine.events_seq))
        if looked.mark[0]:
            # a live customer, answered in the thread pool even when their list is kept: more
            # work on the loop starves the pool's requests of the GIL, and the tail grows
            # (benchmarks/RESULTS.md, "Fifty-first session")
            return None, arm, looked
        if engine.users.index(uid) < 0:
            if request.session_id or request.filters.exclude:
                # a guest who is browsing gets the session's list; a request's own exclusions
                # make a list the engine does not keep, built in the thread pool, off the loop
                return None, arm, looked
            # unknown to the version and nothing new: the non-personal list, whatever their
            # consent says (the engine keeps it built per rules, filters and k)
            listed = engine.recommend(
                uid,
                request.k,
                placement=request.placement,
                filters=request.filters,
                personalise=False,
            )
            served = self._serve(listed, arm, endpoint, uid, placement=request.placement)
            return served, arm, looked
        if engine.precomputed is None or not looked.allowed:
            # nothing stored to answer from, or nothing personal allowed (personal_allowed)
            return None, arm, looked
        result = engine.recommend_precomputed(
            uid, request.k, placement=request.placement, filters=request.filters
        )
        if result is None:
            return None, arm, looked
        return self._serve(result, arm, endpoint, uid, placement=request.placement), arm, looked

    def recommend_many(
        self, user_ids: Sequence[str], k: int, *, filters: RequestFilters = RequestFilters()
    ) -> list[RecommendationList]:
        """Lists for many customers (batch scoring): the current version, no experiment;
        erasure, consent, the live catalogue and each customer's events since the version as
        for one request. A customer with such events gets the API's live list; the others
        are answered from the precomputed lists wherever they give the same list, the rest
        scored in batches."""
        engine = self.prepare(self.engines.require_engine())
        opted_out = personalisation_opt_outs(self.store.read_customers())
        # the customers the API answers on the live path (their events the version did not
        # train on); batch scoring reads the version's history only
        live = self.store.live_users(engine.as_of, engine.events_seq)
        out: list[RecommendationList | None] = []
        precomputed = on_live_path = 0
        for uid in user_ids:
            if uid in opted_out or self.live.is_erased(uid):
                out.append(engine.recommend(uid, k, filters=filters, personalise=False))
            elif uid in live:
                out.append(self._personal(engine, ListRequest(uid, k, filters=filters)))
                on_live_path += 1
            else:
                stored = engine.recommend_precomputed(uid, k, filters=filters)
                precomputed += stored is not None
                out.append(stored)
        missing = [j for j, lst in enumerate(out) if lst is None]
        if missing:
            scored = engine.recommend_batch([user_ids[j] for j in missing], k, filters=filters)
            for j, lst in zip(missing, scored, strict=True):
                out[j] = lst
        log.info(
            "%d of %d customers answered from the precomputed lists, %d on the live path",
            precomputed,
            len(user_ids),
            on_live_path,
        )
        return [lst for lst in out if lst is not None]

    def personal_allowed(self, user_id: str | None) -> bool:
        """Whether anything personal may be served to ``user_id`` (known to the store as not
        erased and not opted out of personalisation; ``False`` for no id)."""
        if not user_id or self.live.is_erased(user_id):
            return False
        customer = self.store.get_customer(user_id)
        return not (customer is not None and customer.personalisation_opt_out)

    def session(self, session_id: str, request: ListRequest | None = None) -> Served:
        """A browsing session's list, live from the events posted during it (see
        :meth:`recsys.engine.Engine.session_list`); a session with no known item gets the
        popular list. Guests have no experiment arm: nothing is logged."""
        request = request or ListRequest(None)
        engine = self.prepare(self.engines.require_engine())
        return Served(self._session_list(engine, session_id, request), uuid.uuid4().hex)

    def _session_list(
        self, engine: Engine, session_id: str, request: ListRequest
    ) -> RecommendationList:
        events = self.store.session_events(session_id, limit=SESSION_EVENTS)
        items = [str(i) for i in events.item_id.tolist()]
        listed = engine.session_list(
            items, request.k, placement=request.placement, filters=request.filters
        )
        return listed if listed.fallback else replace(listed, fallback="session")

    # -- item lists ----------------------------------------------------------------------------

    def similar(self, item_id: str, kind: str, k: int) -> Served:
        """ "Often viewed with" or "bought together" one item (404 naming an unknown item)."""
        engine = self.prepare(self.engines.require_engine())
        return Served(engine.similar(item_id, kind, k), uuid.uuid4().hex)

    def complete_basket(self, item_ids: Sequence[str], k: int, user_id: str | None) -> Served:
        """Items that complete a basket, under the customer's arm."""
        arm = self.arm(user_id)
        if arm.holdout:
            return self._serve(self._holdout(arm, k), arm, "baskets_complete", user_id)
        result = arm.engine.complete_basket(item_ids, k, user_id=user_id)
        return self._serve(result, arm, "baskets_complete", user_id)

    def popular(self, k: int, category: str | None = None) -> Served:
        """The most popular items now in the shop."""
        engine = self.prepare(self.engines.require_engine())
        return Served(engine.popular(k, category=category), uuid.uuid4().hex)

    def trending(self, k: int, category: str | None = None) -> Served:
        """Items whose sales are rising, now in the shop."""
        engine = self.prepare(self.engines.require_engine())
        return Served(engine.trending(k, category=category), uuid.uuid4().hex)

    # -- offers --------------------------------------------------------------------------------

    def offer(
        self,
        user_id: str,
        k: int,
        *,
        max_offers: int = 3,
        channel: str = "web",
        count_impressions: bool = True,
        arm: Arm | None = None,
    ) -> Served:
        """Items to offer (placement ``offers``) and the promotions to show, best expected
        value first. No promotion for a customer who opted out of marketing, whatever the
        channel; non-personal ones for the erased, the opted-out and the held-out.

        ``count_impressions``: record the promotions as shown (frequency caps count them).
        ``arm``: serve as this arm (e.g. :meth:`variant_arm`, to compare) instead of the
        customer's own.
        """
        if self.offers is None:
            raise NotFoundError("offers are not set up on this server")
        arm = arm or self.arm(user_id)
        # one statement for the list, the promotions and the consents: the profile and the
        # live events' mark (each read is a wait for the GIL under load)
        facts = self.store.serving_facts(user_id, arm.engine.as_of, arm.engine.events_seq)
        customer = facts.customer
        looked = self._look(user_id, facts)
        if arm.holdout:
            result = self._holdout(arm, k)
        else:
            result = self._personal(arm.engine, ListRequest(user_id, k, "offers"), looked)
        personal = not arm.holdout and looked.allowed
        chosen: list[OfferCandidate] = []
        if not (customer is not None and customer.marketing_opt_out):
            chosen = self.offers.rank(
                user_id,
                engine=arm.engine,
                customer=customer,
                personalise=personal,
                channel=channel,
                k=max_offers,
                generation=self.live.generation,
            )
            chosen = _in_shop(chosen, arm.engine)
            if count_impressions and personal:
                self.offers.record(user_id, chosen)
        placement = None if arm.holdout else "offers"
        served = self._serve(result, arm, "offers", user_id, placement=placement)
        return replace(served, offers=chosen)

    # -- writes that change what is served -----------------------------------------------------

    def erase(self, user_id: str) -> int:
        """Erase a customer everywhere (see :meth:`recsys.store.base.EventStore.erase_user`);
        this process stops serving anything personal to them before it returns, every other
        process within its refresh interval. Returns the events removed."""
        if self.offers is not None:
            self.offers.forget_user(user_id)  # first: no queued impression of theirs survives
        removed = self.store.erase_user(user_id)
        self.live.refresh()
        return removed

    def register(self, user_id: str, registry: Registry) -> bool:
        """Let an erased customer's new events in again (the shop registered them again);
        ``True`` when they were erased. What was erased stays erased: no run learns an erased
        customer (they have no events, and a warm start after an erasure trains in full), so a
        version in ``registry`` that knows them learned them from the erased events, and
        serving it would bring those back.

        Raises
        ------
        RegistryError
            A version knows them (the message names each: train, then prune them), or a
            training run holds the registry's lock (it may have read their events before the
            erasure and publish a version that knows them after this check).
        """
        with registry.lock():
            if not self.store.is_erased(user_id):
                return False
            knowing = [v for v in registry.version_names() if knows_user(registry.path(v), user_id)]
            if knowing:
                raise RegistryError(
                    f"customer '{user_id}' cannot be registered again while model version(s) "
                    f"{', '.join(knowing)} hold what they learned before the erasure; train "
                    "again and prune them (`recsys models prune`), then register"
                )
            lifted = self.store.register_user(user_id)
        self.live.refresh()
        return lifted

    # -- experiments ---------------------------------------------------------------------------

    def arm(self, user_id: str | None) -> Arm:
        """The running experiment (first in the file) and variant of ``user_id``, and the
        engine that serves it (its model version, the live catalogue and its rules).

        A variant whose ``model_version`` cannot be loaded is served by the current version
        (and reported to ``on_variant_fallback``); the holdout keeps the server's rules.
        """
        engine = self.engines.require_engine()
        registry = self.experiments
        if registry is None or not user_id:
            return Arm(None, None, self.prepare(engine))
        now = datetime.now(UTC)
        for exp in registry.running(now):
            variant = assign(exp, user_id, now).variant
            if variant is None:
                continue
            if variant == HOLDOUT:
                return Arm(exp, variant, self.prepare(engine))
            return Arm(exp, variant, self._variant_engine(exp, variant, engine))
        return Arm(None, None, self.prepare(engine))

    def variant_arm(self, experiment: str, variant: str) -> Arm:
        """The engine ``variant`` of ``experiment`` serves, whoever the customer is (to look
        at a variant's lists, e.g. side by side on the merchandiser's page), as :meth:`arm`
        builds it; ``experiment`` is ``None`` in the result, so nothing served through it is
        logged as an exposure. :class:`~recsys.errors.NotFoundError` names what is missing."""
        if self.experiments is None:
            raise NotFoundError("no experiments are configured on this server")
        exp = self.experiments.get(experiment)
        engine = self.engines.require_engine()
        if variant == HOLDOUT:
            return Arm(None, HOLDOUT, self.prepare(engine))
        if not any(v.name == variant for v in exp.variants):
            raise NotFoundError(f"experiment {experiment!r} has no variant {variant!r}")
        return Arm(None, variant, self._variant_engine(exp, variant, engine))

    def _variant_engine(self, exp: Experiment, variant: str, engine: Engine) -> Engine:
        """The variant's model version (the current one when its own cannot be loaded) with
        the live catalogue and the variant's rules."""
        assert self.experiments is not None
        spec = next(v for v in exp.variants if v.name == variant)
        serving = engine
        if spec.model_version and spec.model_version != engine.version:
            other = self.engines.engine_for_version(spec.model_version)
            if other is None:
                if self.on_variant_fallback is not None:
                    self.on_variant_fallback(exp.name, variant)
            else:
                serving = other
        ranking = self.experiments.ranking(exp, spec)
        return self.prepare(serving, ranking[1] if ranking is not None else None)

    def prepare(self, engine: Engine, rules: RulesFile | None = None) -> Engine:
        """``engine`` with the live catalogue laid over it (and ``rules`` instead of its own),
        built once per catalogue change and kept."""
        key = (id(engine), self.live.catalog_generation, id(rules))
        hit = self._prepared.get(key)
        if hit is not None and hit[0] is engine:
            return hit[1]
        out = engine.with_catalog(self.live.catalog) if self.live.catalog else engine
        if rules is not None:
            out = out.with_rules(rules)
        with self._prepared_lock:
            if len(self._prepared) >= _PREPARED_CACHE:
                self._prepared.clear()
            self._prepared[key] = (engine, out)
        return out

    # -- internals -----------------------------------------------------------------------------

    def _personal(
        self, engine: Engine, request: ListRequest, looked: Looked | None = None
    ) -> RecommendationList:
        """The customer's list (live from their events since the version); ``looked``: what
        :meth:`recommend_fast` read already (else it is read here, in one statement)."""
        uid = request.user_id
        common: dict[str, Any] = {"placement": request.placement, "filters": request.filters}
        if uid and looked is None:
            looked = self._look(uid, self.store.serving_facts(uid, engine.as_of, engine.events_seq))
        if uid is None or looked is None or not looked.allowed:
            return engine.recommend(uid or "", request.k, personalise=False, **common)
        key = self._live_key(request, looked)
        result = self._live_lists.get(key, engine)
        if result is None:
            # only what the version did not train on: the rest is already in its history
            events = (
                self.store.user_events(
                    uid, limit=self.live_events, since=engine.as_of, after_seq=engine.events_seq
                )
                if looked.mark[0]
                else None
            )
            result = engine.recommend(uid, request.k, events=events, **common)
            self._live_lists.put(key, engine, result)
        if self._to_session(result, request):
            assert request.session_id is not None
            return self._session_list(engine, request.session_id, request)
        return result

    def _look(self, user_id: str, facts: ServingFacts) -> Looked:
        """What ``facts`` (one statement) and this process's tombstones say about a customer;
        their live events count for nothing when the service folds none in."""
        allowed = bool(user_id) and not facts.opted_out and not self.live.is_erased(user_id)
        return Looked(allowed, facts.mark if self.live_events else (0, 0))

    @staticmethod
    def _live_key(request: ListRequest, looked: Looked) -> Hashable:
        # the customer's events since the version name their kept list: any write, move or
        # removal of one changes the mark (erasure and consent are checked on every request)
        return (request.user_id, request.k, request.placement, request.filters, looked.mark)

    @staticmethod
    def _to_session(result: RecommendationList, request: ListRequest) -> bool:
        """Whether a guest (or a customer the model does not know yet) who is browsing gets
        their session's list instead of ``result``."""
        return result.fallback == "popular" and bool(request.session_id)

    @staticmethod
    def _holdout(arm: Arm, k: int) -> RecommendationList:
        return replace(arm.engine.popular(k), fallback=HOLDOUT)

    def _serve(
        self,
        result: RecommendationList,
        arm: Arm,
        endpoint: str,
        user_id: str | None,
        *,
        placement: str | None = None,
    ) -> Served:
        """Explore (as the variant says) and queue the exposure."""
        rid = uuid.uuid4().hex
        exp = arm.experiment
        if exp is None or not user_id:
            return Served(result, rid)
        ids = [r.item_id for r in result.items]
        props: tuple[float, ...] = (1.0,) * len(ids)
        if ids and not arm.holdout:
            # a fresh generator per request: numpy generators are not safe to share by threads
            served = explore(ids, exp.exploration, np.random.default_rng())
            by_id = {r.item_id: r for r in result.items}
            result = replace(result, items=[by_id[i] for i in served.items])
            ids, props = list(served.items), served.propensities
        if self.exposures is not None and not self.live.is_erased(user_id):
            self.exposures.submit(
                Exposure(
                    recommendation_id=rid,
                    user_id=user_id,
                    experiment=exp.name,
                    variant=arm.variant,
                    items=tuple(ids),
                    ts=time.time_ns() // 1000,
                    propensities=props,
                    placement=placement or endpoint,
                    model_version=result.model_version,
                )
            )
        return Served(result, rid, exp.name, arm.variant)


class _TimedCache:
    """A small LRU of recent answers that expire (thread-safe); an answer is only given back
    for the engine that made it (a new catalogue, rules or version makes a new engine)."""

    def __init__(self, *, maxsize: int, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._data: LRU[Hashable, tuple[float, Engine, RecommendationList]] = LRU(maxsize)

    def get(self, key: Hashable, engine: Engine) -> RecommendationList | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[1] is not engine or time.monotonic() - hit[0] > self.ttl_s:
            self._data.pop(key)
            return None
        return hit[2]

    def put(self, key: Hashable, engine: Engine, value: RecommendationList) -> None:
        self._data.put(key, (time.monotonic(), engine, value))


def _in_shop(offers: list[OfferCandidate], engine: Engine) -> list[OfferCandidate]:
    """Promotions of items that are in stock now (basket promotions always pass)."""
    catalog = engine.catalog
    out = []
    for offer in offers:
        if offer.item_id is not None:
            i = engine.items.index(offer.item_id)
            if i >= 0 and not catalog.in_stock[i]:
                continue
        out.append(offer)
    return out
