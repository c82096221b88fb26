"""What each page of the merchandiser's UI shows, gathered from the library.

Nothing here decides what a customer is served: lists come from
:class:`recsys.service.RecommendationService` (consent, erasure, live catalogue, experiments,
offers), catalogue changes go to the store as the catalogue API writes them, experiments to
:class:`~recsys.experiments.registry.ExperimentRegistry`, versions to
:class:`~recsys.registry.Registry`, campaigns to :func:`recsys.offers.campaigns.run_campaign`.
This module only collects their answers into plain rows for the templates, with the reasons in
words (:mod:`recsys.explain`).

Looking is not serving: the page asks a :class:`~recsys.service.RecommendationService` that
shares the server's store, versions, live state, experiments and offers but has no exposure
writer, and asks offers without counting impressions, so a merchandiser's visit is never
logged as an exposure of an experiment nor spends a customer's frequency cap.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import threading
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from recsys.data.schema import MAX_ID_LENGTH, CatalogItem, Customer
from recsys.engine import RecommendationList
from recsys.errors import ConfigError, NotFoundError, RecsysError
from recsys.experiments.definitions import Experiment
from recsys.explain import PurchaseRecord, purchase_records, reasons_text
from recsys.files import write_atomic
from recsys.offers.campaigns import CAMPAIGN_COLUMNS, CampaignResult, load_models, run_campaign
from recsys.ranking.rules import RulesFile, parse_rules
from recsys.service import Arm, ListRequest, RecommendationService, Served
from serving.state import ServingState

log = logging.getLogger(__name__)

#: Items shown per list on the pages.
LIST_K = 10
#: Purchase lines shown on a customer's page (newest first).
HISTORY_LINES = 40
#: Customers listed for a search.
SEARCH_LIMIT = 50
#: Campaign rows shown on the page (the CSV has all).
CAMPAIGN_ROWS = 200
#: Attribute names that hold an item's picture, in order of preference.
IMAGE_ATTRIBUTES = ("image_url", "image", "image_link", "picture", "thumbnail", "img")


# -- shared by the pages -----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One item of a list as shown: its catalogue facts and why it is there, in words."""

    rank: int
    item_id: str
    title: str
    category: str
    price: float | None
    in_stock: bool
    image: str | None
    score: float | None
    reasons: list[str]
    codes: list[str]


@dataclass(frozen=True)
class ListView:
    """A ranked list with what served it."""

    heading: str
    rows: list[Row]
    model_version: str
    fallback: str | None = None
    experiment: str | None = None
    variant: str | None = None
    error: str | None = None

    @property
    def ids(self) -> list[str]:
        """The item ids in order."""
        return [r.item_id for r in self.rows]


def image_of(item: CatalogItem | None) -> str | None:
    """The picture URL among the item's attributes, when it has one (http(s) or a path)."""
    if item is None:
        return None
    for name in IMAGE_ATTRIBUTES:
        value = item.attributes.get(name)
        if isinstance(value, str) and value.startswith(("https://", "http://", "/")):
            return value
    return None


class Pages:
    """The page data of one app: caches keyed by what invalidates them, and the
    non-exposing service (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._catalog: tuple[int, dict[str, CatalogItem]] | None = None
        self._preview: tuple[int, RecommendationService] | None = None
        self._campaigns: dict[tuple[Any, ...], CampaignResult] = {}
        # previews being computed in the background, and the errors they ended with
        self._computing: set[tuple[Any, ...]] = set()
        self._campaign_errors: dict[tuple[Any, ...], RecsysError] = {}

    # -- library objects -----------------------------------------------------------------------

    def warm(self, state: ServingState) -> None:
        """Build the day's offer context in the background (seconds on the sample, once per
        day and version), so that the first customer page after a login answers at once."""
        offers, engine = state.offers, state.engine
        if offers is None or engine is None:
            return

        def build() -> None:
            try:
                offers.context(engine)
            except RecsysError as exc:
                log.warning("offer context not prepared: %s", exc)

        threading.Thread(target=build, name="ui-warm-offers", daemon=True).start()

    def service(self, state: ServingState) -> RecommendationService:
        """A service over the server's state that logs no exposure (see the module docstring)."""
        held = self._preview
        if held is None or held[0] != id(state):
            svc = RecommendationService(
                state.store, state, state.live, live_events=state.settings.live_events
            )
            held = (id(state), svc)
            self._preview = held
        svc = held[1]
        # set up in the app's lifespan, possibly after the first page: follow the server's
        svc.experiments = state.experiments
        svc.offers = state.offers
        return svc

    def catalog(self, state: ServingState) -> dict[str, CatalogItem]:
        """The catalogue by id, read again only when the store's generation moved."""
        generation = state.live.generation
        held = self._catalog
        if held is None or held[0] != generation or generation < 0:
            held = (generation, {i.item_id: i for i in state.store.read_items()})
            self._catalog = held
        return held[1]

    def item(self, state: ServingState, item_id: str) -> CatalogItem | None:
        """One item as stored now (``None`` when unknown or retired)."""
        change = state.live.catalog.get(item_id)
        if change is not None:
            return None if change.retired else change.item
        return self.catalog(state).get(item_id) or state.store.get_item(item_id)

    def titles(self, state: ServingState) -> dict[str, str]:
        """Item titles by id."""
        return {k: v.title for k, v in self.catalog(state).items() if v.title}

    def rows(
        self,
        state: ServingState,
        result: RecommendationList,
        history: dict[str, PurchaseRecord] | None = None,
    ) -> list[Row]:
        """A list's items with their catalogue facts and reasons in words."""
        titles = self.titles(state)
        out = []
        for rank, rec in enumerate(result.items, 1):
            item = self.item(state, rec.item_id)
            out.append(
                Row(
                    rank=rank,
                    item_id=rec.item_id,
                    title=item.title if item and item.title else rec.item_id,
                    category=item.category if item else "",
                    price=item.price if item else None,
                    in_stock=item.in_stock if item else True,
                    image=image_of(item),
                    score=float(rec.score),
                    reasons=reasons_text(
                        rec.reasons, titles=titles, history=history, item_id=rec.item_id
                    ),
                    codes=list(rec.reasons),
                )
            )
        return out

    def view(
        self,
        state: ServingState,
        heading: str,
        served: Served,
        history: dict[str, PurchaseRecord] | None = None,
    ) -> ListView:
        """A served list as a :class:`ListView`."""
        result = served.result
        return ListView(
            heading,
            self.rows(state, result, history),
            result.model_version,
            result.fallback,
            served.experiment,
            served.variant,
        )

    # -- customers -----------------------------------------------------------------------------

    def search(self, state: ServingState, query: str) -> list[str]:
        """Customer ids that start with ``query`` (profiles, and customers the serving
        version knows), sorted, at most :data:`SEARCH_LIMIT`. Each source gives its first
        ones, so no worker holds a list of every customer (at 10^6 customers, 110 MiB)."""
        q = query.strip()
        if len(q) > MAX_ID_LENGTH:
            return []  # no id is that long
        found = set(state.store.customer_ids_starting_with(q, SEARCH_LIMIT))
        if state.engine is not None:
            found.update(state.engine.users.starting_with(q, SEARCH_LIMIT))
        return sorted(found)[:SEARCH_LIMIT]

    def customer(
        self, state: ServingState, user_id: str, compare: str | None = None
    ) -> dict[str, Any]:
        """Everything the customer page shows (see the template)."""
        engine = state.require_engine()
        svc = self.service(state)
        profile = state.store.get_customer(user_id)
        erased = state.live.is_erased(user_id)
        events = state.store.user_events(user_id, limit=2000)
        purchases = [j for j in range(len(events)) if events.event_type[j] == "purchase"]
        now = max([engine.as_of, *(int(events.ts[j]) for j in purchases)])
        history = purchase_records(
            [str(events.item_id[j]) for j in purchases], [int(events.ts[j]) for j in purchases], now
        )
        lines = []
        for j in reversed(purchases[-HISTORY_LINES:]):
            item_id = str(events.item_id[j])
            item = self.item(state, item_id)
            lines.append(
                {
                    "when": datetime.fromtimestamp(int(events.ts[j]) / 1e6, UTC),
                    "item_id": item_id,
                    "title": item.title if item and item.title else item_id,
                    "image": image_of(item),
                    "quantity": float(events.quantity[j]),
                    "price": None if events.price[j] != events.price[j] else float(events.price[j]),
                }
            )
        arm = svc.arm(user_id)
        mine = svc.recommend(ListRequest(user_id, LIST_K))
        lists = [self.view(state, _arm_heading(arm), mine, history)]
        if compare:
            lists.append(self._compare(state, svc, user_id, compare, history))
        offers: list[dict[str, Any]] = []
        offers_note = None
        segment = None
        compared_offers: dict[str, Any] | None = None
        if state.offers is not None:
            try:
                offers = self._offer_rows(state, svc, user_id, history, None)
                segment = state.offers.segment(
                    user_id, engine=engine, customer=state.store.get_customer(user_id)
                )
            except RecsysError as exc:
                offers_note = str(exc)
            if compare and len(lists) > 1 and lists[1].error is None:
                heading = lists[1].heading
                try:
                    compared_offers = {
                        "heading": heading,
                        "rows": self._offer_rows(
                            state, svc, user_id, history, self._compare_arm(state, svc, compare)[0]
                        ),
                        "note": None,
                    }
                except RecsysError as exc:
                    compared_offers = {"heading": heading, "rows": [], "note": str(exc)}
        else:
            offers_note = "offers are not set up on this server"
        return {
            "user_id": user_id,
            "profile": profile,
            "known": user_id in engine.users and not erased,
            "erased": erased,
            "personal": svc.personal_allowed(user_id),
            "segment": segment,
            "arm": arm,
            "lines": lines,
            "purchase_count": len(purchases),
            "lists": lists,
            "offers": offers,
            "offers_note": offers_note,
            "compared_offers": compared_offers,
            "choices": self.compare_choices(state),
            "compare": compare or "",
        }

    def compare_choices(self, state: ServingState) -> list[tuple[str, str]]:
        """What a list can be compared with: other versions, and every experiment variant."""
        out = [(f"version:{v}", f"model version {v}") for v in state.registry.version_names()]
        if state.experiments is not None:
            for exp in state.experiments.all():
                for v in exp.variants:
                    out.append((f"variant:{exp.name}:{v.name}", f"{exp.name}: variant {v.name}"))
        return out

    def _offer_rows(
        self,
        state: ServingState,
        svc: RecommendationService,
        user_id: str,
        history: dict[str, PurchaseRecord],
        arm: Arm | None,
    ) -> list[dict[str, Any]]:
        """The promotions the customer would be shown (as ``arm`` when given), in words;
        looking spends no frequency cap."""
        served = svc.offer(user_id, LIST_K, count_impressions=False, arm=arm)
        titles = self.titles(state)
        return [
            {
                "offer": o,
                "item_title": titles.get(o.item_id or "", o.item_id or "the basket"),
                "reasons": reasons_text(
                    o.reasons, titles=titles, history=history, item_id=o.item_id
                ),
            }
            for o in served.offers or []
        ]

    def _compare_arm(
        self, state: ServingState, svc: RecommendationService, choice: str
    ) -> tuple[Arm, str]:
        """The arm a ``version:...`` or ``variant:...`` choice serves as, and its heading."""
        kind, _, rest = choice.partition(":")
        if kind == "version":
            engine = state.engine_for_version(rest)
            if engine is None:
                raise NotFoundError(f"model version {rest} cannot be loaded")
            return Arm(None, None, svc.prepare(engine)), f"Model version {rest}"
        if kind == "variant":
            name, _, variant = rest.partition(":")
            return variant_arm(state, svc, name, variant), f"Experiment {name}, variant {variant}"
        raise NotFoundError(f"nothing to compare called {choice!r}")

    def _compare(
        self,
        state: ServingState,
        svc: RecommendationService,
        user_id: str,
        choice: str,
        history: dict[str, PurchaseRecord],
    ) -> ListView:
        try:
            arm, heading = self._compare_arm(state, svc, choice)
        except RecsysError as exc:
            return ListView(f"Compared with {choice}", [], "", error=str(exc))
        served = svc.recommend(ListRequest(user_id, LIST_K), arm=arm)
        return self.view(state, heading, served, history)

    # -- items ---------------------------------------------------------------------------------

    def item_page(
        self, state: ServingState, item_id: str, customer: str | None = None
    ) -> dict[str, Any]:
        """Everything the item page shows; :class:`NotFoundError` for an unknown item."""
        item = self.item(state, item_id)
        if item is None:
            raise NotFoundError(f"item {item_id!r} is not in the catalogue")
        svc = self.service(state)
        engine = state.require_engine()
        related = []
        for kind, heading in (
            ("often_viewed_with", "Often viewed with"),
            ("bought_together", "Bought together"),
        ):
            try:
                related.append(self.view(state, heading, svc.similar(item_id, kind, LIST_K)))
            except RecsysError as exc:
                related.append(ListView(heading, [], engine.version, error=str(exc)))
        check = None
        if customer:
            served = svc.recommend(ListRequest(customer, LIST_K))
            view = self.view(state, f"{customer}'s list now", served)
            position = view.ids.index(item_id) + 1 if item_id in view.ids else None
            check = {"customer": customer, "list": view, "position": position}
        popular = svc.popular(100).result
        popular_ids = [r.item_id for r in popular.items]
        return {
            "item": item,
            "image": image_of(item),
            "known": engine.knows_item(item_id),
            "related": related,
            "check": check,
            "popular_rank": popular_ids.index(item_id) + 1 if item_id in popular_ids else None,
        }

    @staticmethod
    def set_stock(state: ServingState, item_id: str, in_stock: bool) -> CatalogItem:
        """Take an item out of stock or back in, as ``PATCH /v1/items/{id}`` does."""
        item = state.store.patch_item(item_id, {"in_stock": in_stock})
        state.live.refresh()  # this worker at once; the others within the refresh interval
        return item

    @staticmethod
    def set_price(state: ServingState, item_id: str, price: float | None) -> CatalogItem:
        """Change an item's price, as ``PATCH /v1/items/{id}`` does."""
        item = state.store.patch_item(item_id, {"price": price})
        state.live.refresh()
        return item

    # -- rules ---------------------------------------------------------------------------------

    def rules_preview(
        self, state: ServingState, text: str, customer: str | None
    ) -> tuple[RulesFile, ListView | None, ListView | None]:
        """Validate rules typed in the form and rank ``customer``'s list with the rules in
        force and with them; :class:`ConfigError` names the line or the rule and field."""
        rules = parse_rules_text(text)
        if not customer:
            return rules, None, None
        svc = self.service(state)
        engine = state.require_engine()
        before = svc.recommend(
            ListRequest(customer, LIST_K), arm=Arm(None, None, svc.prepare(engine))
        )
        after = svc.recommend(
            ListRequest(customer, LIST_K), arm=Arm(None, None, svc.prepare(engine, rules))
        )
        return (
            rules,
            self.view(state, "With the rules in force", before),
            self.view(state, "With these rules", after),
        )

    # -- campaigns -----------------------------------------------------------------------------

    def campaign_ready(self, state: ServingState, day: date) -> CampaignResult | None:
        """``day``'s dry run if it is computed; otherwise start computing it in the background
        and return ``None`` (the page answers at once and looks again). An error of the
        background run is raised here, once."""
        if state.offers is None:
            raise NotFoundError("offers are not set up on this server")
        key = self._campaign_key(state, day)
        with self._lock:
            hit = self._campaigns.get(key)
            failed = self._campaign_errors.pop(key, None)
            running = key in self._computing
            if hit is None and failed is None and not running:
                self._computing.add(key)
        if hit is not None:
            return hit
        if failed is not None:
            raise failed
        if not running:

            def compute() -> None:
                try:
                    self.campaign(state, day)
                except RecsysError as exc:
                    with self._lock:
                        self._campaign_errors[key] = exc
                finally:
                    state.store.close()  # this thread's connection
                    with self._lock:
                        self._computing.discard(key)

            threading.Thread(target=compute, name="ui-campaign", daemon=True).start()
        return None

    def _campaign_key(self, state: ServingState, day: date) -> tuple[Any, ...]:
        assert state.offers is not None
        promotions = state.offers.catalog
        return (day, state.live.generation, state.registry.current_version(), id(promotions))

    def campaign(self, state: ServingState, day: date) -> CampaignResult:
        """A dry run of ``day``'s campaign (nothing recorded), kept until the store, the
        promotions or the serving version change."""
        if state.offers is None:
            raise NotFoundError("offers are not set up on this server")
        promotions = state.offers.catalog
        key = self._campaign_key(state, day)
        with self._lock:
            hit = self._campaigns.get(key)
        if hit is not None:
            return hit
        models = load_models(state.settings.registry_path, day)
        result = run_campaign(state.store, promotions, day, models=models, record=False)
        with self._lock:
            if len(self._campaigns) > 8:
                self._campaigns.clear()
            self._campaigns[key] = result
        return result


def _arm_heading(arm: Arm) -> str:
    if arm.experiment is None:
        return "What they see now"
    return f"What they see now (experiment {arm.experiment.name}, {arm.variant})"


def variant_arm(
    state: ServingState, svc: RecommendationService, experiment: str, variant: str
) -> Arm:
    """The arm of ``variant`` of ``experiment`` whoever the customer is (see
    :meth:`RecommendationService.variant_arm`); nothing served through it is logged."""
    return svc.variant_arm(experiment, variant)


def parse_rules_text(text: str) -> RulesFile:
    """Rules typed as TOML, validated as the API validates a rules file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the rules are not valid TOML: {exc}") from None
    return parse_rules(data, "rules")


def rules_path(state: ServingState) -> Path:
    """The rules file the server reads: ``RECSYS_RULES_FILE``, else ``$RECSYS_HOME/rules.toml``."""
    return state.settings.rules_path


def read_rules_text(path: Path) -> str:
    """The rules file's text ("" when it does not exist yet)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the rules: {exc}") from None


def save_rules(state: ServingState, text: str) -> RulesFile:
    """Validate and write the rules file as typed (comments kept), serve the rules here at
    once, and tell the other workers (the store's generation: each re-reads the file)."""
    rules = parse_rules_text(text)
    path = rules_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text if text.endswith("\n") else text + "\n")
    state.store.notify_change()
    state.apply_rules(rules)
    return rules


# -- experiments -------------------------------------------------------------------------------


def experiment_rows(state: ServingState) -> list[dict[str, Any]]:
    """Every experiment with whether it runs now."""
    if state.experiments is None:
        return []
    now = datetime.now(UTC)
    return [{"exp": e, "running": e.is_running(now)} for e in state.experiments.all()]


def experiment_toml(exp: Experiment) -> str:
    """An experiment's definition as TOML, for the edit form."""
    import tomli_w

    return tomli_w.dumps(exp.model_dump(mode="python", exclude_none=True))


def put_experiment(
    state: ServingState, data: dict[str, Any], name: str | None = None, *, new: bool = False
) -> Experiment:
    """Create or replace an experiment as ``PUT /v1/admin/experiments/{name}`` does (with
    ``new``, only create: a name that is taken is an error)."""
    if state.experiments is None:
        raise NotFoundError("no experiments are configured on this server")
    exp = state.experiments.put(data, name=name, new=new)
    state.store.notify_change()
    state.live.refresh()
    return exp


def experiment_from_text(text: str) -> dict[str, Any]:
    """The definition typed in the form (TOML)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the definition is not valid TOML: {exc}") from None


def start_or_stop(state: ServingState, name: str, action: str) -> Experiment:
    """Start an experiment now (its end kept when still ahead, else two weeks on), or stop it
    now (its end moved to this moment).

    Starting one that ran before resumes it: its start stays, so that its report keeps the
    lists shown before it stopped (it lost them when the start moved to now). A new
    experiment, or a new definition under a new name, starts afresh."""
    from datetime import timedelta

    if state.experiments is None:
        raise NotFoundError("no experiments are configured on this server")
    exp = state.experiments.get(name)
    now = datetime.now(UTC).replace(microsecond=0)
    if action == "start":
        end = exp.end if exp.end > now + timedelta(hours=1) else now + timedelta(days=14)
        changed = {"start": min(exp.start, now), "end": end}
    else:
        changed = {"end": now, "start": min(exp.start, now - timedelta(seconds=1))}
    data = {**exp.model_dump(mode="python", exclude_none=True), **changed}
    return put_experiment(state, data, name)


def experiment(state: ServingState, name: str) -> Experiment:
    """One experiment; :class:`NotFoundError` naming the file and what it has."""
    if state.experiments is None:
        raise NotFoundError("no experiments are configured on this server")
    return state.experiments.get(name)


def experiment_report(state: ServingState, name: str) -> Any:
    """The report ``recsys ab report`` writes, from the store (:class:`DataError` while
    nothing was logged)."""
    from recsys.experiments.exposures import report_from_store

    return report_from_store(state.store, experiment(state, name))


# -- models ------------------------------------------------------------------------------------


def model_rows(state: ServingState) -> list[dict[str, Any]]:
    """Every published version with its metrics, the serving and current one marked."""
    serving = state.engine.version if state.engine else None
    current = state.registry.current_version()
    out = []
    for manifest in state.registry.list_versions():
        version = str(manifest.get("version"))
        metrics = manifest.get("metrics") or {}
        default = manifest.get("default_model")
        folder: Path | None = None
        with contextlib.suppress(RecsysError):
            folder = state.registry.path(version)
        plots = sorted(p.name for p in folder.glob("*.png")) if folder else []
        out.append(
            {
                "version": version,
                "manifest": manifest,
                "created": manifest.get("created") or manifest.get("created_at"),
                "as_of": manifest.get("as_of"),
                "default_model": default,
                "metrics": metrics if isinstance(metrics, dict) else {},
                "serving": version == serving,
                "current": version == current,
                "plots": plots,
                "error": manifest.get("error"),
            }
        )
    return out


#: The metrics shown in the models table and chart, when a version has them.
SHOWN_METRICS = ("ndcg@10", "recall@10", "precision@10", "hit_rate@10", "new_recall@10", "coverage")


def metric_names(rows: list[dict[str, Any]]) -> list[str]:
    """The metrics the versions have, the usual ones first."""
    seen: Counter[str] = Counter()
    for row in rows:
        for values in row["metrics"].values():
            if isinstance(values, dict):
                seen.update(values)
    first = [m for m in SHOWN_METRICS if m in seen]
    return first or sorted(seen)[:6]


def promote(state: ServingState, version: str) -> str:
    """Serve ``version`` (verified first) here at once, and on every worker that watches."""
    state.registry.promote(version, reason="promoted on the merchandiser's page")
    state.reload(version)
    return version


def rollback(state: ServingState) -> str:
    """Serve the previously promoted version again."""
    version = str(state.registry.rollback())
    state.reload(version)
    return version


# -- campaigns ---------------------------------------------------------------------------------


@dataclass
class CampaignView:
    """A campaign preview filtered by trigger and segment."""

    day: date
    rows: list[dict[str, Any]]
    total: int
    expected_value: float
    customers: int
    by_trigger: list[tuple[str, int, float]]
    by_segment: list[tuple[str, int, float]]
    triggers: list[str]
    segments: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    probability_source: str = ""


def campaign_view(result: CampaignResult, trigger: str | None, segment: str | None) -> CampaignView:
    """Filter a campaign's sends and sum them by trigger and by segment."""
    all_rows = result.rows()
    rows = [
        r
        for r in all_rows
        if (not trigger or r["trigger"] == trigger) and (not segment or r["segment"] == segment)
    ]

    def totals(key: str) -> list[tuple[str, int, float]]:
        count: Counter[str] = Counter()
        value: dict[str, float] = {}
        for r in rows:
            count[r[key]] += 1
            value[r[key]] = value.get(r[key], 0.0) + float(r["expected_value"])
        return [(k, count[k], value[k]) for k in sorted(count)]

    return CampaignView(
        day=result.campaign_date,
        rows=rows,
        total=len(rows),
        expected_value=float(sum(float(r["expected_value"]) for r in rows)),
        customers=len({r["user_id"] for r in rows}),
        by_trigger=totals("trigger"),
        by_segment=totals("segment"),
        triggers=sorted({r["trigger"] for r in all_rows}),
        segments=sorted({r["segment"] for r in all_rows}),
        skipped=dict(sorted(result.skipped.items())),
        probability_source=result.probability_source,
    )


def campaign_csv(rows: list[dict[str, Any]]) -> str:
    """Rows as the CSV ``recsys campaigns run --out FILE.csv`` writes."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CAMPAIGN_COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def profile_words(profile: Customer | None) -> dict[str, str]:
    """A customer's profile as label → value."""
    if profile is None:
        return {}
    return {
        "Region": profile.region or "unknown",
        "Birthday": profile.birthday.isoformat() if profile.birthday else "unknown",
        "Signed up": profile.signup_date.isoformat() if profile.signup_date else "unknown",
    }


def metrics_svg(row: dict[str, Any], width: int = 320) -> str:
    """A bar chart of each model's value of the version's gated metric, as inline SVG (no
    script, no plotting library: it costs nothing to draw on every page view)."""
    import html

    metrics = row["metrics"]
    names = metric_names([row])
    if not names:
        return ""
    metric = names[0]
    bars = [
        (model, float(values[metric]))
        for model, values in sorted(metrics.items())
        if isinstance(values, dict) and isinstance(values.get(metric), int | float)
    ]
    if not bars:
        return ""
    top = max(v for _, v in bars) or 1.0
    height = 22 * len(bars) + 24
    parts = [
        f'<svg role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'aria-label="{html.escape(metric)} per model">',
        f'<text x="0" y="14" font-size="12">{html.escape(metric)} per model</text>',
    ]
    for j, (model, value) in enumerate(bars):
        y = 22 + j * 22
        w = max(1.0, (width - 170) * value / top)
        cls = "bar serving" if model == row["default_model"] else "bar"
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="11">{html.escape(model)}</text>'
            f'<rect class="{cls}" x="100" y="{y}" width="{w:.1f}" height="16"/>'
            f'<text x="{104 + w:.1f}" y="{y + 13}" font-size="11">{value:.4f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
