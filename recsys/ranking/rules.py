"""Business rules as data, and the one function that applies them to scored items.

A shop states its rules in a TOML or JSON file (validated on load; errors name the rule and
the field)::

    exclude_purchased = true                 # do not re-recommend what the customer bought...
    repeatable_categories = ["Groceries"]    # ...except consumables, which may be bought again
    exclude_out_of_stock = true
    max_per_category = 3                     # at most 3 items of one top-level category
    category_level = 1                       # "Home > Kitchen > Mugs" counts as "Home"
    deny = ["POST", "DOT"]                   # never shown
    deny_categories = ["Fees"]
    allow = []                               # when not empty, only these items are shown
    backfill = true                          # always k items when the catalogue allows

    [[boost]]
    name = "summer"
    categories = ["Garden"]
    factor = 1.5

    [[pin]]
    name = "hero"
    item = "85123A"
    position = 1

    [[bury]]
    name = "clearance"
    items = ["22423"]

    [placements.checkout]                    # a placement overrides the defaults key by key:
    max_per_category = 1                     # here only the cap; everything else as above

:func:`compile_rules` resolves a :class:`RuleSet` against the catalogue once (when a model
version loads); :func:`apply_rules` then runs on every request with numpy masks only.
Category matches are by path prefix: ``"Home"`` matches ``"Home > Kitchen > Mugs"``.

Pins and caps: a pinned item counts toward ``max_per_category`` like any other, so the list
never holds more of one category than the cap, pins included; a pin wins over the cap only when
the pins alone exceed it (two pins of one category under a cap of 1: both are shown, and no
other item of that category).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, PrivateAttr, model_validator

from recsys.config import StrictModel, read_config_file, validate
from recsys.data.columns import CatalogTable
from recsys.data.vocab import Vocabulary

#: Separator between levels of a category path.
CATEGORY_SEPARATOR = " > "
#: Reason attached to items that filled the list because the model had too few.
FALLBACK_REASON = "fallback:popular"
#: Category masks kept per catalogue (one per distinct set of category prefixes asked for).
_CATEGORY_MASKS = 256


# -- the file format -------------------------------------------------------------------------


class ItemSelector(StrictModel):
    """Items chosen by id and/or by category (path prefix)."""

    name: str = Field(min_length=1, max_length=64)
    items: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _selects_something(self) -> ItemSelector:
        if not self.items and not self.categories:
            raise ValueError(f"rule '{self.name}' selects nothing: give items or categories")
        return self


class BoostRule(ItemSelector):
    """Multiply the score of the selected items (``factor`` > 1 boosts, < 1 demotes)."""

    factor: float = Field(gt=0, le=1000)


class BuryRule(ItemSelector):
    """Show the selected items only after every other eligible item."""


class PinRule(StrictModel):
    """Put one item at a fixed 1-based position whenever it is eligible."""

    name: str = Field(min_length=1, max_length=64)
    item: str = Field(min_length=1)
    position: int = Field(ge=1, le=100)


class RuleSet(StrictModel):
    """The rules of one placement."""

    # Off by default: repeat buying is the strongest signal in purchase data and the default
    # model learns when a repeat is due; shops that sell durables turn it on.
    exclude_purchased: bool = False
    repeatable_categories: list[str] = Field(default_factory=list)
    # What the customer bought since the version was trained: the version has not seen it,
    # so it would rank the item as due as before the purchase (an item bought a minute ago
    # came back first).
    exclude_just_bought: bool = True
    exclude_out_of_stock: bool = True
    max_per_category: int | None = Field(default=None, ge=1)
    category_level: int = Field(default=1, ge=1, le=10)
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    deny_categories: list[str] = Field(default_factory=list)
    boost: list[BoostRule] = Field(default_factory=list)
    pin: list[PinRule] = Field(default_factory=list)
    bury: list[BuryRule] = Field(default_factory=list)
    backfill: bool = True

    @model_validator(mode="after")
    def _unique_pins(self) -> RuleSet:
        seen: dict[int, str] = {}
        for p in self.pin:
            if p.position in seen:
                raise ValueError(
                    f"pin rules '{seen[p.position]}' and '{p.name}' both use position {p.position}"
                )
            seen[p.position] = p.name
        return self


class RulesFile(RuleSet):
    """A rules file: the default rule set plus per-placement overrides."""

    placements: dict[str, RuleSet] = Field(default_factory=dict)
    # each placement's merged rules, built once (a stable object per placement)
    _merged: dict[str, RuleSet] = PrivateAttr(default_factory=dict)

    def for_placement(self, placement: str | None) -> RuleSet:
        """The rules of ``placement``: the defaults, with each key its table sets replaced
        (a key it leaves out keeps the default's value; a list it sets replaces the default's
        list whole). The defaults when it has no table."""
        if not placement or placement not in self.placements:
            return self
        rules = self._merged.get(placement)
        if rules is None:
            own = self.placements[placement]
            base = self.model_dump(exclude={"placements"})
            base.update(own.model_dump(include=own.model_fields_set))
            rules = self._merged[placement] = RuleSet.model_validate(base)
        return rules


def load_rules(path: str | Path) -> RulesFile:
    """Read and validate a rules file; :class:`~recsys.errors.ConfigError` names rule and field."""
    return parse_rules(read_config_file(path), str(path))


def parse_rules(data: Mapping[str, Any], source: str = "rules") -> RulesFile:
    """Validate rules given as a mapping (what a TOML/JSON file holds)."""
    return validate(RulesFile, dict(data), source)


# -- compiled form -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogArrays:
    """The catalogue as arrays in item-index order (what rules need to know of each item)."""

    items: Vocabulary
    category: NDArray[np.object_]
    price: NDArray[np.float64]  # NaN where unknown
    in_stock: NDArray[np.bool_]
    margin: NDArray[np.float64] | None = None  # NaN where unknown; None: not known at all
    # derived, filled on first use: distinct categories and each item's code among them, and
    # the masks of the prefix sets asked for so far
    _category_codes: tuple[list[str], NDArray[np.integer]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _category_masks: dict[tuple[str, ...], NDArray[np.bool_]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_records(cls, items: Vocabulary, records: Sequence[Mapping[str, Any]]) -> CatalogArrays:
        """Arrays from ``{item_id, category, price, in_stock}`` records (any order; ids in
        ``items`` without a record get an empty category, unknown price and in stock).

        A version's :class:`~recsys.data.columns.CatalogTable` of the same items is taken
        column by column, no record decoded: its price and stock arrays are used as they are
        (memory-mapped, shared by the server's workers), and its category codes are kept."""
        if isinstance(records, CatalogTable) and records.items is items:
            return cls.from_table(records)
        n = len(items)
        category = np.full(n, "", dtype=object)
        price = np.full(n, np.nan)
        margin = np.full(n, np.nan)
        in_stock = np.ones(n, dtype=bool)
        for rec in records:
            i = items.index(str(rec.get("item_id", "")))
            if i < 0:
                continue
            category[i] = rec.get("category") or ""
            p = rec.get("price")
            price[i] = np.nan if p is None else float(p)
            m = rec.get("margin")
            margin[i] = np.nan if m is None else float(m)
            in_stock[i] = bool(rec.get("in_stock", True))
        return cls(items=items, category=category, price=price, in_stock=in_stock, margin=margin)

    @classmethod
    def from_table(cls, table: CatalogTable) -> CatalogArrays:
        """Arrays of a version's catalogue columns (see :meth:`from_records`)."""
        names = np.array(table.category_names, dtype=object)
        codes = np.asarray(table.category_codes)
        # one pointer per item to one of the few category strings: 8 bytes an item, where
        # a string per item (as a JSON catalogue gives) cost ~60
        category = names[codes]
        catalog = cls(
            items=table.items,
            category=category,
            price=table.price,
            in_stock=table.in_stock,
            margin=table.margin,
        )
        object.__setattr__(catalog, "_category_codes", (table.category_names, codes))
        return catalog

    def __len__(self) -> int:
        return len(self.items)

    def category_mask(self, prefixes: Sequence[str]) -> NDArray[np.bool_]:
        """Items whose category path starts with one of ``prefixes`` (whole levels only).

        Matched once per distinct category, not per item, and kept per set of prefixes (a
        request's ``category`` filter asks the same few again and again; the result is
        read-only)."""
        wanted = tuple(sorted({p.strip() for p in prefixes if p.strip()}))
        mask = self._category_masks.get(wanted)
        if mask is not None:
            return mask
        names_list, codes = self.category_codes()
        hit = np.fromiter(
            (
                any(cat == p or cat.startswith(p + CATEGORY_SEPARATOR) for p in wanted)
                for cat in names_list
            ),
            dtype=bool,
            count=len(names_list),
        )
        mask = hit[codes] if len(codes) else np.zeros(0, dtype=bool)
        mask.flags.writeable = False
        if len(self._category_masks) >= _CATEGORY_MASKS:
            self._category_masks.clear()
        self._category_masks[wanted] = mask
        return mask

    def category_codes(self) -> tuple[list[str], NDArray[np.integer]]:
        """The distinct categories and each item's index among them (made once)."""
        if self._category_codes is None:
            names, codes = np.unique(self.category.astype(str), return_inverse=True)
            object.__setattr__(self, "_category_codes", (names.tolist(), codes.ravel()))
        assert self._category_codes is not None
        return self._category_codes

    def id_mask(self, ids: Sequence[str]) -> NDArray[np.bool_]:
        """Items among ``ids`` (ids not in the catalogue are ignored)."""
        mask = np.zeros(len(self), dtype=bool)
        idx = self.items.indices(ids) if ids else np.empty(0, np.intp)
        mask[idx[idx >= 0]] = True
        return mask


@dataclass(frozen=True)
class CompiledRules:
    """A :class:`RuleSet` resolved against one catalogue: masks and arrays, ready per request."""

    rules: RuleSet
    base_eligible: NDArray[np.bool_]
    repeatable: NDArray[np.bool_]
    boost: NDArray[np.float32]
    boost_names: dict[int, tuple[str, ...]]
    buried: NDArray[np.bool_]
    group: NDArray[np.intp]  # category group per item for max_per_category
    pins: tuple[tuple[int, int, str], ...]  # (item index, 0-based position, rule name)
    boosted: bool = True  # False when every boost factor is 1 (scores pass through unchanged)


def compile_rules(rules: RuleSet, catalog: CatalogArrays) -> CompiledRules:
    """Resolve ``rules`` against ``catalog`` (done once per model version and placement)."""
    n = len(catalog)
    eligible = np.ones(n, dtype=bool)
    if rules.exclude_out_of_stock:
        eligible &= catalog.in_stock
    if rules.allow:
        eligible &= catalog.id_mask(rules.allow)
    eligible &= ~catalog.id_mask(rules.deny)
    eligible &= ~catalog.category_mask(rules.deny_categories)

    boost = np.ones(n, dtype=np.float32)
    names: dict[int, list[str]] = {}
    for b in rules.boost:
        mask = catalog.id_mask(b.items) | catalog.category_mask(b.categories)
        boost[mask] *= b.factor
        for i in np.flatnonzero(mask).tolist():
            names.setdefault(i, []).append(f"rule:boost:{b.name}")

    buried = np.zeros(n, dtype=bool)
    for r in rules.bury:
        buried |= catalog.id_mask(r.items) | catalog.category_mask(r.categories)

    level = rules.category_level
    # per distinct category, not per item (10^6 items share a few thousand categories)
    category_names, codes = catalog.category_codes()
    keys = [CATEGORY_SEPARATOR.join(c.split(CATEGORY_SEPARATOR)[:level]) for c in category_names]
    group_vocab = {key: g for g, key in enumerate(dict.fromkeys(keys))}
    name_group = np.fromiter((group_vocab[key] for key in keys), dtype=np.intp, count=len(keys))
    group = name_group[codes] if n else np.zeros(0, dtype=np.intp)

    pins = []
    for p in sorted(rules.pin, key=lambda p: p.position):
        i = catalog.items.index(p.item)
        if i >= 0:  # a pin of an item not in this catalogue is inert, not an error
            pins.append((i, p.position - 1, p.name))
    return CompiledRules(
        rules=rules,
        base_eligible=eligible,
        repeatable=catalog.category_mask(rules.repeatable_categories),
        boost=boost,
        boost_names={i: tuple(v) for i, v in names.items()},
        buried=buried,
        group=group,
        pins=tuple(pins),
        boosted=bool((boost != 1).any()),
    )


# -- per request -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestFilters:
    """What one request adds to the rules."""

    exclude: tuple[str, ...] = ()
    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    exclude_purchased: bool | None = None  # None: as the rules say


@dataclass(frozen=True, slots=True)
class Ranked:
    """One ranked item (an internal index; the engine turns it into an id)."""

    index: int
    score: float
    reasons: tuple[str, ...]


@dataclass
class _Fill:
    chosen: list[Ranked] = field(default_factory=list)
    taken: set[int] = field(default_factory=set)
    per_group: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidates:
    """One request's scored items: distinct item indices and their scores.

    Every item not listed is unscored, as ``NaN`` in a dense score vector would say, so
    :func:`apply_rules` gives the same list for ``Candidates.from_dense(v)`` as for ``v``; a
    model that returns its top few hundred items (an approximate index, a precomputed list, a
    model that explains) is ranked in time proportional to those, not to the catalogue.
    """

    index: NDArray[np.intp]
    score: NDArray[np.float32]

    @classmethod
    def from_dense(cls, scores: NDArray[np.floating]) -> Candidates:
        """The finite entries of a score-per-item vector."""
        values = np.asarray(scores, dtype=np.float32)
        idx = np.flatnonzero(np.isfinite(values))
        return cls(idx, values[idx])

    def __len__(self) -> int:
        return len(self.index)


class _Eligibility:
    """Which items one request may show (rules, request filters, purchases), item by item:
    asked only for the items a request looks at, so a request never builds a catalogue-long
    mask it does not need."""

    def __init__(
        self,
        compiled: CompiledRules,
        catalog: CatalogArrays,
        request: RequestFilters,
        purchased: NDArray[np.intp] | None,
    ) -> None:
        self.compiled = compiled
        self.catalog = catalog
        self.request = request
        self.exclude: NDArray[np.intp] | None = None
        if request.exclude:
            idx = catalog.items.indices(request.exclude)
            self.exclude = idx[idx >= 0]
        self.category = catalog.category_mask([request.category]) if request.category else None
        exclude_purchased = (
            compiled.rules.exclude_purchased
            if request.exclude_purchased is None
            else request.exclude_purchased
        )
        self.bought: NDArray[np.intp] | None = None
        if exclude_purchased and purchased is not None and len(purchased):
            self.bought = np.asarray(purchased, dtype=np.intp)

    def of(self, idx: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Whether each item of ``idx`` may be shown."""
        c, r = self.compiled, self.request
        ok = c.base_eligible[idx]
        if self.exclude is not None and len(self.exclude):
            ok &= ~np.isin(idx, self.exclude)
        if self.category is not None:
            ok &= self.category[idx]
        if r.min_price is not None:
            ok &= self.catalog.price[idx] >= r.min_price
        if r.max_price is not None:
            ok &= self.catalog.price[idx] <= r.max_price
        if self.bought is not None:
            ok &= ~(np.isin(idx, self.bought) & ~c.repeatable[idx])
        return ok


def eligible_mask(
    compiled: CompiledRules,
    catalog: CatalogArrays,
    request: RequestFilters,
    purchased: NDArray[np.intp] | None,
) -> NDArray[np.bool_]:
    """Items this request may show, before scores: rules, request filters and purchases."""
    everything = np.arange(len(catalog), dtype=np.intp)
    return _Eligibility(compiled, catalog, request, purchased).of(everything)


def apply_rules(
    scores: NDArray[np.floating] | Candidates,
    k: int,
    *,
    compiled: CompiledRules,
    catalog: CatalogArrays,
    request: RequestFilters = RequestFilters(),
    purchased: NDArray[np.intp] | None = None,
    reasons: Mapping[int, Sequence[str]] | None = None,
    default_reason: str = "model",
    fallback_order: NDArray[np.intp] | None = None,
    fallback_scores: NDArray[np.floating] | None = None,
) -> list[Ranked]:
    """The final list: every rule applied to one user's scores.

    Parameters
    ----------
    scores
        Score per item index (``NaN``: the model has no opinion), or only the scored items
        (:class:`Candidates`: the same list, in time proportional to the candidates).
    k
        How many items to return.
    compiled, catalog
        The rules resolved against the catalogue (:func:`compile_rules`).
    request
        Request-level exclusions and filters.
    purchased
        Item indices the user bought (excluded unless their category is repeatable).
    reasons
        Per item index, why the model chose it; ``default_reason`` otherwise.
    fallback_order, fallback_scores
        Item indices best first (popularity) used to fill the list up to ``k``, and their
        scores by item index; items filled this way carry :data:`FALLBACK_REASON`.

    Returns
    -------
    list of Ranked
        At most ``k`` distinct, eligible items. Without ``max_per_category`` and with
        ``backfill`` on, exactly ``min(k, number of eligible items)``.
    """
    rules = compiled.rules
    n = len(catalog)
    k = max(0, min(int(k), n))
    if k == 0:
        return []
    cand = scores if isinstance(scores, Candidates) else Candidates.from_dense(scores)
    eligible = _Eligibility(compiled, catalog, request, purchased)
    pin_idx = np.fromiter((i for i, _, _ in compiled.pins), dtype=np.intp, count=len(compiled.pins))
    pin_ok = eligible.of(pin_idx).tolist()
    pins = [(i, pos, name) for (i, pos, name), ok in zip(compiled.pins, pin_ok, strict=True) if ok]
    pins = [(i, pos, name) for i, pos, name in pins if pos < k]
    pinned = {i for i, _, _ in pins}
    n_free = k - len(pins)

    index = np.asarray(cand.index, dtype=np.intp)
    raw = np.asarray(cand.score, dtype=np.float32)
    if compiled.boosted:
        boost = compiled.boost[index]
        adjusted = np.where(raw > 0, raw * boost, raw / boost)
    else:
        adjusted = raw
    usable = eligible.of(index) & np.isfinite(adjusted)
    if pinned:
        usable &= ~np.isin(index, np.fromiter(pinned, dtype=np.intp))

    cap = rules.max_per_category
    reasons = reasons or {}
    # pinned items count toward their category's cap (see the module docstring)
    taken_by_pins: dict[int, int] = {}
    if cap is not None:
        for i in pinned:
            g = int(compiled.group[i])
            taken_by_pins[g] = taken_by_pins.get(g, 0) + 1
    # Only a prefix of the full order is ever read (k items, a few more when the category cap
    # skips some): sorting that prefix instead of every candidate keeps a request linear in
    # the candidates, not n log n. The prefix grows until the list is full or exhausted.
    buried = compiled.buried[index]
    want = max(4 * n_free, 64)
    while True:
        order, complete = _order_prefix(index, adjusted, usable, buried, want)
        fill = _Fill(per_group=dict(taken_by_pins))
        for i, a in zip(index[order].tolist(), adjusted[order].tolist(), strict=True):
            if len(fill.chosen) >= n_free:
                break
            if not _take(fill, i, compiled, cap):
                continue
            why = tuple(reasons.get(i, (default_reason,))) + compiled.boost_names.get(i, ())
            fill.chosen.append(Ranked(i, float(a), why))
        if complete or len(fill.chosen) >= n_free:
            break
        want *= 4

    if rules.backfill and len(fill.chosen) < n_free:
        _backfill(fill, eligible, pinned, n_free, compiled, cap, n, fallback_order, fallback_scores)

    result = fill.chosen
    for i, pos, name in pins:
        at = np.flatnonzero(index == i)
        score = float(raw[at[0]]) if len(at) and np.isfinite(raw[at[0]]) else 0.0
        result.insert(min(pos, len(result)), Ranked(i, score, (f"rule:pin:{name}",)))
    return result


def _order_prefix(
    index: NDArray[np.intp],
    adjusted: NDArray[np.float32],
    usable: NDArray[np.bool_],
    buried: NDArray[np.bool_],
    m: int,
) -> tuple[NDArray[np.intp], bool]:
    """Positions (into the candidate arrays) of the first ``m`` or more usable candidates of
    the full ranking order, and whether that is all of them.

    The order is: not buried before buried, higher score first, lower item index first among
    ties. Every candidate tied with the ``m``-th is kept, so the result is an exact prefix.
    """
    out: list[NDArray[np.intp]] = []
    left = m
    for group in (usable & ~buried, usable & buried):
        if left <= 0:
            break
        pos = np.flatnonzero(group)
        key = -adjusted[pos]
        if len(pos) > left:
            threshold = np.partition(key, left - 1)[left - 1]
            keep = key <= threshold
            pos, key = pos[keep], key[keep]
        out.append(pos[np.lexsort((index[pos], key))])
        left -= len(pos)
    order = np.concatenate(out) if out else np.empty(0, np.intp)
    return order, len(order) == int(np.count_nonzero(usable))


def _take(fill: _Fill, i: int, compiled: CompiledRules, cap: int | None) -> bool:
    if i in fill.taken:
        return False
    if cap is not None:
        g = int(compiled.group[i])
        if fill.per_group.get(g, 0) >= cap:
            return False
        fill.per_group[g] = fill.per_group.get(g, 0) + 1
    fill.taken.add(i)
    return True


def _backfill(
    fill: _Fill,
    eligible: _Eligibility,
    pinned: set[int],
    n_free: int,
    compiled: CompiledRules,
    cap: int | None,
    n: int,
    order: NDArray[np.intp] | None,
    order_scores: NDArray[np.floating] | None,
) -> None:
    # Popular items first, then every other eligible item, so the list reaches k whenever
    # the catalogue has k eligible items. The popular order is read in growing chunks: a
    # request that needs a few items never touches the whole catalogue.
    popular = np.empty(0, np.intp) if order is None else np.asarray(order, dtype=np.intp)
    step, start = max(4 * n_free, 64), 0
    while start < len(popular) and len(fill.chosen) < n_free:
        chunk = popular[start : start + step]
        start, step = start + step, step * 4
        _fill_from(fill, chunk[eligible.of(chunk)], pinned, n_free, compiled, cap, order_scores)
    if len(fill.chosen) >= n_free:
        return
    listed = np.zeros(n, dtype=bool)
    listed[popular] = True
    rest = np.flatnonzero(~listed)  # O(n) where a set difference would sort
    _fill_from(fill, rest[eligible.of(rest)], pinned, n_free, compiled, cap, order_scores)


def _fill_from(
    fill: _Fill,
    items: NDArray[np.intp],
    pinned: set[int],
    n_free: int,
    compiled: CompiledRules,
    cap: int | None,
    order_scores: NDArray[np.floating] | None,
) -> None:
    for i in items.tolist():
        if len(fill.chosen) >= n_free:
            return
        if i in pinned or not _take(fill, i, compiled, cap):
            continue
        s = 0.0
        if order_scores is not None and np.isfinite(order_scores[i]):
            s = float(order_scores[i])
        fill.chosen.append(Ranked(i, s, (FALLBACK_REASON,)))
