"""Numerical kernels shared by the model classes and the hybrid's candidate generators.

One function per algorithm, called by every model that uses it: ALS fitting and folding a user
in (:class:`~recsys.models.als.ALSModel` and the hybrid's ALS generator), the EASE weights
(:class:`~recsys.models.ease.EASEModel` and the hybrid's EASE generator), the Cholesky inverse
behind EASE, and co-occurrence counting, normalisation and pruning
(:class:`~recsys.models.cooccurrence.CooccurrenceModel` and the hybrid's basket generator).
The hybrid used to carry private copies of these, and they drifted (an unweighted ridge
fold-in with its own penalty, different defaults); here they cannot.

The kernels take every setting as a keyword without a default: the defaults belong to the
models that call them (``ALSModel``'s and ``HybridModel``'s parameters), never to a kernel.

=============  =============================================================================
ALS            :func:`als_fit`, :func:`als_item_gram`, :func:`als_fold_in`
EASE           :func:`ease_weights`, :func:`ease_solution`, :func:`ease_update`,
               :func:`ease_solve_from`, :func:`spd_inverse`, :func:`shared_ease_solves`
co-occurrence  :func:`cooccurrence_counts`, :func:`basket_frequencies`,
               :func:`normalise_counts`, :func:`keep_top_neighbours`,
               :func:`cooccurrence_matrix`, :func:`cooccurrence_neighbours`
=============  =============================================================================
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.errors import ConfigError

#: float32 or float64 arrays, kept as given
_F = TypeVar("_F", np.float32, np.float64)

#: Normalisations of :func:`normalise_counts` (see :mod:`recsys.models.cooccurrence`).
NORMALISATIONS: tuple[str, ...] = (
    "count",
    "lift",
    "jaccard",
    "cosine",
    "conditional",
    "asymmetric",
)

#: Item rows per block when summing the factors' Gram matrix (float64 sums in bounded memory).
GRAM_BLOCK = 65_536

#: Bytes of the ``entries × f × f`` outer products one fold-in step may hold; a user with more
#: entries than fit is solved on their own with a ``f × entries`` product instead.
FOLD_IN_BYTES = 64 << 20


# -- ALS ---------------------------------------------------------------------------------------


def als_fit(
    matrix: sp.csr_matrix,
    *,
    factors: int,
    regularization: float,
    alpha: float,
    iterations: int,
    seed: int | None,
    threads: int,
    init: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008) with implicit's CPU solver.

    The confidence of a stored entry ``r`` is ``alpha · r``; unobserved pairs have confidence 1
    and preference 0.

    Parameters
    ----------
    matrix
        ``users × items`` weights (float32 CSR; converted when not).
    factors, regularization, alpha, iterations
        implicit's ``AlternatingLeastSquares`` parameters of the same names.
    seed
        Seed of the random initial factors (ignored for the factors ``init`` gives).
    threads
        Threads of implicit's solver (``0``: every core). Each user's (item's) solve only reads
        the other side's factors, so the result does not depend on it.
    init
        ``(user_factors, item_factors)`` to start from instead of random ones (a warm start);
        their shapes must match the matrix and ``factors``.

    Returns
    -------
    user_factors, item_factors
        ``users × factors`` and ``items × factors`` float32, C-contiguous. All zeros when the
        matrix stores nothing (there is nothing to factorise).

    Notes
    -----
    implicit runs its own thread pool; a multi-threaded BLAS under it oversubscribes the cores
    (implicit warns that fitting can get ~10x slower), so BLAS is limited to one thread around
    the estimator's construction (where implicit checks and warns) and its fit.
    """
    n_users, n_items = matrix.shape
    if matrix.nnz == 0 and init is None:
        return np.zeros((n_users, factors), np.float32), np.zeros((n_items, factors), np.float32)
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=seed,
            num_threads=threads,
        )
        if init is not None:
            # implicit starts from whatever factors it finds (random only when unset)
            model.user_factors = np.array(init[0], dtype=np.float32)
            model.item_factors = np.array(init[1], dtype=np.float32)
        model.fit(sp.csr_matrix(matrix, dtype=np.float32), show_progress=False)
    return (
        np.ascontiguousarray(model.user_factors, dtype=np.float32),
        np.ascontiguousarray(model.item_factors, dtype=np.float32),
    )


def als_item_gram(
    item_factors: NDArray[np.floating], regularization: float, *, block: int | None = None
) -> NDArray[np.float64]:
    """``YᵀY + λI`` in float64, summed over blocks of item rows.

    The part of every user's ALS system that does not depend on the user: compute it once per
    set of item factors and pass it to :func:`als_fold_in`. ``block`` item rows (default
    :data:`GRAM_BLOCK`) are converted to float64 at a time, not the whole matrix.
    """
    step = GRAM_BLOCK if block is None else block
    dim = item_factors.shape[1]
    gram = regularization * np.eye(dim)
    for start in range(0, item_factors.shape[0], step):
        part = np.asarray(item_factors[start : start + step], dtype=np.float64)
        gram += part.T @ part
    return gram


def als_fold_in(
    rows: sp.csr_matrix,
    item_factors: NDArray[np.float32],
    gram: NDArray[np.float64],
    *,
    alpha: float,
) -> NDArray[np.float32]:
    """Least-squares user factors for history rows, holding the item factors fixed.

    Solves, for each row, ``(YᵀY + λI + Σᵢ (|cᵢ| − 1) yᵢyᵢᵀ) x = Σ_{cᵢ>0} cᵢ yᵢ`` with
    ``cᵢ = alpha · rᵢ`` over the row's stored entries: the system implicit's
    ``AlternatingLeastSquares.recalculate_user`` solves (and its fit solves for each user),
    with ``YᵀY + λI`` given once (:func:`als_item_gram`).

    Parameters
    ----------
    rows
        ``users × items`` history weights (CSR).
    item_factors
        ``items × f`` float32.
    gram
        :func:`als_item_gram` of ``item_factors`` with the fit's regularization.
    alpha
        The fit's confidence scale.

    Returns
    -------
    numpy.ndarray
        ``users × f`` float32; zeros for an empty row.

    Notes
    -----
    Vectorised over users: when every confidence is 1 (a binary history at ``alpha = 1``) all
    users share one matrix and one factorisation; otherwise the per-user corrections are
    summed as ``entries × f × f`` outer products in chunks of :data:`FOLD_IN_BYTES` and the
    systems are solved as one batch per chunk. Only the users' own items are converted to
    float64: a copy of every item's factors would cost 512 MB at 10⁶ items.
    """
    rows = sp.csr_matrix(rows)
    n, dim = rows.shape[0], item_factors.shape[1]
    out = np.zeros((n, dim), dtype=np.float32)
    lengths = np.diff(rows.indptr)
    nonempty = np.flatnonzero(lengths)
    if len(nonempty) == 0:
        return out
    lo = int(rows.indptr[0])
    hi = int(rows.indptr[-1])
    indices = rows.indices[lo:hi]
    conf = alpha * rows.data[lo:hi].astype(np.float64)
    y = np.asarray(item_factors[indices], dtype=np.float64)
    starts = (rows.indptr[nonempty] - lo).astype(np.intp)
    rhs = np.add.reduceat(np.where(conf > 0, conf, 0.0)[:, None] * y, starts, axis=0)
    weight = np.abs(conf) - 1.0
    if not weight.any():
        out[nonempty] = np.linalg.solve(gram, rhs.T).T
        return out
    ends = np.r_[starts[1:], len(conf)]
    per_chunk = max(1, FOLD_IN_BYTES // (8 * dim * dim))
    first = 0
    while first < len(nonempty):
        # consecutive users whose entries fit the chunk, at least one
        last = int(np.searchsorted(ends, starts[first] + per_chunk, side="right"))
        last = max(last, first + 1)
        e0, e1 = int(starts[first]), int(ends[last - 1])
        ye = y[e0:e1]
        if last - first == 1:
            a = (gram + (ye.T * weight[e0:e1]) @ ye)[None]
        else:
            outer = (weight[e0:e1, None, None] * ye[:, :, None]) * ye[:, None, :]
            a = gram + np.add.reduceat(outer, starts[first:last] - e0, axis=0)
        out[nonempty[first:last]] = np.linalg.solve(a, rhs[first:last, :, None])[..., 0]
        first = last
    return out


# -- EASE --------------------------------------------------------------------------------------


def ease_weights(
    matrix: sp.csr_matrix, *, regularization: float, binary: bool
) -> NDArray[np.float32]:
    """EASE item-item weights (Steck, WWW 2019).

    ``B = I − P · diag(1 / diag(P))`` with ``P = (XᵀX + λI)⁻¹`` and ``diag(B) = 0``; a user's
    scores are ``history · B``.

    Parameters
    ----------
    matrix
        ``users × items`` interactions ``X``.
    regularization
        The ridge ``λ`` (Steck's experiments use a few hundred).
    binary
        Use whether a user interacted with an item (a stored positive value) rather than the
        weight: EASE is defined on binary data, and large weights would dwarf ``λ``.

    Returns
    -------
    numpy.ndarray
        ``items × items`` float32 ``B``. The dense inverse needs ``8 · items²`` bytes and about
        ``items³ / 3`` flops: callers bound the catalogue first.
    """
    return ease_solution(matrix, regularization=regularization, binary=binary)[0]


def ease_solution(
    matrix: sp.csr_matrix, *, regularization: float, binary: bool
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """:func:`ease_weights` with ``diag(P)``: together they give ``P`` back
    (``P = −B · diag(P)`` off the diagonal), the start of a warm :func:`ease_update`.

    The items nobody interacted with are left out of the solve: their rows and columns of
    ``XᵀX`` are zero, so ``XᵀX + λI`` is ``λ`` there and decoupled from the rest, ``P`` is
    ``1/λ`` on their diagonal and their weights are zero. What is solved is the problem of
    the other items alone: smaller (the hybrid's label windows leave out the items first sold
    after their cut: 15-19 % less solving time on Online Retail).
    """
    x = _ease_input(matrix, binary)
    n = x.shape[1]
    used = np.flatnonzero(np.bincount(x.indices[x.data != 0], minlength=n))
    if not len(used):  # nothing to solve (LAPACK refuses an empty matrix)
        empty = (np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.float64))
        return _expand_solution(empty, used, n, regularization)
    if len(used) == n:
        return _kept(x, regularization, b"", lambda: _ease_solve(x, regularization))
    inner = sp.csr_matrix(x[:, used])
    # kept as placed among the unused items, the array the models hold: a second, inner
    # copy of every kept solution would hold twice the memory for the same sharing
    return _kept(
        inner,
        regularization,
        _layout_key(used, n),
        lambda: _expand_solution(_ease_solve(inner, regularization), used, n, regularization),
    )


def _kept(
    x: sp.csr_matrix,
    regularization: float,
    layout: bytes,
    solve: Callable[[], tuple[NDArray[np.float32], NDArray[np.float64]]],
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """``solve()`` (the EASE solution of ``x`` placed by ``layout``), or its earlier result
    within :func:`shared_ease_solves`."""
    if _EASE_SOLVED is None:
        return solve()
    key = _ease_key(x, regularization) + layout
    if key in _EASE_SOLVED:
        _EASE_SOLVED.move_to_end(key)
        return _EASE_SOLVED[key]
    solved = solve()
    for array in solved:
        array.flags.writeable = False  # shared between models: nobody may write into it
    _EASE_SOLVED[key] = solved
    while len(_EASE_SOLVED) > 1 and (
        len(_EASE_SOLVED) > _EASE_SOLVED_MAX
        or sum(b.nbytes for b, _ in _EASE_SOLVED.values()) > _EASE_SOLVED_MAX_BYTES
    ):
        _EASE_SOLVED.popitem(last=False)
    return solved


def _layout_key(used: NDArray[np.intp], n: int) -> bytes:
    """A digest of where the ``used`` items are among ``n``."""
    h = hashlib.blake2b(digest_size=20)
    h.update(np.int64(n).tobytes())
    h.update(np.asarray(used, dtype=np.int64).tobytes())
    return h.digest()


def _expand_solution(
    solved: tuple[NDArray[np.float32], NDArray[np.float64]],
    used: NDArray[np.intp],
    n: int,
    regularization: float,
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """The solution over the ``used`` items placed among ``n``: the others' weights are
    zero and their ``diag(P)`` is ``1/λ``."""
    b_used, diagonal_used = solved
    b = np.zeros((n, n), dtype=np.float32)
    b[np.ix_(used, used)] = b_used
    with np.errstate(divide="ignore"):  # no ridge: those items' P is unbounded
        diagonal = np.full(n, np.divide(1.0, regularization), dtype=np.float64)
    diagonal[used] = diagonal_used
    return b, diagonal


def _ease_input(matrix: sp.csr_matrix, binary: bool) -> sp.csr_matrix:
    x = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    if binary:
        x.data = (x.data > 0).astype(np.float64)
        x.eliminate_zeros()  # only the pattern counts: one key for equal patterns
    return x


#: EASE weights solved inside :func:`shared_ease_solves`, by problem (``None`` outside it)
_EASE_SOLVED: OrderedDict[bytes, tuple[NDArray[np.float32], NDArray[np.float64]]] | None = None
#: how many it keeps (least recently used dropped first): a training stage solves at most
#: five distinct problems with the default models (EASEModel's, the hybrid's at its three
#: label windows' cuts and its serving state), and the serving state, solved last, must still
#: find EASEModel's when it is the same problem
_EASE_SOLVED_MAX = 5
#: and within how many bytes of weights (the newest is always kept): on a catalogue near the
#: hybrid's ``max_ease_items`` (15,000) one weights matrix is 0.9 GB, and four of them kept
#: for a stage would hold 3.6 GB beyond what its models hold
_EASE_SOLVED_MAX_BYTES = 1 << 30


@contextmanager
def shared_ease_solves() -> Iterator[None]:
    """Within the block, an EASE problem solved once is not solved again.

    :func:`ease_weights` on the same matrix (the same binary pattern, or the same values when
    not binary) and ridge returns the first result, read-only. The training stages and each
    cut of an evaluation wrap their fits in it: :class:`~recsys.models.ease.EASEModel`, the
    evaluation's ``repeat`` baseline and the hybrid's EASE generator solve the same problem
    when they learn the same pattern of the same data (the hybrid's signal keeps fully
    returned purchases, which the interaction matrix drops, so with returns in the data its
    problem is its own). Outside the block nothing is kept, so a serving process holds no
    copy. Nested blocks share the outer one's results.
    """
    global _EASE_SOLVED
    if _EASE_SOLVED is not None:
        yield
        return
    _EASE_SOLVED = OrderedDict()
    try:
        yield
    finally:
        _EASE_SOLVED = None


def _ease_key(x: sp.csr_matrix, regularization: float) -> bytes:
    """A digest of the EASE problem: the ridge, the items and ``x``'s rows as a multiset
    (:func:`_row_digests`, sorted). ``XᵀX`` is a sum over the rows: whose rows they are and
    their order (another user vocabulary) do not change the problem, and hashing the rows
    costs a fraction of hashing ``XᵀX`` (8 M entries on Online Retail, 0.4 s). Two problems
    share a key only if their rows' 64-bit digests are the same multiset: by chance, about
    ``2⁻⁶⁴`` per row."""
    digests = np.sort(_row_digests(x)[np.diff(x.indptr) > 0])
    h = hashlib.blake2b(digest_size=20)
    h.update(np.asarray([x.shape[1], len(digests)], dtype=np.int64).tobytes())
    h.update(np.float64(regularization).tobytes())
    h.update(digests.tobytes())
    return h.digest()


#: The Gram matrix's condition bound (Gershgorin: ``(largest absolute row sum + λ) / λ``) up to
#: which EASE is solved in float32: the inverse's relative error is then about ``bound · 6e-8``
#: (3e-4 at the bound). Online Retail's bound is far below it, and its float32 weights give every
#: customer the same top 10 as float64 while the solve takes 0.9 s instead of 1.5 (half the
#: flops per second of LAPACK, half the bytes of the items² matrix). Weaker ridges solve in
#: float64.
EASE_FLOAT32_MAX_CONDITION = 5_000.0


def _ease_solve(
    x: sp.csr_matrix, regularization: float
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    # the sparse product in float32: counts are exact below 2^24, and converting a float64
    # product of millions of pairs cost more than the product itself
    x32 = sp.csr_matrix(x, dtype=np.float32)
    gram = (x32.T @ x32).toarray()
    # the bound from the dense rows: the sparse product's abs-and-sum took as long as the
    # product itself
    largest = float(np.abs(gram).sum(axis=1).max(initial=0.0))
    bound = (largest + regularization) / max(regularization, np.finfo(np.float64).tiny)
    if regularization <= 0 or bound > EASE_FLOAT32_MAX_CONDITION:
        gram = gram.astype(np.float64)
    gram[np.diag_indices_from(gram)] += regularization
    # Cholesky: the Gram matrix plus a positive ridge is SPD (half the flops of LU)
    p = spd_inverse(gram)
    # B in C order: scipy's sparse-times-dense product ravels the dense side, a copy of all of
    # B per call when it is in Fortran order (the hybrid's candidates on Ta-Feng spent 14 s of
    # a 84 s fit copying it). A Fortran P from the Cholesky inverse is exactly symmetric (its
    # upper triangle mirrored), so its transpose is the same matrix in C order, no copy.
    return _weights_of_inverse(p if p.flags.c_contiguous else p.T)


def _weights_of_inverse(
    p: NDArray[np.floating],
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """``B = −P / diag(P)`` (zero diagonal) and ``diag(P)``, ``P`` overwritten when float32."""
    diagonal = np.diag(p).astype(np.float64)
    # written straight into the float32 result: the float64 quotient and its float32 copy
    # were two more items² temporaries (page faults, a third of the kernel)
    b = p if p.dtype == np.float32 else np.empty(p.shape, dtype=np.float32)
    np.divide(p, -diagonal.astype(p.dtype), out=b, casting="same_kind")
    b[np.diag_indices_from(b)] = 0.0
    return b, diagonal


#: The largest relative residual ``‖(XᵀX + λI) · P · Z − Z‖ / ‖Z‖`` (``Z`` random probes) at
#: which a warm :func:`ease_update` is kept; above it the problem is solved in full. About 100
#: float32 roundings: on Online Retail a float32 solve leaves 6e-7, while yesterday's ``P`` as
#: it is leaves 2e-2.
EASE_UPDATE_MAX_RESIDUAL = 1e-5


def ease_input_rows(matrix: sp.csr_matrix, binary: bool) -> sp.csr_matrix:
    """What an EASE solve of ``matrix`` keeps of its input for the next :func:`ease_update`:
    the rows as the solve reads them (``binary``: the pattern, float32 ones)."""
    return sp.csr_matrix(_ease_input(matrix, binary), dtype=np.float32)


def _row_digests(x: sp.csr_matrix) -> NDArray[np.uint64]:
    """A 64-bit digest of each row's entries, whatever their order: the sum (mod 2⁶⁴) of a
    random word per column, times the value's bits. Equal rows have equal digests; unequal
    rows collide with probability about 2⁻⁶⁴, and a collision only leaves a change out of the
    update, which its residual check then refuses."""
    words = np.random.default_rng(0x5EED).integers(
        1, np.iinfo(np.uint64).max, size=x.shape[1], dtype=np.uint64, endpoint=True
    )
    bits = np.asarray(x.data, dtype=np.float32).view(np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        terms = words[x.indices] * (bits | np.uint64(1 << 40))
        sums = np.concatenate([np.zeros(1, np.uint64), np.cumsum(terms, dtype=np.uint64)])
        return sums[x.indptr[1:]] - sums[x.indptr[:-1]]


def _changed_rows(
    old: sp.csr_matrix, new: sp.csr_matrix
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """The rows of ``new`` and of ``old`` (same columns) left over when the two are matched
    as multisets of rows: what ``newᵀ new − oldᵀ old`` is made of. Empty rows are left out
    (they add nothing)."""
    d_old, d_new = _row_digests(old), _row_digests(new)
    keep_old = np.flatnonzero(np.diff(old.indptr) > 0)
    keep_new = np.flatnonzero(np.diff(new.indptr) > 0)
    d_old, d_new = d_old[keep_old], d_new[keep_new]
    digests = np.concatenate([d_old, d_new])
    if not len(digests):
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    side = np.concatenate([np.zeros(len(d_old), np.int8), np.ones(len(d_new), np.int8)])
    rows = np.concatenate([keep_old, keep_new])
    order = np.lexsort((side, digests))
    digests, side, rows = digests[order], side[order], rows[order]
    # a run of equal digests holds a old rows, then b new ones: b − a new rows or a − b old
    # ones are left over (equal rows: which ones does not matter)
    first = np.flatnonzero(np.r_[True, digests[1:] != digests[:-1]])
    lengths = np.diff(np.r_[first, len(digests)])
    olds = np.add.reduceat((side == 0).astype(np.intp), first)
    rank = np.arange(len(digests)) - np.repeat(first, lengths)  # place within the run
    a, b = np.repeat(olds, lengths), np.repeat(lengths - olds, lengths)
    unmatched_old = (side == 0) & (rank >= b)
    unmatched_new = (side == 1) & (rank - a >= a)
    return np.sort(rows[unmatched_new]), np.sort(rows[unmatched_old])


def ease_update(
    matrix: sp.csr_matrix,
    *,
    regularization: float,
    binary: bool,
    previous: tuple[NDArray[np.floating], NDArray[np.floating]],
    previous_items: NDArray[np.integer],
    previous_rows: sp.csr_matrix,
) -> tuple[NDArray[np.float32], NDArray[np.float64], tuple[int, int]] | str:
    """EASE on ``matrix`` from an earlier solution, by a low-rank correction; a sentence
    saying why not when the update cannot be trusted or would not pay (then solve in full).

    The earlier solution ``P₀ = A₀⁻¹`` (``A₀ = X₀ᵀX₀ + λI``) was solved from the rows
    ``previous_rows`` (``X₀``, :func:`ease_input_rows`). Matched as multisets, the rows of
    ``X₀`` and of today's ``X`` differ in ``m`` rows: those added (a customer's row as it is
    now, a new customer's) and those gone (the same customer's row as it was, an erased
    customer's). They are ``U`` with signs ``S = ±1``, ``A = A₀ + UᵀSU``, and Woodbury gives
    ``A⁻¹ = P₀ − (U P₀)ᵀ (S + U P₀ Uᵀ)⁻¹ (U P₀)``: one ``items² × m`` product and a sparse
    one instead of an ``items³`` inverse. Which rows changed is found here, whatever the
    reason (new events, returns, erasures, a time window sliding). The result is checked
    against ``A`` itself on random probes (:data:`EASE_UPDATE_MAX_RESIDUAL`) and refused if it
    does not invert it.

    Parameters
    ----------
    matrix, regularization, binary
        As for :func:`ease_weights`.
    previous
        ``(B, diag(P))`` of the earlier solution (:func:`ease_solution`).
    previous_items
        For each item (column) of ``matrix``, its index in ``previous`` (``-1``: new since
        then; a new item starts as an item nobody bought, ``P₀ = 1/λ``). An item of
        ``previous`` that is no longer a column makes the update refuse: dropping it is not a
        low-rank change.
    previous_rows
        The earlier solve's input rows, in its own item order (:func:`ease_input_rows`).

    Returns
    -------
    tuple or str
        ``(B, diag(P))`` as :func:`ease_solution` returns them and how many rows came in and
        went out (``U``'s rows of each sign), or why there is none.
    """
    from scipy.linalg import blas

    x = ease_input_rows(matrix, binary)
    b0, d0 = previous
    n = x.shape[1]
    mapping = np.asarray(previous_items, dtype=np.intp)
    known = np.flatnonzero(mapping >= 0)
    old = mapping[known]
    if len(mapping) != n or len(np.unique(old)) != b0.shape[0]:
        return "items were dropped since then"
    if regularization <= 0:
        return "no ridge"
    if previous_rows.shape[1] != b0.shape[0]:
        return "the earlier input rows do not match its weights"
    # yesterday's rows in today's columns
    column = np.empty(b0.shape[0], dtype=np.intp)
    column[old] = known
    rows0 = sp.csr_matrix(previous_rows, dtype=np.float32, copy=True)
    rows0 = sp.csr_matrix(
        (rows0.data, column[rows0.indices], rows0.indptr), shape=(rows0.shape[0], n)
    )
    rows0.sort_indices()  # ids not in order: a column may have moved before another
    added, gone = _changed_rows(rows0, x)
    m = len(added) + len(gone)
    if 2 * m > n:  # the products would cost about what the inverse costs
        return f"{m} changed rows are too many for {n} items"
    # P0 in this run's item order, float32 (the weights are stored in float32)
    scale = (-np.asarray(d0, dtype=np.float64)).astype(np.float32)
    in_order = bool((old == np.arange(len(old))).all())  # ids sorted: new ones slot in between
    if in_order and len(known) == n:
        p = np.multiply(b0, scale[None, :], dtype=np.float32)
    else:
        p = np.zeros((n, n), dtype=np.float32)
        moved = b0 if in_order else np.take(np.take(b0, old, axis=0), old, axis=1)
        p[np.ix_(known, known)] = moved * scale[old]
    p[known, known] = np.asarray(d0, dtype=np.float32)[old]
    fresh = np.flatnonzero(mapping < 0)
    p[fresh, fresh] = np.float32(1.0 / regularization)
    if m:
        u = sp.vstack([x[added], rows0[gone]], format="csr", dtype=np.float32)
        signs = np.r_[np.ones(len(added)), -np.ones(len(gone))]
        # P0 is symmetric up to rounding: U P0 = (P0 Uᵀ)ᵀ, rows of P0 summed per row of U
        y = np.asarray(u @ p, dtype=np.float32)
        core = np.diag(signs) + np.asarray(u @ y.T, dtype=np.float64)
        try:
            z = np.linalg.solve(core, y.astype(np.float64)).astype(np.float32)
        except np.linalg.LinAlgError:
            return "its core matrix is singular"
        # P0 − yᵀ z, in place on the Fortran view (a second items² array would be 61 MB at
        # 4k items)
        p = blas.sgemm(-1.0, z, y, trans_a=True, trans_b=False, beta=1.0, c=p.T, overwrite_c=True).T
    xt = sp.csr_matrix(x.T)
    lam = np.float32(regularization)
    probes = np.random.default_rng(0).standard_normal((n, 8), dtype=np.float32)
    applied = p @ probes
    residual = np.linalg.norm(
        np.asarray(xt @ (x @ applied), dtype=np.float32) + lam * applied - probes
    ) / np.linalg.norm(probes)
    if not residual <= EASE_UPDATE_MAX_RESIDUAL:
        return f"its residual {residual:.1e} is above {EASE_UPDATE_MAX_RESIDUAL:.0e}"
    return (*_weights_of_inverse(p), (len(added), len(gone)))


@dataclass(frozen=True)
class EaseStart:
    """An earlier EASE solution to start the next one from (:func:`ease_solve_from`).

    Attributes
    ----------
    weights, diagonal
        Its ``B`` and ``diag(P)`` (:func:`ease_solution`).
    items
        For each item of the next problem, its index in ``weights`` (``-1``: new).
    rows
        The rows it was solved from (:func:`ease_input_rows`).
    """

    weights: NDArray[np.float32]
    diagonal: NDArray[np.float64]
    items: NDArray[np.intp]
    rows: sp.csr_matrix


def ease_solve_from(
    matrix: sp.csr_matrix, *, regularization: float, binary: bool, start: EaseStart | None
) -> tuple[NDArray[np.float32], NDArray[np.float64], str | None]:
    """:func:`ease_update` from ``start`` when given, else (or when it refuses)
    :func:`ease_solution`: ``B``, ``diag(P)`` and, with a ``start``, what became of it (for
    the manifest; ``None`` without one)."""
    if start is not None:
        updated = ease_update(
            matrix,
            regularization=regularization,
            binary=binary,
            previous=(start.weights, start.diagonal),
            previous_items=start.items,
            previous_rows=start.rows,
        )
        if not isinstance(updated, str):
            b, diagonal, (came, went) = updated
            return b, diagonal, f"corrected by a low-rank update ({came} rows in, {went} out)"

        b, diagonal = ease_solution(matrix, regularization=regularization, binary=binary)
        return b, diagonal, f"solved in full, not updated: {updated}"
    return (*ease_solution(matrix, regularization=regularization, binary=binary), None)


def spd_inverse(g: NDArray[_F]) -> NDArray[_F]:
    """Inverse of a symmetric positive definite matrix through its Cholesky factor.

    Half the flops of the LU inverse (``np.linalg.inv``) for the same result up to rounding;
    EASE's Gram matrix plus a positive ridge is positive definite; when the factorisation
    fails (a zero ridge) the LU inverse is used, as before.

    Parameters
    ----------
    g
        A square, symmetric, C- or Fortran-contiguous float32 or float64 matrix
        (overwritten).

    Returns
    -------
    numpy.ndarray
        ``g⁻¹``, symmetric, of ``g``'s dtype.
    """
    from scipy.linalg import lapack

    single = g.dtype == np.float32
    potrf, potri = (lapack.spotrf, lapack.spotri) if single else (lapack.dpotrf, lapack.dpotri)
    # g is symmetric, so g.T (Fortran order) is the same matrix without a transposing copy
    factor, info = potrf(g.T, lower=False, clean=False)
    if info != 0:
        return np.asarray(np.linalg.inv(g.T), dtype=g.dtype)
    inv, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        return np.asarray(np.linalg.inv(g.T), dtype=g.dtype)
    # dpotri fills the upper triangle only; mirror it in place (np.triu + transpose-add made
    # three full temporaries and cost about a third of the inverse itself on 4k items)
    return mirror_upper(inv)


def mirror_upper(a: NDArray[_F], block: int = 256) -> NDArray[_F]:
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


# -- co-occurrence -----------------------------------------------------------------------------


def cooccurrence_counts(baskets: sp.csr_matrix, *, min_support: int = 1) -> sp.csr_matrix:
    """How many baskets hold each pair of distinct items.

    Parameters
    ----------
    baskets
        ``baskets × items``; any stored non-zero means "in the basket".
    min_support
        Pairs in fewer baskets are dropped.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``items × items`` int64, symmetric, empty diagonal.
    """
    b = sp.csr_matrix(baskets, copy=True)
    b.sum_duplicates()
    b.data = (b.data != 0).astype(np.int64)
    b.eliminate_zeros()
    counts = sp.csr_matrix(b.T @ b)
    counts.setdiag(0)
    counts.data[counts.data < min_support] = 0
    counts.eliminate_zeros()
    counts.sort_indices()
    return counts


def basket_frequencies(baskets: sp.csr_matrix) -> NDArray[np.int64]:
    """How many baskets hold each item (``n_i`` of :func:`normalise_counts`)."""
    b = sp.csr_matrix(baskets, copy=True)
    b.sum_duplicates()
    b.eliminate_zeros()
    return np.diff(sp.csc_matrix(b).indptr).astype(np.int64)


def normalise_counts(
    counts: sp.csr_matrix,
    item_baskets: NDArray[np.integer],
    n_baskets: int,
    normalisation: str = "count",
    *,
    min_support: int = 1,
    alpha: float = 0.5,
) -> sp.csr_matrix:
    """Normalised co-occurrence from pair counts, per-item basket counts and the basket total.

    With ``c_ij`` the baskets holding both items, ``n_i`` those holding ``i`` and ``N`` all
    baskets: ``count`` is ``c_ij``, ``lift`` ``c_ij · N / (n_i · n_j)``, ``jaccard``
    ``c_ij / (n_i + n_j − c_ij)``, ``cosine`` ``c_ij / √(n_i · n_j)``, ``conditional``
    ``c_ij / n_i`` and ``asymmetric`` ``c_ij / (n_i^α · n_j^(1−α))`` (Aiolli's asymmetric
    cosine: ``alpha`` 1 is ``conditional``, 0.5 ``cosine``; not symmetric). Kept apart from
    the counting so that counts carried over from an earlier fit plus those of new baskets
    give the same matrix as counting everything again (a warm start).

    Raises
    ------
    ConfigError
        For an unknown ``normalisation``, or ``alpha`` outside [0, 1].
    """
    _check_normalisation(normalisation, alpha)
    counts = sp.csr_matrix(counts)
    if min_support > 1:
        counts = counts.copy()
        counts.data[counts.data < min_support] = 0
        counts.eliminate_zeros()
    # on the CSR structure: a COO round trip re-sorted every pair to give the same matrix
    # (0.07-0.13 s against 0.14-0.62 s on Online Retail's 7.5M order pairs)
    if not counts.has_canonical_format:
        counts = counts.copy()
        counts.sum_duplicates()
    row = np.repeat(np.arange(counts.shape[0], dtype=counts.indices.dtype), np.diff(counts.indptr))
    item_baskets = np.asarray(item_baskets, dtype=np.float64)
    c = counts.data.astype(np.float64)
    ni, nj = item_baskets[row], item_baskets[counts.indices]
    if normalisation == "count":
        values = c
    elif normalisation == "lift":
        values = c * n_baskets / (ni * nj)
    elif normalisation == "jaccard":
        values = c / (ni + nj - c)
    elif normalisation == "cosine":
        values = c / np.sqrt(ni * nj)
    elif normalisation == "conditional":
        values = c / ni
    else:
        # the same expression as the Spark engine's, so that both round alike
        values = c / (ni**alpha * nj ** (1.0 - alpha))
    out = sp.csr_matrix((values, counts.indices.copy(), counts.indptr.copy()), shape=counts.shape)
    out.has_sorted_indices = True  # counts' canonical order, kept
    return out


def keep_top_neighbours(matrix: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """Keep the ``neighbours`` largest entries of each row (ties broken by lower index).

    Returns float32 with sorted indices. Only a row with more entries than ``neighbours`` is
    looked at, by its ``neighbours``-th largest value (a partition, not a sort): on Online
    Retail's 7.5M order pairs this took 0.15-0.22 s where a sort per row took 0.28-0.47 s
    (and one lexsort of every entry 3.5 s).
    """
    m = sp.csr_matrix(matrix)
    if not m.has_canonical_format:
        m = m.copy()
        m.sum_duplicates()
    keep = np.ones(m.nnz, dtype=bool)
    lengths = np.diff(m.indptr)
    for r in np.flatnonzero(lengths > neighbours).tolist():
        start, end = int(m.indptr[r]), int(m.indptr[r + 1])
        val = m.data[start:end]
        if np.isnan(val).any():  # NaN last, as a sort of -val puts it
            order = np.lexsort((m.indices[start:end], -val))[neighbours:]
            keep[start + order] = False
            continue
        cut = len(val) - neighbours
        threshold = np.partition(val, cut)[cut]
        row_keep = val > threshold
        # the ties at the threshold: the lowest indices first (the row's indices are sorted)
        ties = np.flatnonzero(val == threshold)[: neighbours - int(row_keep.sum())]
        row_keep[ties] = True
        keep[start:end] = row_keep
    kept = np.concatenate(([0], np.cumsum(keep)))
    out = sp.csr_matrix(
        (m.data[keep].astype(np.float32), m.indices[keep], kept[m.indptr]),
        shape=m.shape,
    )
    out.has_sorted_indices = True
    return out


def _check_normalisation(normalisation: str, alpha: float) -> None:
    """Raise :class:`~recsys.errors.ConfigError` for an unknown ``normalisation`` or an
    ``alpha`` outside [0, 1]."""
    if normalisation not in NORMALISATIONS:
        raise ConfigError(
            f"normalisation: {normalisation!r} is not one of {', '.join(NORMALISATIONS)}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha: {alpha!r} is not between 0 and 1")


def cooccurrence_matrix(
    baskets: sp.csr_matrix,
    normalisation: str = "count",
    *,
    min_support: int = 1,
    alpha: float = 0.5,
) -> sp.csr_matrix:
    """Normalised co-occurrence of every pair (:func:`normalise_counts`), float64."""
    _check_normalisation(normalisation, alpha)
    b = sp.csr_matrix(baskets, copy=True)
    b.sum_duplicates()
    b.eliminate_zeros()
    counts = cooccurrence_counts(b, min_support=min_support)
    return normalise_counts(counts, basket_frequencies(b), b.shape[0], normalisation, alpha=alpha)


def cooccurrence_neighbours(
    baskets: sp.csr_matrix,
    *,
    normalisation: str,
    min_support: int,
    neighbours: int,
    alpha: float = 0.5,
) -> sp.csr_matrix:
    """The ``neighbours`` strongest co-occurring items of each item, ``items × items`` float32.

    :func:`cooccurrence_matrix` pruned by :func:`keep_top_neighbours`: what
    :class:`~recsys.models.cooccurrence.CooccurrenceModel` learns from the same baskets.
    """
    full = cooccurrence_matrix(baskets, normalisation, min_support=min_support, alpha=alpha)
    return keep_top_neighbours(full, neighbours)


def descending_keys(values: NDArray[np.floating]) -> NDArray[np.int64] | None:
    """Integer keys in ``[0, 2**32)`` that order as ``-values`` does, equal for equal values
    (``-0.0`` equals ``0.0``); ``None`` for values with a ``NaN`` or not floating point.

    A ``float32`` (or a ``float64`` that ``float32`` holds exactly, as the ranker's features
    cast up) is its bits: negative ones with all but the sign flipped order as the values
    do. Any other ``float64`` is its rank among the distinct values (one sort).
    """
    v = np.asarray(values)
    if v.dtype == np.float64:
        with np.errstate(over="ignore"):  # a value beyond float32's range is not held
            narrow = v.astype(np.float32)
        if np.array_equal(narrow, v):  # False with a NaN: the float64 test below says None
            v = narrow
    if v.dtype == np.float32:
        if np.isnan(v).any():
            return None
        bits = (v + np.float32(0.0)).view(np.int32)
        bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)
        key = bits.astype(np.int64)
        np.subtract(0x7FFFFFFF, key, out=key)  # in place: the keys are 8 bytes an entry
        return key
    if v.dtype != np.float64 or np.isnan(v).any():
        return None
    _, rank = np.unique(-v, return_inverse=True)
    return np.asarray(rank, dtype=np.int64).reshape(-1)


#: Entries below which :func:`order_within_rows` is ``np.lexsort`` itself: its checks and
#: packing cost about 25 us, which a lexsort of a few thousand entries (a request's candidate
#: pairs) does not (300 entries: 5 us against 29 us; 10,000: 0.73 ms against 0.59 ms).
PACKED_SORT_MIN = 4096


def order_within_rows(
    rows: NDArray[np.integer],
    values: NDArray[np.floating],
    start: NDArray[np.intp] | None = None,
) -> NDArray[np.intp]:
    """``np.lexsort((-values, rows))``: entries by row, then by value, best first; entries
    with equal row and value in the order of ``start`` (indices of every entry; default:
    their index order).

    One stable argsort of ``row << 32 | key`` (:func:`descending_keys`) where the rows are
    in ``[0, 2**31)`` and the values allow: several times faster than the lexsort (0.3 M
    candidate pairs: 10 ms against 58 ms here). Otherwise, and below
    :data:`PACKED_SORT_MIN` entries, it is the lexsort. A training run sorts tens of
    millions of candidate pairs this way (the evaluation's lists, the discover order and its
    test).
    """
    r = np.asarray(rows)
    v = np.asarray(values)
    if start is not None:
        r, v = r[start], v[start]
    key = None
    if len(r) >= max(PACKED_SORT_MIN, 1) and r.min() >= 0 and r.max() < 2**31:
        key = descending_keys(v)
    if key is None:
        order = np.lexsort((-v, r))
    else:
        key |= r.astype(np.int64) << 32
        order = np.argsort(key, kind="stable")
        del key
    return np.asarray(order if start is None else np.asarray(start)[order], dtype=np.intp)
