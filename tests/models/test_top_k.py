"""Top-k selection: the dense ranker and the two sparse ones equal a plain reference.

The law: a row's list is its finite, not excluded scores (as ``float32``), largest first,
equal scores lower index first, cut at ``k`` and padded with ``-1`` / ``-inf``. Scores are
drawn from a few values so that ties, also across the cut, are common.
"""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.bench_eval_scoring import legacy_top_k
from recsys.models import base, kernels
from recsys.models.base import NO_ITEM, ranking_order, top_k, top_k_coo, top_k_of_order

VALUES = [np.nan, np.inf, -np.inf, -2.0, -0.0, 0.0, 0.5, 1.0, 3.0]


def reference(
    scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One row at a time, by sorting: the behaviour the fast versions must have."""
    scores = np.asarray(scores).astype(np.float32)
    n, m = scores.shape
    width = max(0, min(k, m))
    idx = np.full((n, width), NO_ITEM, dtype=np.intp)
    val = np.full((n, width), -np.inf, dtype=np.float32)
    blocked = np.zeros((n, m), bool)
    if exclude is not None:
        coo = sp.coo_matrix(exclude)
        blocked[coo.row, coo.col] = True  # every stored entry, a stored zero too
    for r in range(n):
        ok = [c for c in range(m) if np.isfinite(scores[r, c]) and not blocked[r, c]]
        ok.sort(key=lambda c: (-float(scores[r, c]), c))
        for j, c in enumerate(ok[:width]):
            idx[r, j], val[r, j] = c, scores[r, c]
    return idx, val


@st.composite
def cases(draw: st.DrawFn) -> tuple[np.ndarray, int, sp.csr_matrix | None]:
    n = draw(st.integers(0, 6))
    m = draw(st.integers(1, 12))
    picks = draw(st.lists(st.sampled_from(VALUES), min_size=n * m, max_size=n * m))
    scores = np.array(picks, dtype=np.float64).reshape(n, m)
    k = draw(st.integers(0, m + 2))
    if draw(st.booleans()):
        mask = np.array(draw(st.lists(st.booleans(), min_size=n * m, max_size=n * m)), bool)
        exclude = sp.csr_matrix(mask.reshape(n, m).astype(np.float32))
    else:
        exclude = None
    return scores, k, exclude


def assert_same(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    assert got[0].dtype == np.intp and got[1].dtype == np.float32
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@settings(max_examples=300, deadline=None)
@given(cases(), st.booleans())
def test_top_k_equals_the_reference(
    case: tuple[np.ndarray, int, sp.csr_matrix | None], row_by_row: bool
) -> None:
    scores, k, exclude = case
    # one row per chunk, or every row in one chunk: the chunking must not show
    chunk = 1 if row_by_row else base.TOP_K_CHUNK_BYTES
    with patch.object(base, "TOP_K_CHUNK_BYTES", chunk):
        got = top_k(scores, k, exclude=exclude)
    assert_same(got, reference(scores, k, exclude))


@settings(max_examples=300, deadline=None)
@given(cases())
def test_top_k_coo_equals_the_dense_top_k(
    case: tuple[np.ndarray, int, sp.csr_matrix | None],
) -> None:
    scores, k, exclude = case
    rows, cols = np.nonzero(~np.isnan(scores))
    perm = np.random.default_rng(len(rows)).permutation(len(rows))
    # listed in (row, column) order, as a model's candidate pairs come, and shuffled: the
    # entries' order must not matter; with a lexsort and with the packed sort (large batches)
    for packed_min in (kernels.PACKED_SORT_MIN, 0):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kernels, "PACKED_SORT_MIN", packed_min)
            for r, c in ((rows, cols), (rows[perm], cols[perm])):
                got = top_k_coo(r, c, scores[r, c], scores.shape, k, exclude=exclude)
                assert_same(got, reference(scores, k, exclude))


@settings(max_examples=300, deadline=None)
@given(cases())
def test_top_k_of_order_equals_the_dense_top_k_of_the_tiled_row(
    case: tuple[np.ndarray, int, sp.csr_matrix | None],
) -> None:
    scores, k, exclude = case
    if scores.shape[0] == 0:
        return
    row = scores[0].astype(np.float32)
    tiled = np.tile(row, (scores.shape[0], 1))
    got = top_k_of_order(ranking_order(row), row, scores.shape[0], k, exclude=exclude)
    assert_same(got, reference(tiled, k, exclude))


def test_without_ties_the_lists_are_the_previous_implementations(
    rng: np.random.Generator,
) -> None:
    # distinct values in each row: without ties the order is defined for both
    scores = np.array([rng.permutation(2_000) for _ in range(300)], dtype=np.float32) / 7
    scores[rng.random(scores.shape) < 0.3] = np.nan
    exclude = sp.random(300, 2_000, density=0.05, format="csr", random_state=1)
    for k in (1, 10, 100, 2_000):
        for ex in (None, exclude):
            assert_same(top_k(scores, k, exclude=ex), legacy_top_k(scores, k, exclude=ex))


def test_equal_scores_go_to_the_lower_index_across_the_cut() -> None:
    scores = np.array([[1.0, 5.0, 1.0, 1.0, 7.0, 1.0]], dtype=np.float32)
    items, values = top_k(scores, 4)
    assert items.tolist() == [[4, 1, 0, 2]]
    assert values.tolist() == [[7.0, 5.0, 1.0, 1.0]]


def test_the_callers_scores_are_not_changed(rng: np.random.Generator) -> None:
    scores = rng.standard_normal((5, 50)).astype(np.float32)
    scores[0, :3] = np.nan
    before = scores.copy()
    top_k(scores, 5, exclude=sp.csr_matrix(np.eye(5, 50, dtype=np.float32)))
    np.testing.assert_array_equal(scores, before)
