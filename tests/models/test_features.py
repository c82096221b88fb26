"""Helpers of the hybrid's generators: the in-place mirror behind the Cholesky inverse."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.models.features import _mirror_upper


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), block=st.integers(1, 17), fortran=st.booleans())
def test_mirror_upper_equals_triu_plus_its_transpose(n: int, block: int, fortran: bool) -> None:
    a = np.random.default_rng(n * 31 + block).normal(size=(n, n))
    if fortran:  # dpotri hands back a Fortran-ordered array
        a = np.asfortranarray(a)
    expected = np.triu(a) + np.triu(a, 1).T
    got = _mirror_upper(a.copy(order="A"), block=block)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, got.T)
