"""User-item pairs as sorted ``row * n_cols + col`` int64 keys, and sparse products by them.

The hybrid's candidate generation (:mod:`recsys.models.features`) joins several sparse
sources of ``(user, item)`` pairs (purchase statistics, the live history, ALS, EASE and
co-occurrence lists) without a users × items array: each pair becomes one int64 key, so a
union is a sort and a lookup is a binary search. The functions here give the same arrays, in
the same order, as the scipy calls they replace (``nonzero``, ``+``, a product), without the
temporary matrices scipy builds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.models.base import csr_row_arrays
from recsys.models.kernels import order_within_rows


def stats_keys(m: sp.csr_matrix, n_cols: int) -> NDArray[np.int64]:
    """``row * n_cols + col`` of every stored entry, in storage order (sorted if indices are)."""
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows * n_cols + m.indices.astype(np.int64)


def state_positions(
    state_keys: NDArray[np.int64], safe: NDArray[np.intp], batch: sp.csr_matrix, n_cols: int
) -> NDArray[np.intp]:
    """For every entry of ``batch`` (rows of the state's ``stats`` picked by ``safe``), its
    position in ``stats.data`` (so per-entry arrays aligned with ``stats`` can be read);
    ``state_keys`` is :func:`stats_keys` of ``stats``."""
    rows = np.repeat(np.arange(batch.shape[0]), np.diff(batch.indptr))
    src_rows = safe[rows]
    keys = src_rows.astype(np.int64) * n_cols + batch.indices
    return np.searchsorted(state_keys, keys).astype(np.intp)


def nonzero_cells(a: sp.csr_matrix) -> tuple[NDArray[Any], NDArray[Any]]:
    """``a.nonzero()``, the same arrays in the same order, from ``a``'s own arrays (scipy's
    builds a COO copy of the matrix first)."""
    nonzero = a.data != 0
    rows = np.repeat(np.arange(a.shape[0], dtype=a.indices.dtype), np.diff(a.indptr))
    return rows[nonzero], a.indices[nonzero]


def positive_union(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
    """``(a > 0) + (b > 0)`` with every stored value 1.0, as float32 CSR with sorted indices:
    the cells positive in either matrix.

    From the entries' keys in one pass: scipy's comparisons, casts and sum built five
    matrices, about a twentieth of a live list's time at 10^5 items.
    """
    n, m = a.shape
    keys = np.unique(np.concatenate([stats_keys(a, m)[a.data > 0], stats_keys(b, m)[b.data > 0]]))
    indptr = np.searchsorted(keys, np.arange(n + 1, dtype=np.int64) * m)
    return sp.csr_matrix((np.ones(len(keys), dtype=np.float32), keys % m, indptr), shape=(n, m))


def top_sparse_rows(m: sp.csr_matrix, k: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Row and column of the ``k`` largest stored entries of each row (all if fewer)."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = order_within_rows(rows, m.data)
    start = m.indptr[:-1][rows[order]]
    within = np.arange(len(order)) - start
    keep = order[within < k]
    return rows[keep].astype(np.intp), m.indices[keep].astype(np.intp)


def merge_keys(
    m: int,
    *parts: tuple[NDArray[np.integer], NDArray[np.integer], int],
    keys: NDArray[np.int64] | None = None,
    bits: NDArray[np.uint8] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    """Union of ``(rows, items, flag bit)`` parts (plus merged ``keys``/``bits``) as sorted
    ``row * m + item`` keys with the OR of the bits of each pair (``np.nonzero`` order)."""
    all_keys = [np.empty(0, np.int64) if keys is None else keys]
    all_bits = [np.empty(0, np.uint8) if bits is None else bits]
    for r, c, bit in parts:
        all_keys.append(np.asarray(r, dtype=np.int64) * m + np.asarray(c, dtype=np.int64))
        all_bits.append(np.full(len(r), bit, dtype=np.uint8))
    k = np.concatenate(all_keys)
    b = np.concatenate(all_bits)
    if len(k) == 0:
        return k, b
    order = np.argsort(k, kind="stable")
    k, b = k[order], b[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    return k[starts], np.bitwise_or.reduceat(b, starts).astype(np.uint8)


def values_at_keys(
    m: int,
    rows: NDArray[np.integer],
    items: NDArray[np.integer],
    values: NDArray[np.int32],
    keys: NDArray[np.int64],
    default: int,
) -> NDArray[np.int32]:
    """``values`` at the pairs ``keys`` (``row * m + item``), ``default`` where absent."""
    out = np.full(len(keys), default, dtype=np.int32)
    if len(rows) == 0 or len(keys) == 0:
        return out
    have = np.asarray(rows, dtype=np.int64) * m + np.asarray(items, dtype=np.int64)
    order = np.argsort(have, kind="stable")
    have, vals = have[order], values[order]
    pos = np.clip(np.searchsorted(have, keys), 0, len(have) - 1)
    hit = have[pos] == keys
    out[hit] = vals[pos[hit]]
    return out


def few_rows_product(basis: sp.csr_matrix, mat: sp.csr_matrix) -> sp.csr_matrix:
    """``basis @ mat`` as float32, through the columns the product can reach only.

    The rows of ``mat`` that ``basis`` touches and their columns are renumbered in order,
    multiplied by scipy, and the columns mapped back: every sum adds the same products in the
    same order as the whole product, so the values are the same to the bit, while no array is
    as long as the catalogue. Rows come back in no column order, as a product's do.
    """
    n, m = basis.shape[0], mat.shape[1]
    touched = np.unique(basis.indices)
    sub_data, sub_indices, sub_indptr = csr_row_arrays(mat, touched)
    cols = np.unique(sub_indices)
    local_basis = sp.csr_matrix(
        (basis.data, np.searchsorted(touched, basis.indices), basis.indptr),
        shape=(n, len(touched)),
    )
    local_sub = sp.csr_matrix(
        (sub_data, np.searchsorted(cols, sub_indices), sub_indptr), shape=(len(touched), len(cols))
    )
    out = sp.csr_matrix(local_basis @ local_sub, dtype=np.float32)
    return sp.csr_matrix((out.data, cols[out.indices], out.indptr), shape=(n, m))
