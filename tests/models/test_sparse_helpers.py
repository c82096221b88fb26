"""The live path's sparse helpers against the scipy expressions they replace: csr_rows and
csr_row_arrays (fancy row indexing), the hybrid's nonzero cells and positive union."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.models.base import csr_row_arrays, csr_rows
from recsys.models.pair_keys import nonzero_cells, positive_union


@st.composite
def _matrix_and_rows(draw: st.DrawFn) -> tuple[sp.csr_matrix, list[int]]:
    n = draw(st.integers(1, 8))
    m = draw(st.integers(1, 8))
    cells = draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, m - 1), st.integers(-3, 3)))
    )
    rows, cols, vals = (list(c) for c in zip(*cells, strict=True)) if cells else ([], [], [])
    matrix = sp.csr_matrix((np.array(vals, np.float32), (rows, cols)), shape=(n, m))
    if draw(st.booleans()):
        # stored in an arbitrary order within rows, with explicit zeros: kept as stored
        perm = np.array(draw(st.permutations(range(matrix.nnz))), dtype=np.intp)
        for r in range(n):
            lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
            seg = perm[(perm >= lo) & (perm < hi)]
            matrix.indices[lo:hi] = matrix.indices[seg]
            matrix.data[lo:hi] = matrix.data[seg]
        matrix.has_sorted_indices = False
    return matrix, draw(st.lists(st.integers(0, n - 1), max_size=10))


@settings(max_examples=200, deadline=None)
@given(_matrix_and_rows())
def test_rows_equal_scipys_fancy_indexing(case: tuple[sp.csr_matrix, list[int]]) -> None:
    matrix, rows = case
    want = sp.csr_matrix(matrix[np.array(rows, dtype=np.intp)])
    data, indices, indptr = csr_row_arrays(matrix, rows)
    got = csr_rows(matrix, rows)
    for d, i, p in ((data, indices, indptr), (got.data, got.indices, got.indptr)):
        # the same entries in the same stored order, explicit zeros included
        assert np.array_equal(p, want.indptr)
        assert np.array_equal(i, want.indices)
        assert np.array_equal(d, want.data) and d.dtype == matrix.dtype
    assert got.shape == (len(rows), matrix.shape[1])


def test_a_gathered_matrix_is_a_copy() -> None:
    matrix = sp.csr_matrix(np.array([[0, 2, 0], [1, 0, 3]], dtype=np.float32))
    before = matrix.copy()
    for rows in ([1], [1, 0]):
        got = csr_rows(matrix, rows)
        got.data[:] = 9.0  # scipy's in-place methods write to a matrix's arrays
        got.indices[:] = 0
        assert (matrix != before).nnz == 0
        assert np.array_equal(matrix.indices, before.indices)


@pytest.mark.parametrize("rows", [[2], [-1], [0, 2], [-1, 0]])
def test_rows_outside_the_matrix_are_refused(rows: list[int]) -> None:
    matrix = sp.csr_matrix(np.eye(2, dtype=np.float32))
    with pytest.raises(IndexError):
        csr_row_arrays(matrix, rows)


@settings(max_examples=200, deadline=None)
@given(_matrix_and_rows())
def test_nonzero_cells_equal_scipys_nonzero(case: tuple[sp.csr_matrix, list[int]]) -> None:
    matrix, _ = case
    rows, cols = nonzero_cells(matrix)
    want_rows, want_cols = matrix.nonzero()
    assert np.array_equal(rows, want_rows) and np.array_equal(cols, want_cols)


@settings(max_examples=200, deadline=None)
@given(_matrix_and_rows(), st.data())
def test_positive_union_equals_the_sum_of_comparisons(
    case: tuple[sp.csr_matrix, list[int]], data: st.DataObject
) -> None:
    a, _ = case
    n, m = a.shape
    seed = data.draw(st.integers(0, 2**32 - 1))
    b = sp.random(
        n, m, density=data.draw(st.floats(0, 1)), format="csr", dtype=np.float32, rng=seed
    )
    b.data -= 0.5  # some negative entries, which do not count
    want = sp.csr_matrix((a > 0).astype(np.float32) + (b > 0).astype(np.float32))
    want.data[:] = 1.0
    got = positive_union(a, b)
    assert got.dtype == np.float32 and got.shape == (n, m) and got.has_sorted_indices
    assert np.array_equal(got.indptr, want.indptr)
    assert np.array_equal(got.indices, want.indices)
    assert np.array_equal(got.data, want.data)
