"""The search for a listed item's "often bought with" partner (:mod:`recsys.models.explained`)
against its definition."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.models.explained import (
    OwnedItems,
    _best_by_lookup,
    _best_by_scan,
    best_owned_neighbour,
)


def _owned_from_mask(mask: np.ndarray) -> OwnedItems:
    """The owned items of a dense ``n × m`` mask."""
    n, m = mask.shape
    return OwnedItems(np.flatnonzero(mask).astype(np.int64), n, m)


@settings(max_examples=120, deadline=None)
@given(
    n=st.integers(1, 6),
    m=st.integers(1, 30),
    density=st.floats(0.0, 1.0),
    owned_share=st.floats(0.0, 1.0),
    levels=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_partner_kernels_pick_the_strongest_owned_neighbour(
    n: int, m: int, density: float, owned_share: float, levels: int, seed: int
) -> None:
    """The law of a partner: among the item's stored neighbours (explicit zeros included)
    that the user owns, other than the item itself, the largest weight, ties to the lowest
    index, -1 for none. Scanning the item's row and looking the owned items up agree with it
    whichever side is shorter, and so does the dispatcher."""
    rng = np.random.default_rng(seed)
    stored = rng.random((m, m)) < density
    r, c = np.nonzero(stored)  # row-major: sorted indices, no duplicates
    weights = (rng.integers(0, levels + 1, size=len(r)) / levels).astype(np.float32)
    by_item = sp.csr_matrix((weights, (r, c)), shape=(m, m))
    assert by_item.nnz == len(r) and by_item.has_canonical_format
    owned = rng.random((n, m)) < owned_share
    ptr = np.r_[0, np.cumsum(owned.sum(axis=1))].astype(np.intp)
    idx = np.nonzero(owned)[1].astype(np.int64)
    n_pairs = int(rng.integers(0, 3 * n + 1))
    rows = rng.integers(0, n, size=n_pairs).astype(np.intp)
    items = rng.integers(0, m, size=n_pairs).astype(np.intp)
    expected = []
    for row, item in zip(rows.tolist(), items.tolist(), strict=True):
        best, best_w = -1, -np.inf
        lo, hi = by_item.indptr[item], by_item.indptr[item + 1]
        for j, w in zip(by_item.indices[lo:hi].tolist(), by_item.data[lo:hi].tolist(), strict=True):
            if j != item and owned[row, j] and w > best_w:
                best, best_w = j, w
        expected.append(best)
    dense = _owned_from_mask(owned)
    assert dense.mask is not None
    # the same items without the dense mask (as for a batch over a large catalogue)
    keyed = _owned_from_mask(owned)
    keyed.mask = None
    assert keyed.ptr.tolist() == ptr.tolist() and keyed.idx.tolist() == idx.tolist()
    for each in (dense, keyed):
        assert _best_by_scan(by_item, each, rows, items).tolist() == expected
        assert best_owned_neighbour(by_item, each, rows, items).tolist() == expected
    assert _best_by_lookup(by_item, ptr, idx, rows, items).tolist() == expected
