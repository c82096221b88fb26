"""Candidate generation and pair features for the hybrid model.

The hybrid ranks ``(user, item)`` pairs in two stages. :class:`GeneratorState` holds every
signal stage 1 and 2 need, learned from one slice of the event history (everything before a
time): purchase statistics per user-item pair (distinct orders, first/last purchase day, the
usual interval), per-user and per-item statistics, ALS factors, an EASE item-item matrix
(skipped above ``max_ease_items``) and a basket co-occurrence matrix. :meth:`GeneratorState.pairs`
turns a batch of users into candidate pairs and a feature matrix, fully vectorised over
each chunk of users: no Python loop runs per user or per item.

The same code builds the state twice in :meth:`HybridModel.fit
<recsys.models.hybrid.HybridModel.fit>`: once from the events before an internal cut (the
ranker learns from what happened after it) and once from all events (served), so training
and serving features mean exactly the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.models.base import load_arrays, save_arrays

MICROS_PER_DAY = 86_400_000_000

#: Generators that can put an item on a user's candidate list, in flag-bit order.
GENERATORS = ("bought_before", "als", "ease", "cooccurrence", "popular")

#: Column names of the feature matrix built by :meth:`GeneratorState.pairs`.
FEATURES = (
    "als_score",
    "als_rank",
    "ease_score",
    "ease_rank",
    "cooc_score",
    "cooc_rank",
    "n_orders",
    "days_since_last",
    "due_ratio",
    "interval_days",
    "bought_before",
    "user_n_orders",
    "user_n_items",
    "user_tenure_days",
    "user_recency_days",
    "item_pop_recent",
    "item_trend",
    "item_price",
    "item_pop_total",
    "pop_rank",
    "share_of_user_orders",
)

#: Weight of one non-purchase event in the generators' signal matrix (a purchase order is 1).
SIGNAL_WEIGHTS = {"purchase": 1.0, "cart": 0.3, "view": 0.1}


@dataclass(frozen=True)
class GeneratorSettings:
    """Sizes of the candidate lists and of the generators (from the hybrid's parameters)."""

    n_bought: int = 100
    n_als: int = 50
    n_ease: int = 50
    n_cooc: int = 50
    n_popular: int = 20
    factors: int = 64
    als_iterations: int = 15
    als_regularization: float = 0.05
    ease_lambda: float = 500.0
    max_ease_items: int = 15_000
    cooc_neighbours: int = 100
    popularity_half_life_days: float = 30.0
    seed: int = 0


@dataclass
class EventArrays:
    """The columns of the training events the generators need, in index space."""

    user: NDArray[np.intp]
    item: NDArray[np.intp]
    day: NDArray[np.float64]  # days since the epoch
    order: NDArray[np.intp]  # order code; purchases without an order id: one per user and day
    purchase: NDArray[np.bool_]
    weight: NDArray[np.float64]  # SIGNAL_WEIGHTS per event type
    price: NDArray[np.float64]

    @classmethod
    def from_training_data(cls, data: TrainingData) -> EventArrays:
        """Keep the events whose user and item are in the vocabularies."""
        ev = data.events
        keep = (data.event_user >= 0) & (data.event_item >= 0)
        etype = np.asarray(ev.event_type, dtype=object)[keep]
        user = np.asarray(data.event_user, dtype=np.intp)[keep]
        ts = np.asarray(ev.ts, dtype=np.int64)[keep]
        day = ts / MICROS_PER_DAY
        order_ids = np.asarray(ev.order_id, dtype=object)[keep]
        missing = np.array([o is None for o in order_ids], dtype=bool)
        if missing.any():
            # A purchase without an order id: everything the user bought that day is one order.
            whole_days = (ts[missing] // MICROS_PER_DAY).astype(np.int64)
            order_ids = order_ids.copy()
            order_ids[missing] = [
                f"\0{u}:{d}" for u, d in zip(user[missing], whole_days, strict=True)
            ]
        _, order = np.unique(order_ids.astype(str), return_inverse=True)
        weight = np.zeros(len(etype), dtype=np.float64)
        for name, w in SIGNAL_WEIGHTS.items():
            weight[etype == name] = w
        return cls(
            user=user,
            item=np.asarray(data.event_item, dtype=np.intp)[keep],
            day=day,
            order=order.astype(np.intp),
            purchase=etype == "purchase",
            weight=weight,
            price=np.asarray(ev.price, dtype=np.float64)[keep],
        )

    def before(self, day: float) -> EventArrays:
        """The events strictly before ``day``."""
        m = self.day < day
        return EventArrays(**{f.name: getattr(self, f.name)[m] for f in fields(self)})


@dataclass
class GeneratorState:
    """Everything the candidate generators and the feature builder learned from one slice."""

    n_users: int
    n_items: int
    as_of_day: float
    # user-item purchase stats: CSR pattern (sorted indices) + arrays aligned with its data
    stats: sp.csr_matrix  # data = number of distinct orders
    first_day: NDArray[np.float64]
    last_day: NDArray[np.float64]
    user_n_orders: NDArray[np.float64]
    user_n_items: NDArray[np.float64]
    user_first_day: NDArray[np.float64]
    user_last_day: NDArray[np.float64]
    item_pop_recent: NDArray[np.float64]
    item_trend: NDArray[np.float64]
    item_price: NDArray[np.float64]
    item_pop_total: NDArray[np.float64]
    popular: NDArray[np.intp]  # the most popular items (decayed), best first
    user_factors: NDArray[np.float32]
    item_factors: NDArray[np.float32]
    ease: NDArray[np.float32] | None  # items × items, or None when the catalogue is too big
    cooc: sp.csr_matrix  # items × items, row j = items bought with j (cosine), diagonal 0

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        ev: EventArrays,
        n_users: int,
        n_items: int,
        as_of_day: float,
        settings: GeneratorSettings,
    ) -> GeneratorState:
        """Learn every generator from the events ``ev`` (all before ``as_of_day``)."""
        p = ev.purchase
        pu, pi, po, pd = ev.user[p], ev.item[p], ev.order[p], ev.day[p]
        # distinct (user, item, order) triples: one purchase of an item per order
        key = (pu.astype(np.int64) * n_items + pi) * (int(po.max(initial=0)) + 1) + po
        _, first = np.unique(key, return_index=True)
        tu, ti, tday = pu[first], pi[first], pd[first]
        stats = sp.csr_matrix(
            (np.ones(len(tu)), (tu, ti)), shape=(n_users, n_items), dtype=np.float64
        )
        stats.sum_duplicates()
        stats.sort_indices()
        flat = stats_keys(stats, n_items)
        pos = np.searchsorted(flat, tu.astype(np.int64) * n_items + ti)
        first_day = np.full(stats.nnz, np.inf)
        last_day = np.full(stats.nnz, -np.inf)
        np.minimum.at(first_day, pos, tday)
        np.maximum.at(last_day, pos, tday)

        # users: distinct orders, distinct items, first/last purchase
        _, ord_first = np.unique(po, return_index=True)
        user_n_orders = np.bincount(pu[ord_first], minlength=n_users).astype(np.float64)
        user_n_items = np.diff(stats.indptr).astype(np.float64)
        user_first_day = np.full(n_users, np.nan)
        user_last_day = np.full(n_users, np.nan)
        if len(pu):
            uf = np.full(n_users, np.inf)
            ul = np.full(n_users, -np.inf)
            np.minimum.at(uf, pu, pd)
            np.maximum.at(ul, pu, pd)
            seen = np.isfinite(uf)
            user_first_day[seen] = uf[seen]
            user_last_day[seen] = ul[seen]

        # items: decayed popularity (distinct user-orders), 30-day trend, price
        age = np.maximum(as_of_day - tday, 0.0)
        decay = 0.5 ** (age / settings.popularity_half_life_days)
        item_pop_recent = np.bincount(ti, weights=decay, minlength=n_items).astype(np.float64)
        recent = np.bincount(ti, weights=(age < 30).astype(float), minlength=n_items)
        before = np.bincount(
            ti, weights=((age >= 30) & (age < 120)).astype(float), minlength=n_items
        )
        item_trend = (recent + 1.0) / (before / 3.0 + 1.0)
        item_pop_total = np.bincount(ti, minlength=n_items).astype(np.float64)
        price_sum = np.bincount(ev.item, weights=np.nan_to_num(ev.price), minlength=n_items)
        price_n = np.bincount(ev.item, weights=np.isfinite(ev.price), minlength=n_items)
        with np.errstate(invalid="ignore", divide="ignore"):
            item_price = np.where(price_n > 0, price_sum / np.maximum(price_n, 1), np.nan)
        popular = np.argsort(-(item_pop_recent + 1e-9 * item_pop_total), kind="stable")
        popular = popular[: settings.n_popular].astype(np.intp)

        # the collaborative signal: purchase orders, plus carts and views at a lower weight
        signal = stats.copy().astype(np.float32)
        np_mask = ~p & (ev.weight > 0)
        if np_mask.any():
            extra = sp.csr_matrix(
                (ev.weight[np_mask], (ev.user[np_mask], ev.item[np_mask])),
                shape=(n_users, n_items),
                dtype=np.float32,
            )
            signal = (signal + extra).tocsr()
        signal.data = np.log1p(signal.data).astype(np.float32)
        user_factors, item_factors = _als(signal, settings)
        ease = None
        if 0 < n_items <= settings.max_ease_items:
            ease = _ease(signal, settings.ease_lambda)

        # basket co-occurrence (cosine), kept sparse: the top neighbours of each item
        baskets = sp.csr_matrix(
            (np.ones(len(ti), np.float32), (po[first], ti)),
            shape=(int(po.max(initial=-1)) + 1, n_items),
        )
        baskets.data[:] = 1.0
        cooc = _cooccurrence(baskets, settings.cooc_neighbours)

        return cls(
            n_users=n_users,
            n_items=n_items,
            as_of_day=as_of_day,
            stats=stats,
            first_day=first_day,
            last_day=last_day,
            user_n_orders=user_n_orders,
            user_n_items=user_n_items,
            user_first_day=user_first_day,
            user_last_day=user_last_day,
            item_pop_recent=item_pop_recent,
            item_trend=item_trend,
            item_price=item_price,
            item_pop_total=item_pop_total,
            popular=popular,
            user_factors=user_factors,
            item_factors=item_factors,
            ease=ease,
            cooc=cooc,
        )

    # -- stage 1 + features -----------------------------------------------------------------

    def pairs(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        now_day: float,
        settings: GeneratorSettings,
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float32], NDArray[np.uint8]]:
        """Candidates and their features for a batch of users.

        Parameters
        ----------
        users
            User indices of this state (``-1`` or beyond the state's users = unknown).
        history
            ``len(users) × n_items`` interactions (live events included); unknown users are
            folded in from it.
        now_day
            The request time in days since the epoch.

        Returns
        -------
        rows, items, features, sources
            Per candidate pair: its row in ``users``, the item, the feature row
            (:data:`FEATURES` order) and a bit mask of the :data:`GENERATORS` that proposed it.
        """
        n, m = len(users), self.n_items
        users = np.asarray(users, dtype=np.intp)
        known = (users >= 0) & (users < self.n_users)
        safe = np.where(known, users, 0)
        hist = sp.csr_matrix(history, dtype=np.float32)
        if hist.shape != (n, m):
            raise ValueError(f"history has shape {hist.shape}, expected {(n, m)}")

        # purchase stats of the batch (known users only; unknown users have none)
        stats_b = self.stats[safe]
        stats_b = sp.diags(known.astype(np.float64)) @ stats_b
        stats_b = sp.csr_matrix(stats_b)
        stats_b.eliminate_zeros()
        stats_b.sort_indices()
        # what the generators condition on: purchases, plus whatever the live history holds
        basis = (stats_b > 0).astype(np.float32) + (hist > 0).astype(np.float32)
        basis = sp.csr_matrix(basis)
        basis.data[:] = 1.0
        has_any = np.diff(basis.indptr) > 0

        # ALS: stored factors for known users, a ridge fold-in from the history for the others
        uf = self.user_factors[safe].copy()
        fold = ~known & has_any
        if fold.any():
            uf[fold] = _fold_in(basis[fold], self.item_factors)
        uf[~known & ~has_any] = 0.0
        als = uf @ self.item_factors.T
        ease = np.asarray(basis @ self.ease) if self.ease is not None else None
        cooc = np.asarray((basis @ self.cooc).todense(), dtype=np.float32)

        mask = np.zeros((n, m), dtype=np.uint8)
        # bought before: the most-ordered items (capped, for wholesalers with huge histories)
        bought = _top_sparse_rows(stats_b, settings.n_bought)
        mask[bought[0], bought[1]] |= 1
        hr, hc = hist.nonzero()
        mask[hr, hc] |= 1
        active = has_any[:, None]
        als_rank = _rank_top(als, settings.n_als, active)
        mask[als_rank < settings.n_als] |= 2
        if ease is not None:
            ease_rank = _rank_top(ease, settings.n_ease, active)
            mask[ease_rank < settings.n_ease] |= 4
        else:
            ease_rank = np.full((n, m), settings.n_ease, dtype=np.int32)
        cooc_rank = _rank_top(np.where(cooc > 0, cooc, -np.inf), settings.n_cooc, active)
        mask[cooc_rank < settings.n_cooc] |= 8
        pop_rank = np.full(m, len(self.popular), dtype=np.int32)
        pop_rank[self.popular] = np.arange(len(self.popular), dtype=np.int32)
        # popular fills a personal list; a user with no history at all gets no row (the
        # caller's fallback says which list it served instead)
        mask[np.ix_(has_any, self.popular)] |= 16

        rows, items = np.nonzero(mask)
        rows = rows.astype(np.intp)
        items = items.astype(np.intp)
        src = mask[rows, items]

        # pair lookups in the batch's purchase stats
        n_orders = np.zeros(len(rows))
        days_since = np.full(len(rows), np.nan)
        interval = np.full(len(rows), np.nan)
        if stats_b.nnz:
            flat = stats_keys(stats_b, m)
            want = rows.astype(np.int64) * m + items
            pos = np.clip(np.searchsorted(flat, want), 0, len(flat) - 1)
            hit = flat[pos] == want
            # map batch positions back to the state's arrays
            orig_pos = _state_positions(self.stats, safe, stats_b, m)
            sp_idx = orig_pos[pos[hit]]
            n_orders[hit] = stats_b.data[pos[hit]]
            days_since[hit] = now_day - self.last_day[sp_idx]
            span = self.last_day[sp_idx] - self.first_day[sp_idx]
            with np.errstate(invalid="ignore", divide="ignore"):
                interval[hit] = np.where(n_orders[hit] > 1, span / (n_orders[hit] - 1), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            due_ratio = days_since / np.maximum(interval, 1.0)

        ur = safe[rows]
        kn = known[rows]
        u_orders = np.where(kn, self.user_n_orders[ur], 0.0)
        nan = np.nan
        feats = np.column_stack(
            [
                als[rows, items],
                als_rank[rows, items],
                ease[rows, items] if ease is not None else np.full(len(rows), nan),
                ease_rank[rows, items],
                cooc[rows, items],
                cooc_rank[rows, items],
                n_orders,
                days_since,
                due_ratio,
                interval,
                (n_orders > 0).astype(np.float64),
                u_orders,
                np.where(kn, self.user_n_items[ur], 0.0),
                np.where(kn, now_day - self.user_first_day[ur], nan),
                np.where(kn, now_day - self.user_last_day[ur], nan),
                self.item_pop_recent[items],
                self.item_trend[items],
                self.item_price[items],
                self.item_pop_total[items],
                pop_rank[items],
                np.where(u_orders > 0, n_orders / np.maximum(u_orders, 1.0), 0.0),
            ]
        ).astype(np.float32)
        return rows, items, feats, src

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the state as one ``.npz`` (no pickle)."""
        arrays: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, sp.csr_matrix):
                arrays[f"{f.name}__data"] = value.data
                arrays[f"{f.name}__indices"] = value.indices
                arrays[f"{f.name}__indptr"] = value.indptr
                arrays[f"{f.name}__shape"] = np.array(value.shape)
            elif value is None:
                arrays[f"{f.name}__none"] = np.zeros(0)
            else:
                arrays[f.name] = np.asarray(value)
        save_arrays(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> GeneratorState:
        """Read a state written by :meth:`save`; raises ``ArtifactError`` when unreadable."""
        from recsys.errors import ArtifactError

        a = load_arrays(path)
        values: dict[str, Any] = {}
        try:
            for f in fields(cls):
                if f"{f.name}__none" in a:
                    values[f.name] = None
                elif f"{f.name}__data" in a:
                    values[f.name] = sp.csr_matrix(
                        (a[f"{f.name}__data"], a[f"{f.name}__indices"], a[f"{f.name}__indptr"]),
                        shape=tuple(a[f"{f.name}__shape"]),
                    )
                elif f.name in ("n_users", "n_items"):
                    values[f.name] = int(a[f.name])
                elif f.name == "as_of_day":
                    values[f.name] = float(a[f.name])
                else:
                    values[f.name] = a[f.name]
        except (KeyError, ValueError) as exc:
            raise ArtifactError(f"{path}: incomplete generator state: {exc}") from None
        return cls(**values)


# -- helpers ------------------------------------------------------------------------------------


def stats_keys(m: sp.csr_matrix, n_cols: int) -> NDArray[np.int64]:
    """``row * n_cols + col`` of every stored entry, in storage order (sorted if indices are)."""
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows * n_cols + m.indices.astype(np.int64)


def _state_positions(
    stats: sp.csr_matrix, safe: NDArray[np.intp], batch: sp.csr_matrix, n_cols: int
) -> NDArray[np.intp]:
    """For every entry of ``batch`` (rows of ``stats`` picked by ``safe``), its position in
    ``stats.data`` (so per-entry arrays aligned with ``stats`` can be read)."""
    rows = np.repeat(np.arange(batch.shape[0]), np.diff(batch.indptr))
    src_rows = safe[rows]
    keys = src_rows.astype(np.int64) * n_cols + batch.indices
    return np.searchsorted(stats_keys(stats, n_cols), keys).astype(np.intp)


def _top_sparse_rows(m: sp.csr_matrix, k: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Row and column of the ``k`` largest stored entries of each row (all if fewer)."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((-m.data, rows))
    start = m.indptr[:-1][rows[order]]
    within = np.arange(len(order)) - start
    keep = order[within < k]
    return rows[keep].astype(np.intp), m.indices[keep].astype(np.intp)


def _rank_top(scores: NDArray[np.floating], k: int, active: NDArray[np.bool_]) -> NDArray[np.int32]:
    """Per row, the rank (0 = best) of the top ``k`` finite scores; ``k`` for every other item.

    Rows where ``active`` is false rank nothing (a user with no history gets no
    personalised candidates).
    """
    n, m = scores.shape
    ranks = np.full((n, m), k, dtype=np.int32)
    k_eff = min(k, m)
    if k_eff == 0 or n == 0:
        return ranks
    s = np.where(np.isfinite(scores), scores, -np.inf)
    if k_eff < m:
        part = np.argpartition(-s, k_eff - 1, axis=1)[:, :k_eff]
    else:
        part = np.tile(np.arange(m), (n, 1))
    vals = np.take_along_axis(s, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    r = np.broadcast_to(np.arange(k_eff, dtype=np.int32), part.shape)
    ok = np.isfinite(vals) & np.asarray(active).reshape(n, 1)
    rr = np.broadcast_to(np.arange(n)[:, None], part.shape)
    ranks[rr[ok], part[ok]] = r[ok]
    return ranks


def _als(
    signal: sp.csr_matrix, s: GeneratorSettings
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Implicit-feedback ALS factors (implicit's CPU solver, BLAS kept single-threaded)."""
    n_users, n_items = signal.shape
    if signal.nnz == 0:
        return np.zeros((n_users, s.factors), np.float32), np.zeros(
            (n_items, s.factors), np.float32
        )
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    model = AlternatingLeastSquares(
        factors=s.factors,
        regularization=s.als_regularization,
        iterations=s.als_iterations,
        random_state=s.seed,
        num_threads=0,
    )
    with threadpool_limits(1, "blas"):
        model.fit(sp.csr_matrix(signal, dtype=np.float32), show_progress=False)
    return (
        np.ascontiguousarray(model.user_factors, dtype=np.float32),
        np.ascontiguousarray(model.item_factors, dtype=np.float32),
    )


def _fold_in(rows: sp.csr_matrix, item_factors: NDArray[np.float32]) -> NDArray[np.float32]:
    """Least-squares user factors for users not seen in training, from their history rows."""
    f = item_factors.shape[1]
    gram = item_factors.T @ item_factors + 0.1 * np.eye(f, dtype=np.float32)
    rhs = np.asarray(rows @ item_factors)
    return np.linalg.solve(gram, rhs.T).T.astype(np.float32)


def _ease(signal: sp.csr_matrix, lam: float) -> NDArray[np.float32]:
    """EASE item-item weights (Steck 2019) on the binarised signal."""
    x = sp.csr_matrix(signal, dtype=np.float64)
    x.data[:] = 1.0
    g = (x.T @ x).toarray()
    g[np.diag_indices_from(g)] += lam
    p = spd_inverse(g)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def spd_inverse(g: NDArray[np.float64]) -> NDArray[np.float64]:
    """Inverse of a symmetric positive definite matrix through its Cholesky factor.

    Half the flops of the LU inverse (``np.linalg.inv``) for the same result up to rounding;
    EASE's Gram matrix plus a positive ridge is positive definite; when the factorisation
    fails (a zero ridge) the LU inverse is used, as before.

    Parameters
    ----------
    g
        A square, symmetric, C- or Fortran-contiguous float64 matrix.

    Returns
    -------
    numpy.ndarray
        ``g⁻¹``, symmetric.
    """
    from scipy.linalg import lapack

    # g is symmetric, so g.T (Fortran order) is the same matrix without a transposing copy
    factor, info = lapack.dpotrf(g.T, lower=False, clean=False)
    if info != 0:
        return np.asarray(np.linalg.inv(g.T), dtype=np.float64)
    inv, info = lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        return np.asarray(np.linalg.inv(g.T), dtype=np.float64)
    # dpotri fills the upper triangle only; mirror it in place (np.triu + transpose-add made
    # three full temporaries and cost about a third of the inverse itself on 4k items)
    return _mirror_upper(inv)


def _mirror_upper(a: NDArray[np.float64], block: int = 256) -> NDArray[np.float64]:
    """Copy the upper triangle of square ``a`` onto its lower triangle, in place, by blocks."""
    n = a.shape[0]
    for start in range(0, n, block):
        stop = min(start + block, n)
        # the diagonal block, then everything left of it in these rows
        diag = a[start:stop, start:stop]
        lower = np.tril_indices(stop - start, -1)
        diag[lower] = diag.T[lower]
        a[start:stop, :start] = a[:start, start:stop].T
    return a


def _cooccurrence(baskets: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Cosine basket co-occurrence, pruned to the ``k`` strongest neighbours of each item."""
    n_items = baskets.shape[1]
    c = sp.csr_matrix(baskets.T @ baskets, dtype=np.float32)
    c.setdiag(0)
    c.eliminate_zeros()
    freq = np.asarray(baskets.sum(axis=0)).ravel().astype(np.float32)
    norm = 1.0 / np.sqrt(np.maximum(freq, 1.0))
    c = sp.csr_matrix(sp.diags(norm) @ c @ sp.diags(norm), dtype=np.float32)
    c.sort_indices()
    if c.nnz == 0:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    rows, cols = _top_sparse_rows(c, k)
    vals = np.asarray(c[rows, cols]).ravel()
    out = sp.csr_matrix((vals, (rows, cols)), shape=(n_items, n_items), dtype=np.float32)
    out.sort_indices()
    return out
