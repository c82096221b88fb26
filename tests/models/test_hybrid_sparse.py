"""The hybrid's sparse candidate path answers exactly as the dense one, and serves big catalogues.

The sparse path (used above :data:`~recsys.models.features.SPARSE_ABOVE_ITEMS` items) must
return the same pairs, in the same order, with the same features bit for bit, including the
ranks of tied scores; these tests force it on the small synthetic shop of ``test_hybrid`` and
compare it with the dense path.
"""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.interactions import InteractionConfig, TrainingData, build_training_data
from recsys.data.schema import EventFrame
from recsys.data.synthetic import generate_shop
from recsys.models import features, generator_scores, pair_keys, top_entries
from recsys.models.features import (
    MICROS_PER_DAY,
    EventArrays,
    GeneratorSettings,
    GeneratorState,
)
from recsys.models.hybrid import HybridModel
from tests.models.conftest import AS_OF
from tests.models.test_hybrid import synthetic_rows

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def shop() -> TrainingData:
    return build_training_data(
        EventFrame.from_rows(synthetic_rows()), InteractionConfig(), as_of=AS_OF
    )


def build_state(shop: TrainingData, s: GeneratorSettings) -> GeneratorState:
    ev = EventArrays.from_training_data(shop)
    return GeneratorState.build(ev, shop.n_users, shop.n_items, AS_OF / MICROS_PER_DAY, s)


def both_paths(
    monkeypatch: pytest.MonkeyPatch,
    state: GeneratorState,
    users: np.ndarray,
    hist: sp.csr_matrix,
    s: GeneratorSettings,
) -> tuple[Pairs, Pairs]:
    now = AS_OF / MICROS_PER_DAY + 0.5
    with monkeypatch.context() as mp:
        mp.setattr(features, "SPARSE_ABOVE_ITEMS", 10**12)
        dense = state.pairs(users, hist, now, s)
    with monkeypatch.context() as mp:
        mp.setattr(features, "SPARSE_ABOVE_ITEMS", 0)
        sparse = state.pairs(users, hist, now, s)
    return dense, sparse


def assert_same(dense: Pairs, sparse: Pairs) -> None:
    names = ("rows", "items", "features", "sources")
    for name, d, s in zip(names, dense, sparse, strict=True):
        assert d.dtype == s.dtype, name
        assert d.shape == s.shape, name
        if name == "features":
            assert np.array_equal(np.isnan(d), np.isnan(s))
            # bit for bit: ranks of tied scores included
            assert np.array_equal(d.view(np.uint32), s.view(np.uint32))
        else:
            assert np.array_equal(d, s), name


def mixed_batch(shop: TrainingData, rng: np.random.Generator) -> tuple[np.ndarray, sp.csr_matrix]:
    """Known users (some with live events), unknown users with and without a history."""
    n, m = shop.n_users, shop.n_items
    known = rng.choice(n, size=min(n, 40), replace=False)
    users = np.concatenate([known, [-1, -1, -1, n + 5]]).astype(np.intp)
    hist = sp.lil_matrix(
        sp.csr_matrix(shop.interactions)[np.where(users < n, np.maximum(users, 0), 0)]
    )
    hist[len(known) :] = 0  # unknown users: only what the request sends
    for row in rng.choice(len(known), size=8, replace=False):  # live events on top
        hist[row, rng.integers(m)] = 0.3
    hist[len(known), rng.choice(m, size=3, replace=False)] = 1.0  # an unknown user with events
    hist[len(known) + 1, rng.integers(m)] = 0.1  # one view only
    for row in rng.choice(len(known), size=3, replace=False):
        hist[row] = 0  # known users whose request sends no history
    return users, sp.csr_matrix(hist, dtype=np.float32)


SETTINGS = [
    pytest.param(GeneratorSettings(factors=8), id="defaults"),
    pytest.param(GeneratorSettings(factors=8, max_ease_items=0), id="no-ease"),
    # EASE on the 30 most bought of the shop's 70 items
    pytest.param(
        GeneratorSettings(factors=8, max_ease_items=30, ease_most_bought=True), id="most-bought"
    ),
    # short lists: ties at the cut; lists longer than the catalogue: every item ranked
    pytest.param(GeneratorSettings(factors=8, n_als=3, n_ease=2, n_cooc=2), id="short"),
    pytest.param(GeneratorSettings(factors=8, n_als=500, n_ease=500, n_cooc=500), id="long"),
]


@pytest.mark.parametrize("s", SETTINGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_path_equals_dense_path(
    shop: TrainingData, monkeypatch: pytest.MonkeyPatch, s: GeneratorSettings, seed: int
) -> None:
    state = build_state(shop, s)
    assert (state.ease is None) == (s.max_ease_items == 0)
    users, hist = mixed_batch(shop, np.random.default_rng(seed))
    dense, sparse = both_paths(monkeypatch, state, users, hist, s)
    assert len(dense[0]) > 0
    assert_same(dense, sparse)


def test_equal_across_user_blocks_and_empty_batches(
    shop: TrainingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = GeneratorSettings(factors=8, n_cooc=4)
    state = build_state(shop, s)
    users, hist = mixed_batch(shop, np.random.default_rng(5))
    # blocks of 3 users for ALS, one row at a time for the top-k passes: both paths
    monkeypatch.setattr(generator_scores, "ALS_BLOCK_BYTES", 3 * 4 * shop.n_items)
    monkeypatch.setattr(top_entries, "TOP_K_BYTES", 1)
    assert len(generator_scores.als_blocks(len(users), shop.n_items)) > 1
    assert_same(*both_paths(monkeypatch, state, users, hist, s))
    empty = sp.csr_matrix((0, shop.n_items), dtype=np.float32)
    dense, sparse = both_paths(monkeypatch, state, np.empty(0, np.intp), empty, s)
    assert len(dense[0]) == 0
    assert_same(dense, sparse)
    # nobody with any history: no candidates on either path
    nobody = np.array([-1, -1], dtype=np.intp)
    dense, sparse = both_paths(
        monkeypatch, state, nobody, sp.csr_matrix((2, shop.n_items), dtype=np.float32), s
    )
    assert len(dense[0]) == 0
    assert_same(dense, sparse)


def test_big_catalogue_recommends_and_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    n_items = 60_000
    assert n_items > features.SPARSE_ABOVE_ITEMS
    gen = generate_shop(400, n_items, 6_000, seed=3)
    data = build_training_data(gen.events, InteractionConfig(), catalog=gen.catalog)
    assert data.n_items == n_items

    def dense_forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the dense path ran on a big catalogue")

    monkeypatch.setattr(GeneratorState, "_dense_candidates", dense_forbidden)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = HybridModel(factors=8, max_iter=20).fit(data)
    assert model.state_.ease is None
    users = np.arange(data.n_users)
    hist = sp.csr_matrix(data.interactions)
    top, scores = model.recommend(users, hist, 10)
    reasons = model.explain(users[:20], hist[:20], 5)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert top.shape == (data.n_users, 10)
    assert np.all((top >= 0) & (top < n_items))
    assert np.all(np.isfinite(scores))
    assert all(len(r) == 5 for r in reasons)
    # a dense users × items float32 array for the 400 users alone would be 92 MiB
    assert grown_mib < 600


@pytest.mark.parametrize("dense_product", [True, False])
def test_both_paths_agree_whichever_product_scores_ease(
    shop: TrainingData, monkeypatch: pytest.MonkeyPatch, dense_product: bool
) -> None:
    # a BLAS product of every block, or scipy's sparse product of every block; several blocks
    monkeypatch.setattr(generator_scores, "EASE_DENSE_MIN_ROWS", 1 if dense_product else 10**9)
    monkeypatch.setattr(generator_scores, "EASE_DENSE_MIN_DENSITY", 0.0)
    monkeypatch.setattr(generator_scores, "ALS_BLOCK_BYTES", 3 * 4 * shop.n_items)
    s = GeneratorSettings(factors=8)
    state = build_state(shop, s)
    assert state.ease is not None
    users, hist = mixed_batch(shop, np.random.default_rng(3))
    dense, sparse = both_paths(monkeypatch, state, users, hist, s)
    assert len(dense[0]) > 0
    assert_same(dense, sparse)


@pytest.mark.parametrize("sparse_path", [False, True])
def test_the_ease_generator_proposes_each_users_n_ease_best_items(
    shop: TrainingData, monkeypatch: pytest.MonkeyPatch, sparse_path: bool
) -> None:
    # the depth of the EASE list is the setting that carries Online Retail's new items
    # (training/configs/default.toml): each user with a history gets exactly their n_ease
    # best EASE items, and a deeper list keeps the shallower one
    monkeypatch.setattr(features, "SPARSE_ABOVE_ITEMS", 0 if sparse_path else 10**12)
    users = np.arange(min(shop.n_users, 40), dtype=np.intp)
    hist = sp.csr_matrix((len(users), shop.n_items), dtype=np.float32)
    now = AS_OF / MICROS_PER_DAY + 0.5
    state = build_state(shop, GeneratorSettings(factors=8))
    assert state.ease is not None
    active = np.diff(state.stats[users].indptr) > 0
    assert active.sum() > 10
    ease_bit = 1 << features.GENERATORS.index("ease")
    rank_col = features.FEATURES.index("ease_rank")
    proposed = {}
    for depth in (5, 40):
        s = GeneratorSettings(factors=8, n_ease=depth)
        rows, items, feats, src = state.pairs(users, hist, now, s)
        from_ease = (src & ease_bit) > 0
        assert np.array_equal(from_ease, feats[:, rank_col] < depth)
        per_row = np.bincount(rows[from_ease], minlength=len(users))
        assert (per_row[active] == min(depth, shop.n_items)).all()
        assert (per_row[~active] == 0).all()
        proposed[depth] = set(zip(rows[from_ease].tolist(), items[from_ease].tolist(), strict=True))
    assert proposed[5] < proposed[40]


@pytest.mark.parametrize("sparse_path", [False, True])
def test_above_max_ease_items_ease_is_solved_on_the_most_bought_items(
    shop: TrainingData, monkeypatch: pytest.MonkeyPatch, sparse_path: bool, tmp_path: Path
) -> None:
    """With ``ease_most_bought`` a catalogue above ``max_ease_items`` gets the EASE of its
    most bought items: the kernel's solution on their columns, whose list only they enter;
    every other item has no EASE score, as in a state without EASE."""
    from recsys.models.kernels import ease_solution

    k = 30
    s = GeneratorSettings(factors=8, max_ease_items=k, ease_most_bought=True, n_ease=12)
    state = build_state(shop, s)
    assert build_state(shop, GeneratorSettings(factors=8, max_ease_items=k)).ease is None
    sub = state.ease_items
    assert state.ease is not None and sub is not None
    assert len(sub) == k and (np.diff(sub) > 0).all()
    # the items most customers have: none left out has more than one kept
    ev = EventArrays.from_training_data(shop)
    signal = features.collaborative_signal(ev, state.stats)
    customers = np.bincount(signal.indices, minlength=shop.n_items)
    out = np.setdiff1d(np.arange(shop.n_items), sub)
    assert customers[out].max() <= customers[sub].min()
    assert customers[out].max() < customers[sub].max()
    weights, _ = ease_solution(
        sp.csr_matrix(signal[:, sub]), regularization=s.ease_lambda, binary=True
    )
    np.testing.assert_array_equal(state.ease, weights)

    monkeypatch.setattr(features, "SPARSE_ABOVE_ITEMS", 0 if sparse_path else 10**12)
    users, hist = mixed_batch(shop, np.random.default_rng(4))
    now = AS_OF / MICROS_PER_DAY + 0.5
    rows, items, feats, src = state.pairs(users, hist, now, s)
    score = feats[:, features.FEATURES.index("ease_score")]
    rank = feats[:, features.FEATURES.index("ease_rank")]
    inside = np.isin(items, sub)
    assert inside.any() and (~inside).any()
    assert np.isnan(score[~inside]).all() and (rank[~inside] == s.n_ease).all()
    assert np.isfinite(score[inside]).all()
    from_ease = (src & (1 << features.GENERATORS.index("ease"))) > 0
    assert inside[from_ease].all()
    # each row's EASE list: its n_ease best items of the subset, by the product's scores
    basis = sp.csr_matrix(((csr_rows_of(state, users) > 0) + (hist > 0)) > 0, dtype=np.float32)
    scores = np.asarray(basis[:, sub] @ state.ease)
    at = scores[rows[inside], np.searchsorted(sub, items[inside])]
    np.testing.assert_allclose(score[inside], at, rtol=1e-5, atol=1e-6)
    for row in np.unique(rows[from_ease]):
        listed = np.sort(items[from_ease & (rows == row)])
        assert len(listed) == s.n_ease
        best = np.sort(scores[row])[::-1][s.n_ease - 1]
        assert (scores[row][np.searchsorted(sub, listed)] >= best - 1e-5).all()

    state.save(tmp_path / "state.npz")
    again = GeneratorState.load(tmp_path / "state.npz")
    assert again.ease_items is not None and np.array_equal(again.ease_items, sub)
    assert_same((rows, items, feats, src), again.pairs(users, hist, now, s))


def test_an_ease_written_in_fortran_order_loads_in_c_order(
    shop: TrainingData, tmp_path: Path
) -> None:
    """An earlier release saved the EASE generator as the Cholesky inverse left it, in
    Fortran order; scipy's product of a sparse row with it would copy it whole per call."""
    import dataclasses

    state = build_state(shop, GeneratorSettings(factors=8))
    assert state.ease is not None and state.ease.flags.c_contiguous
    dataclasses.replace(state, ease=np.asfortranarray(state.ease)).save(tmp_path / "s.npz")
    loaded = GeneratorState.load(tmp_path / "s.npz")
    assert loaded.ease is not None and loaded.ease.flags.c_contiguous
    np.testing.assert_array_equal(loaded.ease, state.ease)


def csr_rows_of(state: GeneratorState, users: np.ndarray) -> sp.csr_matrix:
    """The purchase stats of ``users`` (empty rows for unknown ones)."""
    known = (users >= 0) & (users < state.n_users)
    out = sp.lil_matrix((len(users), state.n_items), dtype=np.float64)
    for row in np.flatnonzero(known):
        out[row] = state.stats[users[row]]
    return sp.csr_matrix(out)


def test_ease_scores_are_the_product_of_the_rows_and_the_weights() -> None:
    rng = np.random.default_rng(0)
    m = 200
    ease = rng.normal(size=(m, m)).astype(np.float32)
    for n, density in ((1, 0.05), (300, 0.05), (300, 0.001)):
        block = sp.random(n, m, density=density, format="csr", random_state=1, dtype=np.float32)
        expected = block.toarray().astype(np.float64) @ ease.astype(np.float64)
        got = generator_scores.ease_scores(block, ease)
        assert got.dtype == np.float32 and got.shape == (n, m)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        dense = n >= generator_scores.EASE_DENSE_MIN_ROWS and (
            block.nnz >= generator_scores.EASE_DENSE_MIN_DENSITY * n * m
        )
        if not dense:  # scipy's product, as before: the same bits
            assert np.array_equal(got, np.asarray(block @ ease))
    blocks = sp.random(700, m, density=0.05, format="csr", random_state=2, dtype=np.float32)
    whole = generator_scores.ease_scores_blocks(blocks, ease, m)
    for start, stop in generator_scores.als_blocks(700, m):
        assert np.array_equal(
            whole[start:stop], generator_scores.ease_scores(blocks[start:stop], ease)
        )


# -- the ALS generator's candidates from an approximate index --------------------------------------


def index_pairs(
    monkeypatch: pytest.MonkeyPatch,
    state: GeneratorState,
    users: np.ndarray,
    hist: sp.csr_matrix,
    s: GeneratorSettings,
    index: object,
) -> tuple[Pairs, Pairs]:
    """The sparse path without and with ``index``."""
    now = AS_OF / MICROS_PER_DAY + 0.5
    with monkeypatch.context() as mp:
        mp.setattr(features, "SPARSE_ABOVE_ITEMS", 0)
        return state.pairs(users, hist, now, s), state.pairs(users, hist, now, s, index)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1])
def test_an_exact_index_gives_the_brute_force_candidates(
    shop: TrainingData, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """An index that finds the true top lists changes nothing but the scores' last bits."""
    from recsys.retrieval import ExactIndex

    s = GeneratorSettings(factors=8, n_als=5)
    state = build_state(shop, s)
    users, hist = mixed_batch(shop, np.random.default_rng(seed))
    calls: list[int] = []
    index = ExactIndex(state.item_factors)
    search = index.search

    def counted(
        queries: np.ndarray, k: int, keys: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(queries))
        return search(queries, k, keys)

    monkeypatch.setattr(index, "search", counted)
    brute, indexed = index_pairs(monkeypatch, state, users, hist, s, index)
    assert calls  # the ALS lists came from the index
    assert len(brute[0]) > 0
    for name, b, i in zip(
        ("rows", "items", "sources"), brute[:2] + brute[3:], indexed[:2] + indexed[3:], strict=True
    ):
        assert np.array_equal(b, i), name
    assert np.array_equal(np.isnan(brute[2]), np.isnan(indexed[2]))
    rank, score = features.FEATURES.index("als_rank"), features.FEATURES.index("als_score")
    others = [c for c in range(len(features.FEATURES)) if c != rank]
    np.testing.assert_allclose(indexed[2][:, others], brute[2][:, others], rtol=1e-5, atol=1e-6)
    # ranks agree but where two scores tie to the last bits, which either order may list first
    moved = np.flatnonzero(indexed[2][:, rank] != brute[2][:, rank])
    assert len(moved) <= 0.01 * len(brute[0])
    for p in moved:
        row = brute[0] == brute[0][p]
        tied = row & (brute[2][:, rank] == indexed[2][p, rank])
        assert np.isclose(brute[2][tied, score], brute[2][p, score], rtol=1e-5).all()


def test_an_index_missing_items_only_drops_als_candidates(
    shop: TrainingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the index does not return is not an ALS candidate; every other generator's
    candidates stay as they were."""
    from recsys.retrieval import ExactIndex

    s = GeneratorSettings(factors=8, n_als=5)
    state = build_state(shop, s)
    users, hist = mixed_batch(shop, np.random.default_rng(4))
    exact = ExactIndex(state.item_factors)

    class Blind(ExactIndex):
        """The exact answer without each list's best item (a recall below 1)."""

        def search(
            self, queries: np.ndarray, k: int, keys: np.ndarray | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
            idx, vals = exact.search(queries, k, keys)
            return idx[:, 1:], vals[:, 1:]

    brute, indexed = index_pairs(monkeypatch, state, users, hist, s, Blind(state.item_factors))
    als = np.uint8(1 << features.GENERATORS.index("als"))

    def by_pair(p: Pairs) -> dict[tuple[int, int], int]:
        return {(int(r), int(i)): int(src) for r, i, src in zip(p[0], p[1], p[3], strict=True)}

    b, i = by_pair(brute), by_pair(indexed)
    for pair in b.keys() | i.keys():
        assert b.get(pair, als) & ~als == i.get(pair, als) & ~als, pair
    for row in np.unique(brute[0]):
        listed_b = sum(1 for (r, _), src in b.items() if r == row and src & als)
        listed_i = sum(1 for (r, _), src in i.items() if r == row and src & als)
        assert listed_i == max(listed_b - 1, 0)


def test_use_index_checks_the_shape_and_a_refit_drops_it(shop: TrainingData) -> None:
    from recsys.errors import ModelError
    from recsys.retrieval import ExactIndex

    model = HybridModel(factors=8, max_iter=20).fit(shop)
    vectors = model.index_vectors()
    assert vectors is not None and vectors.shape == (shop.n_items, 8)
    with pytest.raises(ModelError, match="index of"):
        model.use_index(ExactIndex(vectors[:, :4]))
    model.use_index(ExactIndex(vectors))
    assert model.als_index_ is not None
    model.fit(shop)
    assert model.als_index_ is None
    assert HybridModel(factors=8, n_als=0, max_iter=20).fit(shop).index_vectors() is None


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 8),
    m=st.integers(1, 80),
    density=st.floats(0.0, 0.5),
    wide=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_few_rows_product_equals_the_whole_product_bit_for_bit(
    n: int, m: int, density: float, wide: bool, seed: int
) -> None:
    """A live request's rows times the co-occurrence matrix, without items-long arrays."""
    rng = np.random.default_rng(seed)
    basis = sp.random(n, m, density=density, format="csr", random_state=rng, dtype=np.float32)
    basis.data[:] = rng.choice([1.0, 2.0, 0.3], size=basis.nnz)
    mat = sp.random(
        m, m, density=0.2, format="csr", random_state=rng, dtype=np.float64 if wide else np.float32
    )
    want = sp.csr_matrix(basis @ mat, dtype=np.float32)
    got = pair_keys.few_rows_product(basis, mat)
    assert got.shape == (n, m) and got.dtype == np.float32
    for x in (want, got):
        x.sort_indices()
    assert np.array_equal(got.indptr, want.indptr)
    assert np.array_equal(got.indices, want.indices)
    assert np.array_equal(got.data.view(np.uint32), want.data.view(np.uint32))
