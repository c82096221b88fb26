"""EASE: the closed form is the constrained ridge solution, and big catalogues are refused."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.interactions import TrainingData
from recsys.data.vocab import Vocabulary
from recsys.errors import ModelError, ModelTooLargeError
from recsys.models.ease import EASEModel


def test_each_column_is_the_ridge_regression_on_the_other_items(
    tiny_data: TrainingData, rng: np.random.Generator
) -> None:
    x = sp.csr_matrix((rng.random((30, 8)) < 0.4).astype(np.float32))
    data = dataclasses.replace(tiny_data, interactions=x)
    lam = 3.0
    b = EASEModel(regularization=lam).fit(data).weights_.astype(np.float64)
    dense = x.toarray().astype(np.float64)
    assert np.allclose(np.diag(b), 0.0)
    for j in range(8):
        others = [i for i in range(8) if i != j]
        xo = dense[:, others]
        ridge = np.linalg.solve(xo.T @ xo + lam * np.eye(7), xo.T @ dense[:, j])
        np.testing.assert_allclose(b[others, j], ridge, rtol=1e-4, atol=1e-5)


def test_refuses_catalogues_above_max_items(tiny_data: TrainingData) -> None:
    with pytest.raises(ModelTooLargeError, match=r"8 items .*max_items=5"):
        EASEModel(max_items=5).fit(tiny_data)


def test_max_items_is_checked_before_any_allocation(tiny_data: TrainingData) -> None:
    huge = dataclasses.replace(
        tiny_data,
        items=Vocabulary(f"i{k}" for k in range(30_000)),
        interactions=sp.csr_matrix((tiny_data.n_users, 30_000), dtype=np.float32),
    )
    with pytest.raises(ModelTooLargeError, match="30000 items"):
        EASEModel().fit(huge)


def test_binary_ignores_weights(tiny_data: TrainingData) -> None:
    scaled = dataclasses.replace(tiny_data, interactions=tiny_data.interactions * 5.0)
    a = EASEModel(regularization=2.0).fit(tiny_data)
    b = EASEModel(regularization=2.0).fit(scaled)
    np.testing.assert_allclose(a.weights_, b.weights_)
    c = EASEModel(regularization=2.0, binary=False).fit(scaled)
    assert not np.allclose(a.weights_, c.weights_)


# -- warm start: a low-rank correction of yesterday's solution --------------------------------


def _shop(rng: np.random.Generator, users: int, items: int) -> sp.csr_matrix:
    """Customers who each bought a few items, popular ones more often."""
    weights = 1.0 / np.arange(1, items + 1) ** 0.7
    rows = []
    for _ in range(users):
        size = int(rng.integers(2, 12))
        rows.append(rng.choice(items, size=size, replace=False, p=weights / weights.sum()))
    indptr = np.cumsum([0] + [len(r) for r in rows])
    data = np.ones(indptr[-1], dtype=np.float32)
    return sp.csr_matrix((data, np.concatenate(rows), indptr), shape=(users, items))


def _tomorrow(
    rng: np.random.Generator, x: sp.csr_matrix, changed: int, new_users: int, new_items: int
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Yesterday's matrix with ``changed`` customers buying more (some returned an item: a
    row may lose entries too), ``new_users`` new rows and ``new_items`` items slotted in
    between the old ones (ids sorted); the new matrix and each new column's old index."""
    n = x.shape[1] + new_items
    slots = np.sort(rng.choice(n, size=new_items, replace=False))
    old_of = np.full(n, -1, dtype=np.intp)
    old_of[np.setdiff1d(np.arange(n), slots)] = np.arange(x.shape[1])
    new_of = np.flatnonzero(old_of >= 0)
    dense = np.zeros((x.shape[0] + new_users, n), dtype=np.float32)
    dense[: x.shape[0], new_of] = x.toarray()
    for u in rng.choice(x.shape[0], size=changed, replace=False):
        dense[u, rng.choice(n, size=3, replace=False)] = 1.0
        bought = np.flatnonzero(dense[u])
        dense[u, bought[0]] = 0.0  # one item returned
    for u in range(x.shape[0], dense.shape[0]):
        dense[u, rng.choice(n, size=4, replace=False)] = 1.0
    if new_items:
        dense[rng.choice(dense.shape[0], size=3), slots[0]] = 1.0  # a new item sells at once
    return sp.csr_matrix(dense), old_of


@pytest.mark.parametrize(("changed", "new_users", "new_items"), [(5, 0, 0), (8, 3, 2), (0, 0, 0)])
def test_a_warm_update_equals_solving_again(
    rng: np.random.Generator, changed: int, new_users: int, new_items: int
) -> None:
    from recsys.models.kernels import ease_input_rows, ease_solution, ease_update

    before = _shop(rng, 400, 150)
    after, old_of = _tomorrow(rng, before, changed, new_users, new_items)
    yesterday = ease_solution(before, regularization=20.0, binary=True)
    full = ease_solution(after, regularization=20.0, binary=True)
    updated = ease_update(
        after,
        regularization=20.0,
        binary=True,
        previous=yesterday,
        previous_items=old_of,
        previous_rows=ease_input_rows(before, binary=True),
    )
    assert not isinstance(updated, str), updated
    b, diagonal, (came, went) = updated
    # a changed customer's row comes in as it is and goes out as it was, a new one comes in;
    # up to 3 customers bought the new items too
    assert came - went == new_users
    assert changed <= went <= changed + (3 if new_items else 0)
    assert b.dtype == np.float32 and b.shape == full[0].shape
    scale = np.abs(full[0]).max()
    assert np.abs(b - full[0]).max() <= 1e-4 * scale
    np.testing.assert_allclose(diagonal, full[1], rtol=1e-4)
    assert (np.diag(b) == 0).all()
    # and yesterday's weights were not today's: the update did change something
    if changed + new_users:
        assert np.abs(yesterday[0] - full[0][np.ix_(old_of >= 0, old_of >= 0)]).max() > 1e-3 * scale


def _row_multiset(x: sp.csr_matrix, rows: np.ndarray) -> Counter[tuple[int, ...]]:
    return Counter(tuple(x[int(r)].indices.tolist()) for r in rows)


def test_a_warm_update_finds_the_changed_rows_whatever_the_order_or_the_reason(
    rng: np.random.Generator,
) -> None:
    """Rows are matched as multisets: customers in another order, an erased customer, equal
    rows (one more of them today), empty rows and a changed row leave over exactly the rows
    of one multiset that the other lacks, and the Gram matrices differ by those rows."""
    from recsys.models.kernels import _changed_rows, ease_input_rows, ease_solution, ease_update

    before = _shop(rng, 300, 90)
    dense = before.toarray()
    dense[[10, 11]] = dense[12]  # three equal rows yesterday
    today = dense[rng.permutation(len(dense))]  # the rows in another order
    today = np.vstack([today, dense[12], np.zeros((2, 90))])  # a fourth equal row, empty rows
    today = np.delete(today, np.flatnonzero((today == dense[40]).all(axis=1))[0], axis=0)
    changed = np.flatnonzero((today == dense[7]).all(axis=1))[0]
    today[changed, [0, 1]] = 1.0 - today[changed, [0, 1]]  # bought one item, returned another
    x0 = ease_input_rows(sp.csr_matrix(dense.astype(np.float32)), binary=True)
    x = ease_input_rows(sp.csr_matrix(today.astype(np.float32)), binary=True)
    added, gone = _changed_rows(x0, x)
    everything_old = _row_multiset(x0, np.arange(x0.shape[0]))
    everything_new = _row_multiset(x, np.arange(x.shape[0]))
    empty: tuple[int, ...] = ()
    assert _row_multiset(x, added) == everything_new - everything_old - Counter({empty: 2})
    assert _row_multiset(x0, gone) == everything_old - everything_new
    assert 3 <= len(added) + len(gone) <= 4  # row 40 and row 7 as it was; 7 now and a 12
    gram = (x.T @ x).toarray() - (x0.T @ x0).toarray()
    u_plus, u_minus = x[added].toarray(), x0[gone].toarray()
    np.testing.assert_allclose(gram, u_plus.T @ u_plus - u_minus.T @ u_minus)
    updated = ease_update(
        sp.csr_matrix(today),
        regularization=20.0,
        binary=True,
        previous=ease_solution(sp.csr_matrix(dense), regularization=20.0, binary=True),
        previous_items=np.arange(90),
        previous_rows=x0,
    )
    assert not isinstance(updated, str), updated
    full = ease_solution(sp.csr_matrix(today), regularization=20.0, binary=True)
    assert np.abs(updated[0] - full[0]).max() <= 1e-4 * np.abs(full[0]).max()


def test_a_warm_update_from_the_wrong_rows_is_refused_and_solved_in_full(
    rng: np.random.Generator,
) -> None:
    """Given rows that are not those yesterday's solution was solved from, the correction
    does not invert today's matrix: its check refuses it, and the solve from scratch
    answers."""
    from recsys.models.kernels import (
        EaseStart,
        ease_input_rows,
        ease_solution,
        ease_solve_from,
        ease_update,
    )

    before = _shop(rng, 400, 150)
    after, old_of = _tomorrow(rng, before, 10, 0, 0)
    yesterday = ease_solution(before, regularization=20.0, binary=True)
    kwargs = dict(regularization=20.0, binary=True, previous=yesterday, previous_items=old_of)
    # yesterday's rows with 5 customers' rows other than they were
    wrong = ease_input_rows(_tomorrow(rng, before, 5, 0, 0)[0], binary=True)
    assert "residual" in str(ease_update(after, previous_rows=wrong, **kwargs))  # type: ignore[arg-type]
    start = EaseStart(*yesterday, old_of, rows=wrong)
    b, _, note = ease_solve_from(after, regularization=20.0, binary=True, start=start)
    assert note is not None and note.startswith("solved in full, not updated: its residual")
    full = ease_solution(after, regularization=20.0, binary=True)
    np.testing.assert_array_equal(b, full[0])
    # an item dropped since is not a low-rank change; nor are more changed rows than half
    # the items
    rows = ease_input_rows(before, binary=True)
    gone = old_of.copy()
    gone[gone == 3] = -1
    assert ease_update(after, previous_rows=rows, **{**kwargs, "previous_items": gone}) == (  # type: ignore[arg-type]
        "items were dropped since then"
    )
    many, _ = _tomorrow(rng, before, 100, 0, 0)
    assert "too many" in str(ease_update(many, previous_rows=rows, **kwargs))  # type: ignore[arg-type]


def test_an_ease_model_warm_starts_from_a_saved_version(
    tiny_data: TrainingData, rng: np.random.Generator, tmp_path
) -> None:
    before = _shop(rng, 400, 150)
    after, old_of = _tomorrow(rng, before, 4, 1, 1)
    vocab = Vocabulary(f"u{k:04d}" for k in range(after.shape[0]))

    def data(x: sp.csr_matrix) -> TrainingData:
        items = Vocabulary(f"i{k:04d}" for k in range(x.shape[1]))
        users = Vocabulary(vocab.ids[: x.shape[0]])
        return dataclasses.replace(tiny_data, users=users, items=items, interactions=x)

    EASEModel(regularization=20.0).fit(data(before)).save(tmp_path / "ease")
    previous = EASEModel.load(tmp_path / "ease")
    assert previous.diagonal_ is not None
    assert previous.rows_ is not None
    np.testing.assert_array_equal(previous.rows_.toarray(), (before.toarray() > 0))
    warm = EASEModel(regularization=20.0).warm_start(previous, old_of)
    warm.fit(data(after))
    # the rows that changed: 4 customers' and those who bought the new item, and the newcomer
    went = int((after[: before.shape[0]][:, old_of >= 0] != before).sum(axis=1).astype(bool).sum())
    went += int(after[: before.shape[0]][:, old_of < 0].getnnz(axis=1).astype(bool).sum())
    assert warm.warm_note_ == f"corrected by a low-rank update ({went + 1} rows in, {went} out)"
    cold = EASEModel(regularization=20.0).fit(data(after))
    assert np.abs(warm.weights_ - cold.weights_).max() <= 1e-4 * np.abs(cold.weights_).max()
    # a version written before diag(P) or its rows were kept cannot start a warm fit
    previous.diagonal_ = None
    with pytest.raises(ModelError, match="diag"):
        EASEModel(regularization=20.0).warm_start(previous, old_of)
    older = EASEModel.load(tmp_path / "ease")
    older.rows_ = None
    with pytest.raises(ModelError, match="rows"):
        EASEModel(regularization=20.0).warm_start(older, old_of)
    with pytest.raises(ModelError, match="regularization"):
        EASEModel(regularization=5.0).warm_start(EASEModel.load(tmp_path / "ease"), old_of)


@settings(max_examples=80, deadline=None)
@given(
    old=st.lists(st.frozensets(st.integers(0, 5), max_size=4), max_size=12),
    new=st.lists(st.frozensets(st.integers(0, 5), max_size=4), max_size=12),
)
def test_the_changed_rows_are_the_multiset_difference(
    old: list[frozenset[int]], new: list[frozenset[int]]
) -> None:
    """Whatever two sets of rows (repeats, empty rows, any order): the rows left over are
    each side's rows less the other's, as multisets, so the Gram matrices differ by them."""
    from recsys.models.kernels import _changed_rows

    def matrix(rows: list[frozenset[int]]) -> sp.csr_matrix:
        dense = np.zeros((len(rows), 6), dtype=np.float32)
        for r, items in enumerate(rows):
            dense[r, sorted(items)] = 1.0
        return sp.csr_matrix(dense)

    x0, x = matrix(old), matrix(new)
    added, gone = _changed_rows(x0, x)
    empty: frozenset[int] = frozenset()
    assert Counter(new[r] for r in added) == Counter(new) - Counter(old) - Counter(
        {empty: len(new)}
    )
    assert Counter(old[r] for r in gone) == Counter(old) - Counter(new) - Counter({empty: len(old)})
    u_plus, u_minus = x[added].toarray(), x0[gone].toarray()
    np.testing.assert_array_equal(
        (x.T @ x).toarray() - (x0.T @ x0).toarray(), u_plus.T @ u_plus - u_minus.T @ u_minus
    )


def test_a_warm_update_follows_items_that_moved(rng: np.random.Generator) -> None:
    """Today's columns in another order than yesterday's (ids that do not sort as before):
    yesterday's weights and rows are carried to today's columns before the correction."""
    from recsys.models.kernels import ease_input_rows, ease_solution, ease_update

    before = _shop(rng, 300, 80)
    after, _ = _tomorrow(rng, before, 6, 2, 0)
    moved = rng.permutation(80)  # today's column j is yesterday's column moved[j]
    today = sp.csr_matrix(after[:, moved])
    updated = ease_update(
        today,
        regularization=20.0,
        binary=True,
        previous=ease_solution(before, regularization=20.0, binary=True),
        previous_items=moved,
        previous_rows=ease_input_rows(before, binary=True),
    )
    assert not isinstance(updated, str), updated
    full = ease_solution(today, regularization=20.0, binary=True)
    assert np.abs(updated[0] - full[0]).max() <= 1e-4 * np.abs(full[0]).max()
    assert updated[2] == (8, 6)


def test_weights_written_in_fortran_order_load_in_c_order(
    tiny_data: TrainingData, tmp_path: Path
) -> None:
    """An earlier release saved the weights as the Cholesky inverse left them, in Fortran
    order; scoring a sparse row against them would copy them whole on every call."""
    model = EASEModel(regularization=20.0).fit(tiny_data)
    assert model.weights_.flags.c_contiguous
    x = sp.csr_matrix(tiny_data.interactions[:3])
    expected = model.score(np.arange(3), x)
    model.weights_ = np.asfortranarray(model.weights_)
    model.save(tmp_path / "ease")
    loaded = EASEModel.load(tmp_path / "ease")
    assert loaded.weights_.flags.c_contiguous
    np.testing.assert_array_equal(loaded.weights_, model.weights_)
    np.testing.assert_array_equal(loaded.score(np.arange(3), x), expected)
