"""csr_rows and csr_row_arrays: scipy's fancy row indexing by slicing the CSR arrays."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.models.base import csr_row_arrays, csr_rows


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
