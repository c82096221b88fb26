"""Daily campaigns: for one date, the offers to send every eligible customer, recorded once.

:func:`run_campaign` reads the events before the campaign date (midnight UTC), computes the
triggers, segments and expected values of :mod:`recsys.offers.ranking` for every known
customer, keeps at most ``max_per_customer`` offers each (one per item, best expected value
first), applies the promotions' budgets and total-redemption caps across customers (greedily,
best expected value first, counting each send's expected cost ``P × discount`` and expected
redemptions ``P``), and records the sends in ``campaign_sends`` and ``offer_impressions`` in
one transaction.

Running it twice for the same date sends nothing twice: the sends of a date are recorded in
one transaction, so a date with any send has run and a re-run sends nothing (not even to
customers the first run left out: the budgets it spent would otherwise be spent again), and
the table's primary key refuses a duplicate even under two concurrent runs.
Across dates, a promotion is sent once per *episode*: once per birthday window, once per
last order for win-back, replenishment and cross-sell (a new order starts a new episode);
``always`` promotions are limited by their frequency cap only.

Models: the current registry version is used when its ``as_of`` is not after the campaign
date (a model trained on later data would leak the future into a past campaign) and it has
the models: ``hybrid`` (``P``), ``buy_again`` (due items), ``bought_together``
(complements). Whatever is missing is computed from the store's events.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import scipy.sparse as sp

from recsys.data.schema import PURCHASE, RETURN
from recsys.data.vocab import Vocabulary
from recsys.errors import ConfigError
from recsys.models.base import ItemSimilarity, PurchaseProbabilities
from recsys.models.buy_again import BuyAgainModel
from recsys.offers.catalog import PromotionCatalog
from recsys.offers.items import VersionCatalog
from recsys.offers.ranking import (
    HybridProbabilities,
    OfferCandidate,
    OfferContext,
    TriggerSettings,
    build_context,
    candidate_offers,
    select_offers,
)
from recsys.offers.segments import PROSPECT, SegmentScale, compute_segments
from recsys.offers.store import Send, impression_times, last_sends, record_sends, sends_on
from recsys.offers.triggers import (
    Complements,
    DueItem,
    PurchaseHistory,
    birthday_occurrence,
    day_start_micros,
    due_items_from_model,
)
from recsys.store.base import EventStore

log = logging.getLogger(__name__)

#: Columns of the campaign file.
CAMPAIGN_COLUMNS = (
    "campaign_date",
    "user_id",
    "offer_id",
    "title",
    "item_id",
    "trigger",
    "reasons",
    "segment",
    "probability",
    "value",
    "discount_cost",
    "expected_value",
)


@dataclass
class CampaignResult:
    """What a campaign run sent, and why others were not sent."""

    campaign_date: date
    sends: list[OfferCandidate]
    already_sent: int
    customers_considered: int
    skipped: Counter[str] = field(default_factory=Counter)
    segments: dict[str, str] = field(default_factory=dict)
    probability_source: str = "history_fallback"
    model_version: str | None = None
    models_used: list[str] = field(default_factory=list)

    @property
    def expected_value(self) -> float:
        """Sum of the sends' expected values."""
        return float(sum(c.expected_value for c in self.sends))

    def by_trigger(self) -> dict[str, int]:
        """Sends per trigger kind."""
        return dict(sorted(Counter(c.trigger for c in self.sends).items()))

    def by_segment(self) -> dict[str, int]:
        """Sends per customer segment."""
        return dict(
            sorted(Counter(self.segments.get(c.user_id, PROSPECT) for c in self.sends).items())
        )

    def rows(self) -> list[dict[str, Any]]:
        """One dict per send, in :data:`CAMPAIGN_COLUMNS` order."""
        return [
            {
                "campaign_date": self.campaign_date.isoformat(),
                "user_id": c.user_id,
                "offer_id": c.offer_id,
                "title": c.title,
                "item_id": c.item_id or "",
                "trigger": c.trigger,
                "reasons": ";".join(c.reasons),
                "segment": self.segments.get(c.user_id, PROSPECT),
                "probability": round(c.probability, 6),
                "value": round(c.value, 4),
                "discount_cost": round(c.discount_cost, 4),
                "expected_value": round(c.expected_value, 4),
            }
            for c in self.sends
        ]


@dataclass(frozen=True)
class LoadedModels:
    """The models of a registry version that the offers use, with the version's ids.

    Each slot holds a model that declares what the offers ask of it, or ``None`` (the
    offers then work from the store's history): :meth:`of` picks them, for a campaign run
    and a server alike.
    """

    version: str
    as_of: int
    users: Vocabulary
    items: Vocabulary
    history: sp.csr_matrix
    #: calibrated purchase probabilities (the hybrid): ranks the promotions
    hybrid: PurchaseProbabilities | None = None
    #: repurchase intervals: the replenishment trigger's due items
    buy_again: BuyAgainModel | None = None
    #: "bought together" neighbours: the cross-sell trigger's complements
    bought_together: ItemSimilarity | None = None

    @classmethod
    def of(
        cls,
        models: Mapping[str, object],
        *,
        version: str,
        as_of: int,
        users: Vocabulary,
        items: Vocabulary,
        history: sp.csr_matrix,
    ) -> LoadedModels | None:
        """The offers' models among a version's ``models`` (by table name), each only if it
        is of the kind the offers ask of that name; ``None`` when none is.

        A table named ``hybrid`` that holds another model (a config may name any model
        class) is left out, for a campaign run as for a server.
        """
        hybrid = models.get("hybrid")
        buy_again = models.get("buy_again")
        bought_together = models.get("bought_together")
        picked = cls(
            version=version,
            as_of=as_of,
            users=users,
            items=items,
            history=history,
            hybrid=hybrid if isinstance(hybrid, PurchaseProbabilities) else None,
            buy_again=buy_again if isinstance(buy_again, BuyAgainModel) else None,
            bought_together=(
                bought_together if isinstance(bought_together, ItemSimilarity) else None
            ),
        )
        return picked if picked.names() else None

    def names(self) -> list[str]:
        """The names of the models held, sorted."""
        held = {
            "hybrid": self.hybrid,
            "buy_again": self.buy_again,
            "bought_together": self.bought_together,
        }
        return sorted(name for name, model in held.items() if model is not None)


def load_models(registry_root: str | Path, today: date) -> LoadedModels | None:
    """The current version's ``hybrid``, ``buy_again`` and ``bought_together`` models
    (:meth:`LoadedModels.of`).

    ``None`` when nothing serves, none of them is there, or the version was trained on data
    after ``today``'s midnight (it would leak the future into the campaign).
    """
    from recsys.artifacts import Manifest, model_folder
    from recsys.models import model_class
    from recsys.models.base import load_csr, load_json
    from recsys.registry import Registry

    registry = Registry(registry_root)
    version = registry.current_version()
    if version is None:
        return None
    manifest = Manifest.parse(registry.verify(version), version)
    if manifest.as_of is None:
        return None
    as_of = manifest.as_of_micros()
    if as_of > day_start_micros(today):
        log.info("model version %s is newer than the campaign date; not used", version)
        return None
    folder = registry.path(version)
    models = {
        name: model_class(spec.class_name(name)).load(model_folder(folder, name))
        for name, spec in manifest.models.items()
        if name in ("hybrid", "buy_again", "bought_together")
    }
    return LoadedModels.of(
        models,
        version=version,
        as_of=as_of,
        users=Vocabulary.from_json(load_json(folder / "users.json")),
        items=Vocabulary.from_json(load_json(folder / "items.json")),
        history=load_csr(folder / "history.npz"),
    )


def build_campaign_context(
    store: EventStore,
    promotions: PromotionCatalog,
    today: date,
    *,
    models: LoadedModels | None = None,
    settings: TriggerSettings | None = None,
    seed: int = 0,
) -> OfferContext:
    """An :class:`OfferContext` for ``today`` from the store (and models, when given).

    Segments are computed at ``today``'s midnight (the campaign's data time), not read from
    the stored table, which may describe another date.
    """
    ctx, _ = _read_context(
        store, promotions, today, models=models, settings=settings, seed=seed, serving=False
    )
    return ctx


@dataclass(frozen=True)
class ShopContext:
    """What a server keeps for a day: the shop's part of the offer context and the scale
    that segments one customer per request (see :meth:`OfferContext.for_customer`)."""

    context: OfferContext
    scale: SegmentScale


def build_shop_context(
    store: EventStore,
    promotions: PromotionCatalog,
    today: date,
    *,
    models: LoadedModels | None = None,
    settings: TriggerSettings | None = None,
    seed: int = 0,
    max_cached: int | None = None,
    catalog: VersionCatalog | None = None,
) -> ShopContext:
    """The shop-level part of :func:`build_campaign_context`, no customer kept.

    The store's events are read once (as for a campaign) to sum what ranking needs about
    every customer (:class:`~recsys.offers.ranking.ShopTotals`, segment norms, popularity,
    complements); then every customer's history, profile, segment and impressions are let
    go. ``max_cached`` bounds the hybrid model's per-customer cache. ``catalog``: the
    catalogue the server holds (the store's is read as rows without it).
    """
    ctx, scale = _read_context(
        store,
        promotions,
        today,
        models=models,
        settings=settings,
        seed=seed,
        serving=True,
        catalog=catalog,
    )
    return ShopContext(ctx.shop_part(max_cached=max_cached), scale)


def _read_context(
    store: EventStore,
    promotions: PromotionCatalog,
    today: date,
    *,
    models: LoadedModels | None,
    settings: TriggerSettings | None,
    seed: int,
    serving: bool,
    catalog: VersionCatalog | None = None,
) -> tuple[OfferContext, SegmentScale]:
    """The whole context, and the segment scale of the day. ``serving``: no impressions (read
    per customer) and no k-means (a server needs the labels only, which the scale gives)."""
    settings = settings or TriggerSettings()
    # purchases and returns are all the history and the segments read: a shop's views (often
    # ten times as many rows) are not fetched
    events = store.read_events(until=day_start_micros(today), event_types=(PURCHASE, RETURN))
    customers = store.read_customers()
    history = PurchaseHistory.from_events(events, today)
    if serving:
        scale = SegmentScale.from_history(history, today, customers)
        segment_of = scale.segments_of(history, customers)
    else:
        table = compute_segments(events, today, customers, seed=seed)
        scale = SegmentScale.from_table(table)
        segment_of = table.segment_of()
    hybrid = complements = due = None
    if models is not None:
        if models.hybrid is not None:
            hybrid = HybridProbabilities(
                models.hybrid, models.users, models.items, models.history, today
            )
        if models.bought_together is not None:
            complements = Complements.from_model(models.bought_together, models.items)
        if models.buy_again is not None:
            model = models.buy_again
            users = models.users

            def due(user_id: str) -> list[DueItem]:
                return due_items_from_model(
                    model,
                    users.index(user_id),
                    models.items,
                    today,
                    max_ratio=settings.replenishment_max_ratio,
                )

    shown: dict[tuple[str, str], list[int]] = {}
    if not serving:
        longest = max(
            (p.frequency_cap.period_days for p in promotions if p.frequency_cap), default=1
        )
        shown = impression_times(
            store,
            day_start_micros(today - timedelta(days=longest)),
            day_start_micros(today + timedelta(days=1)),
        )
    ctx = build_context(
        promotions,
        today,
        history,
        customers=customers,
        # retired items included, as out of stock: an item missing from the catalogue would
        # count as in stock
        catalog=catalog
        if catalog is not None
        else [
            replace(c.item, in_stock=c.item.in_stock and not c.retired)
            for c in store.item_changes()
        ],
        segments=segment_of,
        settings=settings,
        complements=complements,
        hybrid=hybrid,
        due=due,
        impressions=shown,
    )
    return ctx, scale


def _episode_start(ctx: OfferContext, trigger: str, user_id: str) -> date | None:
    """The first day of the current episode of ``trigger`` for the customer."""
    if trigger == "birthday":
        c = ctx.customers.get(user_id)
        if c is None or c.birthday is None:
            return None
        days = ctx.settings.birthday_days_before
        occurrence = birthday_occurrence(c.birthday, ctx.today, days)
        return None if occurrence is None else occurrence - timedelta(days=days)
    if trigger in ("winback", "replenishment", "cross_sell"):
        hist = ctx.history.customers.get(user_id)
        if hist is None:
            return None
        return date(1970, 1, 1) + timedelta(days=hist.order_days[-1])
    return None


def run_campaign(
    store: EventStore,
    promotions: PromotionCatalog,
    today: date,
    *,
    max_per_customer: int = 3,
    models: LoadedModels | None = None,
    settings: TriggerSettings | None = None,
    context: OfferContext | None = None,
    channel: str = "email",
    record: bool = True,
) -> CampaignResult:
    """Choose and record the offers to send on ``today`` (see the module docstring).

    Parameters
    ----------
    store
        The event store (events, customers, catalogue, and the offer tables).
    promotions
        The promotions catalogue.
    today
        The campaign date; only events before its midnight (UTC) are read.
    max_per_customer
        Offers per customer and date at most.
    models
        Models of a registry version (:func:`load_models`); ``None``: history only.
    settings
        Trigger settings.
    context
        A prepared context (tests, or a caller that runs several what-ifs); built from the
        store when ``None``.
    channel
        The channel the campaign sends on (promotions not offered on it are skipped).
    record
        ``False`` computes without recording (a dry run).
    """
    if max_per_customer < 1:
        raise ConfigError(f"max_per_customer: must be at least 1, not {max_per_customer}")
    day = today.isoformat()
    ctx = context or build_campaign_context(
        store, promotions, today, models=models, settings=settings
    )
    done = {s.user_id for s in sends_on(store, day)}
    if done and record:
        # the sends of a date are recorded in one transaction: any send means the campaign
        # of that date ran (running it again with budgets freed would send to new people)
        return CampaignResult(
            campaign_date=today,
            sends=[],
            already_sent=len(done),
            customers_considered=0,
            skipped=Counter({"campaign_already_ran": len(done)}),
        )
    previous = last_sends(store, day)
    users = sorted(set(ctx.customers) | set(ctx.history.customers))
    skipped: Counter[str] = Counter()
    if ctx.hybrid is not None:
        ctx.hybrid.prefetch(
            [u for u in users if u not in done and not ctx.facts(u).marketing_opt_out]
        )
    chosen: list[OfferCandidate] = []
    considered = 0
    for user in users:
        if user in done:
            skipped["already_sent_today"] += 1
            continue
        facts = ctx.facts(user)
        if facts.marketing_opt_out:
            skipped["marketing_opt_out"] += 1
            continue
        considered += 1

        def sent_in_episode(promo: Any, user: str = user) -> bool:
            last = previous.get((user, promo.id))
            if last is None:
                return False
            start = _episode_start(ctx, promo.trigger, user)
            return start is not None and last >= start.isoformat()

        cands, _ = candidate_offers(ctx, user, channel=channel, campaign=True, skip=sent_in_episode)
        picked = select_offers(cands, max_per_customer)
        if not picked:
            skipped["no_offer"] += 1
        chosen.extend(picked)

    chosen = _apply_global_caps(ctx, chosen, skipped)
    chosen.sort(key=lambda c: (c.user_id, -c.expected_value, c.offer_id))
    ts = day_start_micros(today)
    if record and chosen:
        fresh = record_sends(
            store, [Send(day, c.user_id, c.offer_id, c.trigger, ts) for c in chosen]
        )
        kept = {(s.user_id, s.offer_id) for s in fresh}
        skipped["already_sent_today"] += len(chosen) - len(kept)
        chosen = [c for c in chosen if (c.user_id, c.offer_id) in kept]
    return CampaignResult(
        campaign_date=today,
        sends=chosen,
        already_sent=len(done),
        customers_considered=considered,
        skipped=skipped,
        segments=dict(ctx.segments),
        probability_source=ctx.probability_source(),
        model_version=models.version if models else None,
        models_used=models.names() if models else [],
    )


def _apply_global_caps(
    ctx: OfferContext, chosen: Sequence[OfferCandidate], skipped: Counter[str]
) -> list[OfferCandidate]:
    """Budgets and total-redemption caps across customers, best expected value first."""
    from recsys.offers.eligibility import spent_on

    cost: dict[str, float] = {}
    redemptions: dict[str, float] = {}
    out = []
    for c in sorted(chosen, key=lambda c: (-c.expected_value, c.user_id, c.offer_id)):
        promo = ctx.promotions.get(c.offer_id)
        assert promo is not None
        caps = promo.caps
        total = ctx.shop.redemptions.get(promo.id, 0)
        if caps.budget is not None:
            spent = spent_on(promo, total, ctx.history.redeemed_value.get(promo.id, 0.0))
            if spent + cost.get(promo.id, 0.0) + c.probability * c.discount_cost > caps.budget:
                skipped["budget"] += 1
                continue
        if (
            caps.total_redemptions is not None
            and total + redemptions.get(promo.id, 0.0) + c.probability > caps.total_redemptions
        ):
            skipped["total_redemptions_cap"] += 1
            continue
        cost[promo.id] = cost.get(promo.id, 0.0) + c.probability * c.discount_cost
        redemptions[promo.id] = redemptions.get(promo.id, 0.0) + c.probability
        out.append(c)
    return out


def write_campaign(result: CampaignResult, path: str | Path) -> int:
    """Write the sends to ``.csv`` or ``.parquet`` (header/schema even when empty)."""
    path = Path(path)
    rows = result.rows()
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--out: {path} must end in .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(CAMPAIGN_COLUMNS))
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        floats = {"probability", "value", "discount_cost", "expected_value"}
        schema = pa.schema(
            [(n, pa.float64() if n in floats else pa.string()) for n in CAMPAIGN_COLUMNS]
        )
        table = pa.Table.from_pylist(rows, schema=schema)
        pq.write_table(table, path)
    return len(rows)


__all__ = [
    "CAMPAIGN_COLUMNS",
    "CampaignResult",
    "LoadedModels",
    "ShopContext",
    "build_campaign_context",
    "build_shop_context",
    "load_models",
    "run_campaign",
    "write_campaign",
]
