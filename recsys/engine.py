"""The engine: one published model version, loaded and ready to answer requests.

It holds a version's vocabularies, catalogue, interaction history and models, applies the
business rules (:mod:`recsys.ranking.rules`) and answers with string ids only: integer indices
never leave it. Callers reach it through :class:`recsys.service.RecommendationService`, which
decides consent, erasure, the live catalogue and experiments before asking it for a list.

An engine object is never mutated after it is loaded: the live catalogue and other rules are
laid over it as shallow copies (:meth:`Engine.with_catalog`, :meth:`Engine.with_rules`), and
erasure is a tombstone the service checks, so swapping versions is replacing one reference and
no loaded version can bring an erased customer back.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.artifacts import CATALOG_READ_KEY, Manifest, Precomputed, model_folder, read_version
from recsys.data.interactions import InteractionConfig, history_row
from recsys.data.schema import PURCHASE, CatalogItem, EventFrame
from recsys.data.vocab import Vocabulary
from recsys.errors import ArtifactError, ConfigError, NotFoundError
from recsys.explain import reason_codes
from recsys.models.base import (
    Explains,
    ExplainsArrays,
    ItemRanking,
    ItemSimilarity,
    Recommender,
    candidate_depth,
    csr_row_arrays,
    csr_rows,
    implements,
)
from recsys.models.content import ContentModel, item_text
from recsys.ranking.rules import (
    CATEGORY_SEPARATOR,
    FALLBACK_REASON,
    Candidates,
    CatalogArrays,
    CompiledRules,
    Ranked,
    RequestFilters,
    RuleSet,
    RulesFile,
    apply_rules,
    compile_rules,
)
from recsys.retrieval.ann import load_index
from recsys.retrieval.index import (
    FactorModel,
    ItemIndex,
    KeptAnswers,
    SearchesIndex,
    indexed_vectors,
)
from recsys.store.base import ItemChange

log = logging.getLogger(__name__)

#: ``kind`` values of :meth:`Engine.similar`, and the name under which training publishes the
#: model that answers each (the ``[models.<name>]`` tables of ``training/configs/default.toml``).
SIMILAR_MODELS = {
    "often_viewed_with": "viewed_with",
    "bought_together": "bought_together",
    "similar": "content",
}
SIMILAR_KINDS = tuple(SIMILAR_MODELS)
#: The model that answers :meth:`Engine.trending`.
TRENDING_MODEL = "trending"
#: Users scored per model call in :meth:`Engine.recommend_batch`.
BATCH_USERS = 512
#: Steps back in a session at which an item counts half as much as the last one. 1 against 1.5
#: and 2 (and 4 in a scratch run): next-item hit rate@10 on the YooChoose sample, 4 rolling cuts,
#: higher at every cut (benchmarks/RESULTS.md, "Forty-fourth session").
SESSION_HALF_LIFE = 1.0
#: Non-personal lists kept per engine (one per rules, request filters and k asked for).
_POPULAR_LISTS = 256

ModelLoader = Callable[[str, Path], Recommender]


class RegistryLike(Protocol):
    """What the engine needs of :class:`recsys.registry.Registry`."""

    def verify(self, version: str) -> dict[str, Any]:
        """Check every file's checksum; return the manifest."""
        ...


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommended item."""

    item_id: str
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecommendationList:
    """A ranked list and how it was made.

    ``fallback`` is ``None`` when the list is personal, or names what served instead
    (``"popular"`` for an unknown customer or one who opted out of personalisation).
    """

    items: list[Recommendation]
    model_version: str
    fallback: str | None = None


def default_model_loader(class_name: str, directory: Path) -> Recommender:
    """Load a saved model by its registry class name."""
    from recsys.models import model_class

    return model_class(class_name).load(directory)


class Engine:
    """A loaded model version. Build one with :meth:`load`."""

    def __init__(
        self,
        *,
        version: str,
        manifest: Mapping[str, Any],
        users: Vocabulary,
        catalog: CatalogArrays,
        history: sp.csr_matrix,
        purchases: sp.csr_matrix,
        models: Mapping[str, Recommender],
        default_model: str,
        interaction_config: InteractionConfig,
        as_of: int,
        rules: RulesFile,
        precomputed: Precomputed | None = None,
        indexes: Mapping[str, ItemIndex] | None = None,
        events_seq: int | None = None,
    ) -> None:
        self.version = version
        self.manifest = dict(manifest)
        self.users = users
        self.items = catalog.items
        self.catalog = catalog
        # as trained: the live catalogue (:meth:`with_catalog`) is laid over this, never over
        # an earlier overlay
        self._trained_catalog = catalog
        # in-stock items of the live catalogue that this version does not know (newest first),
        # and their text vectors when the version has a content model
        self._new_items: tuple[CatalogItem, ...] = ()
        self._new_ids: dict[str, int] = {}
        self._new_vectors: sp.csr_matrix | None = None
        # float32 as a version stores them: no copy, the workers share the memory-mapped arrays
        self.history = history.tocsr().astype(np.float32, copy=False)
        self.purchases = purchases.tocsr().astype(np.float32, copy=False)
        self.models = dict(models)
        self.default_model = default_model
        self.interaction_config = interaction_config
        self.as_of = as_of
        # the store's newest event seq when training read it (None: not recorded): what the
        # version did not see is the events after as_of and those stored after it
        self.events_seq = events_seq
        self.rules = rules
        # the default model's top lists at training time, when they match it (else ignored)
        self.precomputed = (
            precomputed
            if precomputed is not None
            and precomputed.model == default_model
            and precomputed.items.shape[0] == len(users)
            else None
        )
        # approximate top-k per factor model (built by training above a catalogue size)
        self.indexes = {
            name: index
            for name, index in (indexes or {}).items()
            if isinstance(self.models.get(name), FactorModel) and index.n_items == len(self.items)
        }
        self._compiled: dict[str | None, CompiledRules] = {}
        # the history row of a customer the version does not know (never written to)
        self._empty_row = _empty_row(len(self.items))
        self._popular_lists: dict[
            tuple[int, int, RequestFilters, str | None], RecommendationList
        ] = {}
        # Popularity = distinct users per item: the fallback for every list.
        counts = np.asarray((self.history > 0).sum(axis=0)).ravel().astype(np.float64)
        if not counts.any():
            # no customer at all (a shop of guests): the version's popularity model counted
            # the guests' events; without it every item would tie at 0, in id order
            counts = _model_popularity(self.models.values(), len(counts))
        top = counts.max() if counts.size and counts.max() > 0 else 1.0
        self.popularity = (counts / top).astype(np.float32)
        self.popular_order = np.lexsort((np.arange(len(counts)), -counts)).astype(np.intp)
        for name in (default_model,):
            if name not in self.models:
                raise ArtifactError(f"model version {version}: default model {name!r} is missing")

    @property
    def new_items(self) -> tuple[CatalogItem, ...]:
        """In-stock items of the live catalogue this version does not know, newest first
        (none until :meth:`with_catalog`)."""
        return self._new_items

    def catalog_read_at(self, store_id: str) -> int:
        """The generation of the store ``store_id`` this version's catalogue was read at:
        the live catalogue laid over it needs only the rows changed later
        (:meth:`recsys.live.LiveState.follow_catalog`). ``-1`` (every row) for a version that
        does not say, or read another store."""
        entry = self.manifest.get(CATALOG_READ_KEY)
        if not isinstance(entry, Mapping) or entry.get("store") != store_id:
            return -1
        generation = entry.get("generation")
        return generation if isinstance(generation, int) and generation >= 0 else -1

    def warm_up(self) -> None:
        """Every model's :meth:`~recsys.models.base.Recommender.warm_up`: what the first
        requests would otherwise build (serving calls it before a loaded version answers)."""
        for model in self.models.values():
            model.warm_up()

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        version_dir: str | Path,
        registry: RegistryLike,
        *,
        rules: RulesFile | None = None,
        model_loader: ModelLoader | None = None,
    ) -> Engine:
        """Verify and load one published version.

        Parameters
        ----------
        version_dir
            The version's folder in the registry (its name is the version).
        registry
            Checks every file's checksum first; a corrupt version raises
            :class:`~recsys.errors.ArtifactError` and nothing is loaded.
        rules
            Business rules; the defaults of :class:`~recsys.ranking.rules.RulesFile` if absent.
        model_loader
            ``(class name, folder) -> model``; defaults to :func:`default_model_loader`.
        """
        version_dir = Path(version_dir)
        raw = registry.verify(version_dir.name)
        manifest = Manifest.parse(raw, version_dir.name)
        loader = model_loader or default_model_loader
        try:
            data = read_version(version_dir)
            catalog = CatalogArrays.from_records(data.items, data.catalog)
            models = {
                name: loader(spec.class_name(name), model_folder(version_dir, name))
                for name, spec in manifest.models.items()
            }
            interaction = InteractionConfig.model_validate(manifest.interaction_settings())
            as_of = manifest.as_of_micros()
            precomputed = Precomputed.load(version_dir)
            indexes = _load_indexes(version_dir, manifest, models, len(data.items))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(f"model version {version_dir.name}: {exc}") from None
        return cls(
            version=manifest.version,
            manifest=raw,
            users=data.users,
            catalog=catalog,
            history=data.history,
            purchases=data.purchases,
            models=models,
            default_model=manifest.default_model,
            interaction_config=interaction,
            as_of=as_of,
            rules=rules or RulesFile(),
            precomputed=precomputed,
            indexes=indexes,
            events_seq=manifest.events_seq,
        )

    # -- requests --------------------------------------------------------------------------

    def recommend(
        self,
        user_id: str,
        k: int,
        *,
        events: EventFrame | None = None,
        placement: str | None = None,
        filters: RequestFilters = RequestFilters(),
        personalise: bool = True,
        now: int | None = None,
    ) -> RecommendationList:
        """The top ``k`` items for one customer, after the business rules.

        Parameters
        ----------
        user_id
            The customer. Unknown customers get the popular list (``fallback="popular"``).
        events
            The customer's events this version did not train on, folded into their history
            so that what they just did counts: ``store.user_events(user_id,
            since=engine.as_of, after_seq=engine.events_seq)`` reads them.
        placement
            Which rule set applies (the rules file's ``[placements.<name>]``).
        filters
            Request-level exclusions and filters.
        personalise
            ``False`` for a customer who opted out: the popular list, no personal data used.
        now
            Request time in microseconds UTC (time-aware models measure recency from it).
        """
        compiled = self._rules_for(placement)
        if not personalise:
            return self._popular_list(k, compiled, filters, fallback="popular")
        live = self._live_events(events)
        if (live is None or len(live) == 0) and self.precomputed is not None:
            fast = self._from_precomputed(user_id, k, compiled, filters)
            if fast is not None:
                return fast
        if live is not None and len(live) and compiled.rules.exclude_just_bought:
            just = live.item_id[(live.event_type == PURCHASE) & (live.ts > self.as_of)]
            if len(just):
                exclude = dict.fromkeys((*filters.exclude, *just.tolist()))
                filters = replace(filters, exclude=tuple(exclude))
        u, row = self._history_row(user_id, events)
        if row.nnz == 0:
            return self._popular_list(k, compiled, filters, fallback="popular")
        model = self.models[self.default_model]
        scores, reasons = self._score(model, np.array([u], dtype=np.intp), row, k, now)
        if not len(scores[0]):
            # the model has nothing for them, but what they bought still counts
            bought = self._purchased(u, events)
            return self._popular_list(k, compiled, filters, fallback="popular", purchased=bought)
        ranked = apply_rules(
            scores[0],
            k,
            compiled=compiled,
            catalog=self.catalog,
            request=filters,
            purchased=self._purchased(u, events),
            reasons=reasons[0],
            default_reason=f"model:{self.default_model}",
            fallback_order=self.popular_order,
            fallback_scores=self.popularity,
        )
        return RecommendationList(self._to_ids(ranked), self.version, None)

    def recommend_precomputed(
        self,
        user_id: str,
        k: int,
        *,
        placement: str | None = None,
        filters: RequestFilters = RequestFilters(),
    ) -> RecommendationList | None:
        """:meth:`recommend` for a customer with no events since training, answered from the
        version's precomputed lists in microseconds; ``None`` when those cannot give exactly
        the answer :meth:`recommend` would (then call it), or for a list a warm run carried
        (:class:`~recsys.artifacts.Precomputed`), the previous version's model would. The
        caller checks the events."""
        if self.precomputed is None:
            return None
        return self._from_precomputed(user_id, k, self._rules_for(placement), filters)

    def recommend_batch(
        self,
        user_ids: Sequence[str],
        k: int,
        *,
        placement: str | None = None,
        filters: RequestFilters = RequestFilters(),
    ) -> list[RecommendationList]:
        """:meth:`recommend` for many customers, scoring them in batches (no live events)."""
        compiled = self._rules_for(placement)
        model = self.models[self.default_model]
        idx = self.users.indices(user_ids)
        out: list[RecommendationList] = []
        for start in range(0, len(user_ids), BATCH_USERS):
            chunk = idx[start : start + BATCH_USERS].copy()
            if not (chunk >= 0).any():
                # nobody the version knows (a version with no customer has no row to index)
                out.extend(
                    self._popular_list(k, compiled, filters, fallback="popular") for _ in chunk
                )
                continue
            known = (chunk >= 0).astype(np.float32)
            # unknown users get an empty row (their scores are not used)
            rows = sp.csr_matrix(
                sp.diags(known) @ self.history[np.maximum(chunk, 0)], dtype=np.float32
            )
            rows.eliminate_zeros()
            scores, reasons = self._score(model, chunk, rows, k, None)
            for j in range(len(chunk)):
                u = int(chunk[j])
                if u < 0 or rows[j].nnz == 0:
                    out.append(self._popular_list(k, compiled, filters, fallback="popular"))
                    continue
                if not len(scores[j]):
                    bought = self._purchased(u, None)
                    listed = self._popular_list(
                        k, compiled, filters, fallback="popular", purchased=bought
                    )
                    out.append(listed)
                    continue
                ranked = apply_rules(
                    scores[j],
                    k,
                    compiled=compiled,
                    catalog=self.catalog,
                    request=filters,
                    purchased=self._purchased(u, None),
                    reasons=reasons[j],
                    default_reason=f"model:{self.default_model}",
                    fallback_order=self.popular_order,
                    fallback_scores=self.popularity,
                )
                out.append(RecommendationList(self._to_ids(ranked), self.version, None))
        return out

    def similar(
        self, item_id: str, kind: str = "often_viewed_with", k: int = 10
    ) -> RecommendationList:
        """Items related to ``item_id``: ``kind`` is ``often_viewed_with``,
        ``bought_together`` or ``similar`` (alike in title, category and attributes: the
        ``content`` model).

        Raises :class:`~recsys.errors.NotFoundError` naming the item if it is unknown. When
        the version lacks the model for ``kind`` it falls back to ``bought_together``, then to
        the popular list, and says so in ``fallback`` and in each item's reasons. An item added
        to the shop after training (:meth:`with_catalog`) has no behaviour yet: every kind
        answers from its text (``fallback="content"`` for the behavioural kinds). Similar
        items include the new ones.
        """
        if kind not in SIMILAR_KINDS:
            raise ConfigError(f"kind: {kind!r} is not one of {', '.join(SIMILAR_KINDS)}")
        i = self.items.index(item_id)
        if i < 0:
            return self._similar_to_new(item_id, kind, k)
        listed = self._related(np.array([i], dtype=np.intp), kind, k, exclude=(item_id,))
        content = self.models.get(SIMILAR_MODELS["similar"])
        new = self._new_vectors
        if kind == "similar" and isinstance(content, ContentModel) and new is not None:
            sims = np.asarray((content.vectors_[i] @ new.T).todense()).ravel()
            listed = self._merge_new(listed, k, sims, _similar_reason(kind))
        return listed

    def _similar_to_new(self, item_id: str, kind: str, k: int) -> RecommendationList:
        """The lists of an item the version does not know, from its text."""
        content = self.models.get(SIMILAR_MODELS["similar"])
        at = self._new_ids.get(item_id)
        if at is None or not isinstance(content, ContentModel) or self._new_vectors is None:
            raise NotFoundError(f"item '{item_id}' is not in model version {self.version}")
        fetch = min(len(self.items), max(4 * k, k + 20))
        idx, vals = content.similar_to_vectors(self._new_vectors[at], fetch)
        scores = np.full(len(self.items), np.nan, dtype=np.float32)
        ok = idx[0] >= 0
        scores[idx[0][ok]] = vals[0][ok]
        compiled = self._rules_for(None)
        ranked = apply_rules(
            scores,
            k,
            compiled=compiled,
            catalog=self.catalog,
            request=RequestFilters(exclude=(item_id,), exclude_purchased=False),
            default_reason=_similar_reason("similar"),
            fallback_order=self.popular_order,
            fallback_scores=self.popularity,
        )
        listed = RecommendationList(
            self._to_ids(ranked), self.version, None if kind == "similar" else "content"
        )
        sims = np.asarray((self._new_vectors[at] @ self._new_vectors.T).todense()).ravel()
        sims[at] = 0.0
        return self._merge_new(listed, k, sims, _similar_reason("similar"))

    def _merge_new(
        self, listed: RecommendationList, k: int, sims: NDArray[np.floating], reason: str
    ) -> RecommendationList:
        """``listed`` with the new items whose similarity ``sims`` (one per new item) beats
        an item of the list, in score order."""
        rules = self._rules_for(None).rules
        extra = [
            Recommendation(it.item_id, float(sims[j]), (reason, "new_item"))
            for j, it in enumerate(self._new_items)
            if sims[j] > 0 and self._new_allowed(it, rules, None)
        ]
        if not extra:
            return listed
        merged = sorted([*listed.items, *extra], key=lambda r: -r.score)
        return replace(listed, items=merged[:k])

    @staticmethod
    def _new_allowed(it: CatalogItem, rules: RuleSet, category: str | None) -> bool:
        return (
            (category is None or _in_category(it.category, category))
            and it.item_id not in rules.deny
            and not any(_in_category(it.category, c) for c in rules.deny_categories)
            and (not rules.allow or it.item_id in rules.allow)
        )

    def complete_basket(
        self, item_ids: Sequence[str], k: int, *, user_id: str | None = None
    ) -> RecommendationList:
        """Items bought together with the basket's items (unknown ids are ignored)."""
        idx = self.items.indices(item_ids)
        known = idx[idx >= 0]
        filters = RequestFilters(exclude=tuple(item_ids))
        if known.size == 0:
            compiled = self._rules_for(None)
            return self._popular_list(k, compiled, filters, fallback="popular")
        return self._related(known, "bought_together", k, exclude=tuple(item_ids))

    def session_list(
        self,
        item_ids: Sequence[str],
        k: int,
        *,
        half_life: float = SESSION_HALF_LIFE,
        placement: str | None = None,
        filters: RequestFilters = RequestFilters(),
    ) -> RecommendationList:
        """Items for a browsing session, from the items it touched (oldest first): each item's
        "often viewed with" neighbours (bought together when the version lacks that model),
        weighted by recency (the last item counts 1, one ``half_life`` steps earlier 0.5), as
        session-based kNN over item co-occurrence does. The popular list when none is known
        (``fallback="popular"``); reasons say ``session:<kind>``."""
        idx = self.items.indices(list(item_ids))
        weights = session_weights(len(idx), half_life)
        keep = idx >= 0
        if not keep.any():
            return self._popular_list(k, self._rules_for(placement), filters, fallback="popular")
        listed = self._related(
            idx[keep],
            "often_viewed_with",
            k,
            exclude=(),
            weights=weights[keep],
            placement=placement,
            filters=filters,
        )
        items = [
            replace(r, reasons=tuple(x.replace("similar:", "session:", 1) for x in r.reasons))
            for r in listed.items
        ]
        return replace(listed, items=items)

    def popular(self, k: int, *, category: str | None = None) -> RecommendationList:
        """The most popular eligible items, optionally within one category; items new to the
        shop since training (:meth:`with_catalog`) follow the items that sold, before those
        that never did (reason ``new_item``)."""
        compiled = self._rules_for(None)
        listed = self._popular_list(k, compiled, RequestFilters(category=category), fallback=None)
        return self._add_new_items(listed, k, category, compiled.rules)

    def trending(self, k: int, *, category: str | None = None) -> RecommendationList:
        """Items whose sales are rising (the ``trending`` model), optionally within a category,
        after the business rules; the popular list (``fallback="popular"``) when the version
        has no such model."""
        compiled = self._rules_for(None)
        filters = RequestFilters(category=category)
        model = self.models.get(TRENDING_MODEL)
        if not isinstance(model, ItemRanking):
            return self._popular_list(k, compiled, filters, fallback="popular")
        idx, vals = model.popular_items(len(self.items), category)
        scores = np.full(len(self.items), np.nan, dtype=np.float32)
        scores[idx] = vals
        ranked = apply_rules(
            scores,
            k,
            compiled=compiled,
            catalog=self.catalog,
            request=filters,
            default_reason=f"model:{TRENDING_MODEL}",
            fallback_order=self.popular_order,
            fallback_scores=self.popularity,
        )
        listed = RecommendationList(self._to_ids(ranked), self.version, None)
        return self._add_new_items(listed, k, category, compiled.rules)

    def _add_new_items(
        self, listed: RecommendationList, k: int, category: str | None, rules: RuleSet
    ) -> RecommendationList:
        """``listed`` with the eligible new items placed after those with a positive score,
        pinned items kept at their positions."""
        new = [it for it in self._new_items if self._new_allowed(it, rules, category)]
        if not new:
            return listed
        pins = {
            j: r
            for j, r in enumerate(listed.items)
            if any(x.startswith("rule:pin:") for x in r.reasons)
        }
        rest = [r for j, r in enumerate(listed.items) if j not in pins]
        sold = [r for r in rest if r.score > 0]
        fresh = [Recommendation(it.item_id, 0.0, ("new_item",)) for it in new]
        merged = [*sold, *fresh, *(r for r in rest if not r.score > 0)]
        for j in sorted(pins):
            merged.insert(j, pins[j])
        return replace(listed, items=merged[:k])

    def with_rules(self, rules: RulesFile) -> Engine:
        """This version ranking with ``rules``: a shallow copy sharing every loaded model and
        array; only the rules and the rules compiled from them are its own."""
        ranked = copy.copy(self)
        ranked.rules = rules
        ranked._compiled = {}
        ranked._popular_lists = {}
        return ranked

    def with_catalog(self, changes: Mapping[str, ItemChange]) -> Engine:
        """This version with the live catalogue: each stored item's stock, price and category
        as the store has them now (a retired item is out of stock), over the catalogue the
        version was trained with (a price, margin or category the row leaves empty keeps the
        version's). A shallow copy, like :meth:`with_rules`.

        Items the store has and the version does not know cannot be scored by its models and
        are left out here.
        """
        base = self._trained_catalog
        ids = list(changes)
        idx = self.items.indices(ids) if ids else np.empty(0, np.intp)
        known = np.flatnonzero(idx >= 0)
        in_stock = base.in_stock.copy()
        price = base.price.copy()
        category = base.category.copy()
        margin = base.margin.copy() if base.margin is not None else np.full(len(price), np.nan)
        if known.size:
            rows = [changes[ids[j]] for j in known.tolist()]
            at = idx[known]
            in_stock[at] = [c.item.in_stock and not c.retired for c in rows]
            # a field the row leaves empty keeps the version's value (training filled it from
            # events), so that the rows changed since the version give what all rows give
            pairs = list(zip(at.tolist(), rows, strict=True))
            price[at] = [price[i] if c.item.price is None else c.item.price for i, c in pairs]
            margin[at] = [margin[i] if c.item.margin is None else c.item.margin for i, c in pairs]
            named = [c.item.category or category[i] for i, c in pairs]
            category[at] = np.array(named, dtype=object)
        live = copy.copy(self)
        live.catalog = CatalogArrays(self.items, category, price, in_stock, margin)
        live._compiled = {}
        live._popular_lists = {}
        # items added to the shop since training: no model knows them yet, but the popular and
        # category lists show them (newest first) after the items that sold
        fresh = [
            changes[ids[j]]
            for j in np.flatnonzero(idx < 0).tolist()
            if changes[ids[j]].item.in_stock and not changes[ids[j]].retired
        ]
        fresh.sort(key=lambda c: (-c.generation, c.item.item_id))
        live._new_items = tuple(c.item for c in fresh)
        live._new_ids = {it.item_id: j for j, it in enumerate(live._new_items)}
        content = self.models.get(SIMILAR_MODELS["similar"])
        live._new_vectors = (
            content.transform(
                [
                    item_text(
                        " ".join([it.title, *(str(v) for v in it.attributes.values())]),
                        it.category,
                    )
                    for it in live._new_items
                ]
            )
            if isinstance(content, ContentModel) and live._new_items
            else None
        )
        return live

    def knows_item(self, item_id: str) -> bool:
        """Whether ``item_id`` is in this version's catalogue."""
        return item_id in self.items

    def describe(self) -> dict[str, Any]:
        """What this version is: id, models, sizes (for the admin endpoint)."""
        return {
            "version": self.version,
            "default_model": self.default_model,
            "models": sorted(self.models),
            "users": len(self.users),
            "items": len(self.items),
            "as_of": self.as_of,
        }

    # -- internals ---------------------------------------------------------------------------

    def _from_precomputed(
        self, user_id: str, k: int, compiled: CompiledRules, filters: RequestFilters
    ) -> RecommendationList | None:
        """The list from the training-time top list, or ``None`` when it might differ from
        what scoring live would give (then the caller scores live).

        A model that explains is asked live for ``max(4k + 20, 100)`` items; the stored list
        holds the first ``depth`` of the same answer, so it serves any ``k`` whose live
        request is no longer. A model that scores every item is exact when the rules do not
        reweight scores (no boosts) and the list fills before reaching the stored list's last
        score (every item scored higher than that is stored).
        """
        pre = self.precomputed
        assert pre is not None
        u = self.users.index(user_id)
        if u < 0 or self.history.indptr[u] == self.history.indptr[u + 1]:
            return None
        explains = implements(self.models[self.default_model], Explains)
        if explains:
            if candidate_depth(k, len(self.items)) > pre.depth:
                return None
        elif compiled.boosted:
            return None
        idx = np.asarray(pre.items[u])
        vals = np.asarray(pre.scores[u])
        ok = idx >= 0
        if not ok.any():
            return None
        idx, vals = idx[ok].astype(np.intp), vals[ok]
        reasons: dict[int, tuple[str, ...]] | None = None
        if pre.reason_codes is not None:
            codes = np.asarray(pre.reason_codes[u])[ok].tolist()
            reasons = {i: pre.reasons[c] for i, c in zip(idx.tolist(), codes, strict=True)}
        ranked = apply_rules(
            Candidates(idx, vals),
            k,
            compiled=compiled,
            catalog=self.catalog,
            request=filters,
            purchased=self._purchased(u, None),
            reasons=reasons,
            default_reason=f"model:{self.default_model}",
            fallback_order=self.popular_order,
            fallback_scores=self.popularity,
        )
        if not explains:
            floor = float(vals.min())
            stored = set(idx.tolist())
            pinned = {i for i, _, _ in compiled.pins}
            if not pinned <= stored:
                return None  # a pinned item shows its model score, which is not stored
            for r in ranked:
                if r.index in pinned:
                    continue  # placed by position, whatever its score
                if r.index not in stored:
                    return None  # backfilled: unstored items scored by the model come first
                if not r.score > floor:
                    return None  # at the stored list's edge: an unstored item may tie or win
        return RecommendationList(self._to_ids(ranked), self.version, None)

    def _rules_for(self, placement: str | None) -> CompiledRules:
        rules = self.rules.for_placement(placement)
        key = placement if rules is not self.rules else None
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = compile_rules(rules, self.catalog)
            self._compiled[key] = compiled  # a race only compiles twice
        return compiled

    def _item_index(self, item_id: str) -> int:
        i = self.items.index(item_id)
        if i < 0:
            raise NotFoundError(f"item '{item_id}' is not in model version {self.version}")
        return i

    def _history_row(self, user_id: str, events: EventFrame | None) -> tuple[int, sp.csr_matrix]:
        """The customer's row: their training row plus their live events' weights (a new
        ``1 × items`` CSR with sorted columns and no zeros)."""
        u = self.users.index(user_id)
        live = self._live_events(events)
        if live is None or not len(live):
            return u, csr_rows(self.history, [u]) if u >= 0 else self._empty_row
        # the same weighting training uses; history_matrix drops events at or after as_of:
        # measure from just after the newest
        as_of = max(int(live.ts.max()), int(time.time() * 1_000_000)) + 1
        cols, weights = history_row(live, self.items, self.interaction_config, as_of=as_of)
        if u >= 0 and self.history.indptr[u] < self.history.indptr[u + 1]:
            data, indices, _ = csr_row_arrays(self.history, [u])
            # the sum of the two rows by their arrays: scipy's sparse sum, its conversions
            # and checks cost more than the fold (a column in both is summed in float32,
            # as scipy sums them)
            cols = np.concatenate([indices.astype(np.intp, copy=False), cols])
            weights = np.concatenate([data, weights])
            order = np.argsort(cols, kind="stable")
            cols, weights = cols[order], weights[order]
            starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
            cols, weights = cols[starts], np.add.reduceat(weights, starts)
            kept = weights != 0
            cols, weights = cols[kept], weights[kept]
        indptr = np.array([0, len(cols)], dtype=np.intp)
        return u, sp.csr_matrix((weights, cols, indptr), shape=(1, len(self.items)))

    def _live_events(self, events: EventFrame | None) -> EventFrame | None:
        return None if events is None or len(events) == 0 else events

    def _purchased(self, u: int, events: EventFrame | None) -> NDArray[np.intp]:
        bought: NDArray[np.intp] = np.empty(0, np.intp)
        if u >= 0:
            # the row's arrays, not scipy's row indexing (which costs more than the request)
            data, indices, _ = csr_row_arrays(self.purchases, [u])
            bought = indices[data > 0].astype(np.intp)
        extra: NDArray[np.intp] = np.empty(0, np.intp)
        if events is not None and len(events):
            ids = events.item_id[events.event_type == PURCHASE].tolist()
            extra = self.items.indices(ids)
            extra = extra[extra >= 0]
        return np.unique(np.concatenate([bought, extra]))

    def _popular_list(
        self,
        k: int,
        compiled: CompiledRules,
        filters: RequestFilters,
        *,
        fallback: str | None,
        purchased: NDArray[np.intp] | None = None,
    ) -> RecommendationList:
        """The popular list after the rules. ``purchased``: the customer's purchases, for a
        customer the model has nothing for but who may be served personally (their purchases
        are left out as the rules or the request say); without it no personal data is used."""
        reason = FALLBACK_REASON if fallback else "popular"
        if purchased is not None and len(purchased):
            ranked = apply_rules(
                self.popularity,
                k,
                compiled=compiled,
                catalog=self.catalog,
                request=filters,
                purchased=purchased,
                default_reason=reason,
                fallback_order=self.popular_order,
                fallback_scores=self.popularity,
            )
            return RecommendationList(self._to_ids(ranked), self.version, fallback)
        # the same for every customer it answers (unknown, opted out, new): built once per
        # rules, filters and k, on this engine (a new catalogue or rules make a new engine)
        key = (id(compiled), k, filters, fallback)
        hit = self._popular_lists.get(key)
        if hit is not None:
            return hit
        ranked = apply_rules(
            self.popularity,
            k,
            compiled=compiled,
            catalog=self.catalog,
            request=replace(filters, exclude_purchased=False),  # no personal data here
            default_reason=reason,
            fallback_order=self.popular_order,
            fallback_scores=self.popularity,
        )
        listed = RecommendationList(self._to_ids(ranked), self.version, fallback)
        if len(self._popular_lists) >= _POPULAR_LISTS:
            self._popular_lists.clear()
        self._popular_lists[key] = listed
        return listed

    def _related(
        self,
        items: NDArray[np.intp],
        kind: str,
        k: int,
        *,
        exclude: tuple[str, ...],
        weights: NDArray[np.float32] | None = None,
        placement: str | None = None,
        filters: RequestFilters | None = None,
    ) -> RecommendationList:
        compiled = self._rules_for(placement)
        base = filters or RequestFilters()
        filters = replace(base, exclude=(*base.exclude, *exclude), exclude_purchased=False)
        wanted = SIMILAR_MODELS[kind]
        source = next(
            (
                name
                for name in (wanted, SIMILAR_MODELS["bought_together"])
                if isinstance(self.models.get(name), ItemSimilarity)
            ),
            None,
        )
        if source is None:
            return self._popular_list(k, compiled, filters, fallback="popular")
        model = self.models[source]
        assert isinstance(model, ItemSimilarity)
        fetch = min(len(self.items), max(4 * k, k + 20))
        scores = neighbour_candidates(model, items, fetch, weights)
        reason = _similar_reason(kind) if source == wanted else f"fallback:{source}"
        ranked = apply_rules(
            scores,
            k,
            compiled=compiled,
            catalog=self.catalog,
            request=filters,
            default_reason=reason,
            fallback_order=self.popular_order,
            fallback_scores=self.popularity,
        )
        fallback = None if source == wanted else source
        return RecommendationList(self._to_ids(ranked), self.version, fallback)

    def _score(
        self,
        model: Recommender,
        users: NDArray[np.intp],
        rows: sp.csr_matrix,
        k: int,
        now: int | None,
    ) -> tuple[list[Candidates], list[Mapping[int, tuple[str, ...]] | None]]:
        """The scored items per user, and per-item reasons from a model that explains.

        A model with ``explain`` (the hybrid) is asked for a generous top list with its
        reasons, enough for the rules to filter; items beyond it stay unscored and the rules
        fill from the popular list. A factor model with an approximate index in the version is
        answered the same way from the index. Only a model that scores every item (no index,
        no explanations) makes a catalogue-long row.
        """
        index = self.indexes.get(self.default_model)
        if index is not None and isinstance(model, FactorModel):
            return self._search_index(model, index, users, rows, k), [None] * len(users)
        if not implements(model, Explains):
            dense = model.score(users, rows, now=now)
            return [Candidates.from_dense(row) for row in dense], [None] * len(users)
        depth = candidate_depth(k, len(self.items))
        if implements(model, ExplainsArrays):
            arrays = cast(ExplainsArrays, model).explain_arrays(users, rows, depth, now=now)
            return _explained_candidates(arrays, len(users), k, self.default_model, self.items)
        lists = cast(Explains, model).explain(users, rows, depth, now=now)
        scores: list[Candidates] = []
        reasons: list[Mapping[int, tuple[str, ...]] | None] = []
        for explained in lists:
            why: dict[int, tuple[str, ...]] = {}
            best: dict[int, float] = {}
            for e in explained:
                best[e.item] = e.score  # a repeated item keeps its last score, as before
                why[e.item] = reason_codes(self.default_model, e, self.items)
            idx = np.fromiter(best, dtype=np.intp, count=len(best))
            vals = np.fromiter(best.values(), dtype=np.float32, count=len(best))
            keep = np.isfinite(vals)
            scores.append(Candidates(idx[keep], vals[keep]))
            reasons.append(why)
        return scores, reasons

    def _search_index(
        self,
        model: FactorModel,
        index: ItemIndex,
        users: NDArray[np.intp],
        rows: sp.csr_matrix,
        k: int,
    ) -> list[Candidates]:
        """The index's top candidates per user, with their scores.

        More than ``k`` candidates are fetched so that the rules (already bought, out of
        stock, category filters) have spares; the user's own history counts extra since
        its purchases are dropped first. Rows the rules empty are filled from the popular list.
        """
        vectors = model.user_vectors(users, rows)
        seen = int(np.diff(rows.indptr).max()) if rows.shape[0] else 0
        fetch = min(len(self.items), candidate_depth(k, len(self.items)) + seen)
        idx, vals = index.search(vectors, fetch)
        out = []
        for r in range(len(users)):
            ok = (idx[r] >= 0) & np.isfinite(vals[r])
            out.append(Candidates(idx[r][ok].astype(np.intp), vals[r][ok].astype(np.float32)))
        return out

    def _to_ids(self, ranked: list[Ranked]) -> list[Recommendation]:
        ids = self.items.ids_of([r.index for r in ranked])
        return [
            Recommendation(item_id, float(r.score), r.reasons)
            for item_id, r in zip(ids, ranked, strict=True)
        ]


def session_weights(n: int, half_life: float = SESSION_HALF_LIFE) -> NDArray[np.float32]:
    """Recency weights of a session's ``n`` items, oldest first: the last counts 1, one
    ``half_life`` steps earlier 0.5."""
    steps = np.arange(n, dtype=np.float32)[::-1]
    return np.power(np.float32(0.5), steps / np.float32(half_life)).astype(np.float32)


def neighbour_candidates(
    model: ItemSimilarity,
    items: NDArray[np.intp],
    fetch: int,
    weights: NDArray[np.float32] | None = None,
) -> Candidates:
    """Each item's similarity to ``items`` summed (weighted), from each one's ``fetch``
    nearest neighbours; only the items some neighbour list holds. What "often viewed with",
    "bought together", basket completion and session lists rank by, in time proportional to
    the neighbour lists (no catalogue-long vector)."""
    idx, vals = model.similar_items(items, fetch)
    ok = idx >= 0
    found, where = np.unique(idx[ok], return_inverse=True)
    where = where.ravel()
    sums = np.zeros(len(found), dtype=np.float32)
    start = 0
    for r in range(idx.shape[0]):
        # row by row in float32, as a dense accumulation would add them
        n = int(np.count_nonzero(ok[r]))
        w = 1.0 if weights is None else float(weights[r])
        sums[where[start : start + n]] += w * vals[r][ok[r]]
        start += n
    return Candidates(found.astype(np.intp), sums)


def neighbour_scores(
    model: ItemSimilarity,
    items: NDArray[np.intp],
    n_items: int,
    fetch: int,
    weights: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """:func:`neighbour_candidates` as a dense vector (``NaN`` for items no neighbour list
    holds)."""
    cand = neighbour_candidates(model, items, fetch, weights)
    scores = np.full(n_items, np.nan, dtype=np.float32)
    scores[cand.index] = cand.score
    return scores


def _similar_reason(kind: str) -> str:
    """The reason an item of a related list carries: ``similar:<kind>``, and
    ``similar:content`` for the look-alikes of the content model."""
    return "similar:content" if kind == "similar" else f"similar:{kind}"


def _in_category(path: str, prefix: str) -> bool:
    """Whether category ``path`` is ``prefix`` or lies under it (whole levels only)."""
    prefix = prefix.strip()
    return path == prefix or path.startswith(prefix + CATEGORY_SEPARATOR)


def _explained_candidates(
    lists: Any, n_rows: int, k: int, model_name: str, items: Vocabulary
) -> tuple[list[Candidates], list[Mapping[int, tuple[str, ...]] | None]]:
    """:meth:`Engine._score`'s candidates and reasons from a model's explained lists as
    arrays (:class:`~recsys.models.base.ExplainsArrays`): the same as from its per-item
    lists, with each row's reasons built only for the items the rules read."""
    rows = np.asarray(lists.rows, dtype=np.intp)
    bounds = np.searchsorted(rows, np.arange(n_rows + 1))
    scores: list[Candidates] = []
    reasons: list[Mapping[int, tuple[str, ...]] | None] = []
    for r in range(n_rows):
        lo, hi = int(bounds[r]), int(bounds[r + 1])
        idx = np.asarray(lists.items[lo:hi], dtype=np.intp)
        vals = np.asarray(lists.scores[lo:hi], dtype=np.float32)
        # a repeated item keeps its last entry, as the per-item lists give it
        last = {i: lo + j for j, i in enumerate(idx.tolist())}
        keep = np.fromiter(last.values(), dtype=np.intp, count=len(last)) - lo
        idx, vals = idx[keep], vals[keep]
        finite = np.isfinite(vals)
        scores.append(Candidates(idx[finite], vals[finite]))
        reasons.append(_LazyReasons(lists, last, sorted(last.values()), k, model_name, items))
    return scores, reasons


class _LazyReasons(Mapping[int, tuple[str, ...]]):
    """Item index -> its API reasons, built when read (:func:`apply_rules` reads the items
    it keeps: about ``k`` of the hundred ranked).

    The partners ("often bought with") of the entries are searched a block at a time, in
    rank order (``order``): the rules take the best items first, so the first block is the
    top ``k`` and a few more, and a read past the blocks searched so far searches the next
    ``k`` with it. A request that keeps its top ``k`` searches ``k + 2`` partners, not the
    4k + 8 it once did (a tenth of a live list's time at 10^6 items); one whose rules skip
    many items (stock, category caps, boosts) searches a few blocks.
    """

    def __init__(
        self,
        lists: Any,
        entry_of: dict[int, int],
        order: list[int],
        k: int,
        model_name: str,
        items: Vocabulary,
    ) -> None:
        self._lists = lists
        self._entry_of = entry_of
        self._order = order
        self._block = max(k, 1)
        self._next = 0  # position in ``order`` of the first entry not searched yet
        self._searched: set[int] = set()
        self._model = model_name
        self._items = items
        self._built: dict[int, tuple[str, ...]] = {}

    def __getitem__(self, item: int) -> tuple[str, ...]:
        why = self._built.get(item)
        if why is None:
            e = self._entry_of[item]  # KeyError: not listed
            if e not in self._searched:
                self._search_with(e)
            why = self._built[item] = reason_codes(self._model, self._lists.reason(e), self._items)
        return why

    def _search_with(self, entry: int) -> None:
        """Search the partners of ``entry`` and of the next block of entries in rank order."""
        size = self._block + (2 if self._next == 0 else 0)
        block = [*self._order[self._next : self._next + size], entry]
        self._next += size
        self._searched.update(block)
        self._lists.prefetch(block)

    def __iter__(self) -> Iterator[int]:
        return iter(self._entry_of)

    def __len__(self) -> int:
        return len(self._entry_of)


def _load_indexes(
    version_dir: Path,
    manifest: Manifest,
    models: Mapping[str, Recommender],
    n_items: int,
) -> dict[str, ItemIndex]:
    """The approximate indexes the manifest's ``ann`` table lists (their files were verified
    against the manifest's sha256 with the rest of the version before this runs).

    A model that searches vectors of its own (the hybrid's ALS generator) is handed its index
    here; the others' are returned for the engine's retrieval."""
    out: dict[str, ItemIndex] = {}
    for name, spec in manifest.ann.items():
        model = models.get(name)
        vectors = indexed_vectors(model)
        if vectors is None:
            raise ArtifactError(
                f"model version {version_dir.name}: an index for {name!r}, "
                "which is not a factor model of this version"
            )
        if spec.file not in manifest.files:
            # only files the manifest hashes are read: no path out of the version folder
            raise ArtifactError(
                f"model version {version_dir.name}: index file {spec.file!r} of {name!r} is not "
                "among the manifest's files"
            )
        index = load_index(
            version_dir / spec.file,
            n_items=n_items,
            dim=int(vectors.shape[1]),
            exact_head=int(spec.params.get("exact_head", 0)),
            # usearch keeps neither in its file: the manifest's search setting, the model's
            # (memory-mapped) factors for the exact head
            ef_search=spec.params.get("ef_search"),
            item_factors=vectors,
        )
        # a customer asks the same search on every page they browse (see ItemIndex.remember)
        index.remember()
        if spec.answers is not None:
            index.use_answers(_kept_answers(version_dir, manifest, name, spec.answers))
        if isinstance(model, SearchesIndex):
            model.use_index(index)
        else:
            out[name] = index
    return out


def _kept_answers(
    version_dir: Path, manifest: Manifest, name: str, entry: Mapping[str, Any]
) -> KeptAnswers:
    """The answers an index of ``name`` kept for known customers (``ArtifactError`` when the
    entry names no file among the manifest's, or an unreadable one)."""
    file = entry.get("file")
    if not isinstance(file, str) or file not in manifest.files:
        raise ArtifactError(
            f"model version {version_dir.name}: the kept answers {file!r} of {name!r}'s index "
            "are not among the manifest's files"
        )
    return KeptAnswers.load(version_dir / file)


def _model_popularity(models: Iterable[Recommender], n_items: int) -> NDArray[np.float64]:
    """The item scores of the first fitted :class:`~recsys.models.popular.PopularModel` among
    ``models`` (zeros when there is none)."""
    from recsys.models.popular import PopularModel

    for model in models:
        scores = getattr(model, "item_scores_", None)
        if isinstance(model, PopularModel) and scores is not None and len(scores) == n_items:
            return np.maximum(np.asarray(scores, dtype=np.float64), 0.0)
    return np.zeros(n_items)


def _empty_row(n: int) -> sp.csr_matrix:
    return sp.csr_matrix((1, n), dtype=np.float32)  # no dense zeros: O(1) at any catalogue
